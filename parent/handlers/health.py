"""Liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from common.problem import Problem
from parent.context import POOL


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    try:
        await request.app[POOL].fetchval("SELECT 1")
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise Problem("database unavailable", status=503, code="not_ready") from exc
    return web.json_response({"status": "ready"})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
