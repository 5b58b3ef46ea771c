"""Typed keys for what the parent application holds (set up and torn down in cleanup_ctx)."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from config.settings import ParentSettings

SETTINGS = web.AppKey("settings", ParentSettings)
POOL = web.AppKey("pool", asyncpg.Pool)
