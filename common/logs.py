"""Structured logging with a last-line redaction guard.

Callers should never pass secrets or channel URIs to a logger; the processor below still masks
any field whose name suggests one, so a slip does not leak a key or a channel token.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SENSITIVE = re.compile(r"secret|key|token|password|authorization|signature|channel|uri", re.I)
_SAFE = {"key_id", "signing_key_id", "channel_host"}


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for name in list(event):
        if name not in _SAFE and _SENSITIVE.search(name):
            event[name] = "[redacted]"
    return event


def configure(service: str, level: str = "INFO") -> None:
    logging.basicConfig(format="%(message)s", stream=sys.stderr, level=level.upper())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.EventRenamer("msg"),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
