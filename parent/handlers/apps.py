"""Apps: one WNS identity each, served by its own child at `childUrl`.

The parent keeps only the key that signs batches to the child (encrypted), never a WNS secret.
A signing key can be supplied (the child was configured first) or generated and shown once.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

import asyncpg
from aiohttp import web

from common import secretbox
from common.problem import NotFound, read_model
from parent.auth import authorize
from parent.context import POOL, SETTINGS
from parent.dispatch.dispatcher import WAKE_CHANNEL
from parent.keys import Right
from parent.models import NAME_PATTERN, AppIn

_APP_COLUMNS = (
    "a.id, a.name, a.child_url, a.signing_key_id, a.paused_at, a.paused_reason, a.throttled_until,"
    " a.created_at, a.updated_at"
)


RECENT_MINUTES = 60


async def _recent_outcomes(pool: asyncpg.Pool, app_ids: list[int]) -> dict[int, dict[str, int]]:
    rows = await pool.fetch(
        "SELECT app_id, outcome, sum(count)::int AS n FROM app_outcomes"
        " WHERE app_id = ANY($1) AND minute >= now() - make_interval(mins => $2)"
        " GROUP BY app_id, outcome", app_ids, RECENT_MINUTES)
    recent: dict[int, dict[str, int]] = {app_id: {} for app_id in app_ids}
    for r in rows:
        recent[r["app_id"]][r["outcome"]] = r["n"]
    return recent


def _app_json(row: asyncpg.Record, recent: dict[str, int]) -> dict[str, Any]:
    def ts(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "name": row["name"],
        "childUrl": row["child_url"],
        "signingKeyId": row["signing_key_id"],
        "health": {
            "pausedAt": ts(row["paused_at"]),
            "pausedReason": row["paused_reason"],
            "throttledUntil": ts(row["throttled_until"]),
            "recentOutcomes": {"minutes": RECENT_MINUTES, "counts": recent},
        },
        "createdAt": ts(row["created_at"]),
        "updatedAt": ts(row["updated_at"]),
    }


async def _one_app_json(pool: asyncpg.Pool, row: asyncpg.Record) -> dict[str, Any]:
    return _app_json(row, (await _recent_outcomes(pool, [row["id"]]))[row["id"]])


def _app_name(request: web.Request) -> str:
    name = request.match_info["app"]
    if not re.match(NAME_PATTERN, name):
        raise NotFound(f"app {name!r} does not exist", field="app")
    return name


async def put_app(request: web.Request) -> web.Response:
    access = await authorize(request, Right.manage)
    name = _app_name(request)
    body = await read_model(request, AppIn)
    master_key = request.app[SETTINGS].master_key.get_secret_value()
    pool = request.app[POOL]
    async with pool.acquire() as conn, conn.transaction():
        existing = await conn.fetchrow(
            "SELECT id FROM apps WHERE hub_id = $1 AND name = $2 FOR UPDATE", access.hub_id, name)
        shown_key: str | None = None
        if body.signingKey is not None:
            key_id, key = body.signingKeyId, body.signingKey
        elif existing is None:
            key_id, key = "sk_" + secrets.token_hex(4), secrets.token_urlsafe(32)
            shown_key = key
        else:
            key_id = key = None
        if existing is None:
            assert key_id is not None and key is not None
            row = await conn.fetchrow(
                "INSERT INTO apps AS a (hub_id, name, child_url, signing_key_id, signing_key_enc)"
                f" VALUES ($1, $2, $3, $4, $5) RETURNING {_APP_COLUMNS}",
                access.hub_id, name, body.childUrl, key_id, secretbox.encrypt(master_key, key))
            status = 201
        else:
            row = await conn.fetchrow(
                "UPDATE apps a SET child_url = $2,"
                " signing_key_id = coalesce($3, signing_key_id),"
                " signing_key_enc = coalesce($4, signing_key_enc), updated_at = now()"
                f" WHERE id = $1 RETURNING {_APP_COLUMNS}",
                existing["id"], body.childUrl, key_id,
                secretbox.encrypt(master_key, key) if key is not None else None)
            status = 200
    assert row is not None
    doc = await _one_app_json(pool, row)
    if shown_key is not None:
        doc["signingKey"] = shown_key  # shown once: configure the child with it
    return web.json_response(doc, status=status)


async def get_app(request: web.Request) -> web.Response:
    access = await authorize(request, Right.manage)
    pool = request.app[POOL]
    row = await pool.fetchrow(
        f"SELECT {_APP_COLUMNS} FROM apps a WHERE a.hub_id = $1 AND a.name = $2",
        access.hub_id, _app_name(request))
    if row is None:
        raise NotFound(f"app {request.match_info['app']!r} does not exist", field="app")
    return web.json_response(await _one_app_json(pool, row))


async def list_apps(request: web.Request) -> web.Response:
    access = await authorize(request, Right.manage)
    pool = request.app[POOL]
    rows = await pool.fetch(
        f"SELECT {_APP_COLUMNS} FROM apps a WHERE a.hub_id = $1 ORDER BY a.name", access.hub_id)
    recent = await _recent_outcomes(pool, [r["id"] for r in rows])
    return web.json_response({"apps": [_app_json(r, recent[r["id"]]) for r in rows]})


async def resume_app(request: web.Request) -> web.Response:
    """Lift a pause (after the child's secret was fixed) and wake dispatch for its waiting work."""
    access = await authorize(request, Right.manage)
    pool = request.app[POOL]
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "UPDATE apps a SET paused_at = NULL, paused_reason = NULL, updated_at = now()"
            f" WHERE a.hub_id = $1 AND a.name = $2 RETURNING {_APP_COLUMNS}",
            access.hub_id, _app_name(request))
        if row is None:
            raise NotFound(f"app {request.match_info['app']!r} does not exist", field="app")
        await conn.execute(f"NOTIFY {WAKE_CHANNEL}")
    return web.json_response(await _one_app_json(pool, row))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/hubs/{hub}/apps", list_apps)
    app.router.add_put("/v1/hubs/{hub}/apps/{app}", put_app)
    app.router.add_get("/v1/hubs/{hub}/apps/{app}", get_app)
    app.router.add_post("/v1/hubs/{hub}/apps/{app}/resume", resume_app)
