"""Run a child: `python -m child` (or `tocsin child`), configured from TOCSIN_CHILD_* settings."""

from __future__ import annotations

import json

import structlog
from aiohttp import web

from child.app import init_app
from common import logs
from config.settings import ChildSettings


def main() -> None:
    settings = ChildSettings()  # filled from the environment
    logs.configure("child", settings.log_level)
    structlog.get_logger("tocsin.child").info("starting child",
                                              config=json.dumps(settings.redacted()))
    web.run_app(init_app(settings), host=settings.host, port=settings.port, access_log=None,
                print=None, shutdown_timeout=10)


if __name__ == "__main__":
    main()
