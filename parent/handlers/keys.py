"""Access keys of a hub: created with some rights (optionally for one app), shown once."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web

from common.problem import NotFound, read_model
from parent import keys
from parent.auth import authorize
from parent.context import POOL
from parent.keys import Right
from parent.models import KeyIn


def _key_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "rights": list(row["rights"]),
        "app": row["app"],
        "createdAt": row["created_at"].isoformat(),
        "revoked": row["revoked_at"] is not None,
    }


async def create_key(request: web.Request) -> web.Response:
    access = await authorize(request, Right.manage)
    body = await read_model(request, KeyIn)
    pool = request.app[POOL]
    app_id = None
    if body.app is not None:
        app_id = await pool.fetchval(
            "SELECT id FROM apps WHERE hub_id = $1 AND name = $2", access.hub_id, body.app)
        if app_id is None:
            raise NotFound(f"app {body.app!r} does not exist", field="app")
    new = keys.generate()
    row = await pool.fetchrow(
        "INSERT INTO access_keys (id, hub_id, app_id, name, rights, secret_hash)"
        " VALUES ($1, $2, $3, $4, $5, $6)"
        " RETURNING id, name, rights, $7::text AS app, created_at, revoked_at",
        new.id, access.hub_id, app_id, body.name, sorted(set(body.rights)), new.secret_hash,
        body.app)
    assert row is not None
    return web.json_response({**_key_json(row), "key": new.token}, status=201)


async def list_keys(request: web.Request) -> web.Response:
    access = await authorize(request, Right.manage)
    rows = await request.app[POOL].fetch(
        "SELECT k.id, k.name, k.rights, a.name AS app, k.created_at, k.revoked_at"
        " FROM access_keys k LEFT JOIN apps a ON a.id = k.app_id"
        " WHERE k.hub_id = $1 ORDER BY k.created_at", access.hub_id)
    return web.json_response({"keys": [_key_json(r) for r in rows]})


async def revoke_key(request: web.Request) -> web.Response:
    access = await authorize(request, Right.manage)
    if not keys.KEY_ID.match(request.match_info["key"]):
        raise NotFound("key does not exist", field="key")
    revoked = await request.app[POOL].fetchval(
        "UPDATE access_keys SET revoked_at = coalesce(revoked_at, now())"
        " WHERE hub_id = $1 AND id = $2 RETURNING id", access.hub_id, request.match_info["key"])
    if revoked is None:
        raise NotFound("key does not exist", field="key")
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/hubs/{hub}/keys", create_key)
    app.router.add_get("/v1/hubs/{hub}/keys", list_keys)
    app.router.add_delete("/v1/hubs/{hub}/keys/{key}", revoke_key)
