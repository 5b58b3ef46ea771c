"""Run the parent: `python -m parent` (or `tocsin parent`), configured from TOCSIN_* settings."""

from __future__ import annotations

import json

import structlog
from aiohttp import web

from common import logs
from config.settings import ParentSettings
from parent.app import init_app


def main() -> None:
    settings = ParentSettings()  # filled from the environment
    logs.configure("parent", settings.log_level)
    structlog.get_logger("tocsin.parent").info("starting parent",
                                               config=json.dumps(settings.redacted()))
    web.run_app(init_app(settings), host=settings.host, port=settings.port, access_log=None,
                print=None, shutdown_timeout=settings.shutdown_grace_seconds + 5)


if __name__ == "__main__":
    main()
