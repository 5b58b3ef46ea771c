"""Hubs: tenants. Only the operator creates them; a manage key reads its own."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from common.problem import Conflict, read_model
from parent.auth import authorize, require_operator
from parent.context import POOL
from parent.keys import Right
from parent.models import HubIn


async def create_hub(request: web.Request) -> web.Response:
    require_operator(request)
    body = await read_model(request, HubIn)
    try:
        row = await request.app[POOL].fetchrow(
            "INSERT INTO hubs (name) VALUES ($1) RETURNING name, created_at", body.name)
    except asyncpg.UniqueViolationError:
        raise Conflict(f"hub {body.name!r} already exists", field="name") from None
    assert row is not None
    return web.json_response({"name": row["name"], "createdAt": row["created_at"].isoformat()},
                             status=201)


async def get_hub(request: web.Request) -> web.Response:
    access = await authorize(request, Right.manage)
    row = await request.app[POOL].fetchrow(
        "SELECT h.name, h.created_at,"
        " (SELECT count(*) FROM apps WHERE hub_id = h.id) AS apps,"
        " (SELECT count(*) FROM installations WHERE hub_id = h.id) AS installations"
        " FROM hubs h WHERE h.id = $1", access.hub_id)
    assert row is not None
    return web.json_response({"name": row["name"], "createdAt": row["created_at"].isoformat(),
                              "apps": row["apps"], "installations": row["installations"]})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/hubs", create_hub)
    app.router.add_get("/v1/hubs/{hub}", get_hub)
