"""Installations: the channels table. Devices register with a listen key, in Notification Hubs'
installation JSON plus the `app` they belong to (implied by an app-scoped key).

Re-registering an installation id replaces its channel, tags and user (no duplicate per device)
and clears a retirement: a renewed channel is live again.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web

from common.problem import Forbidden, NotFound, Problem, read_model
from parent.auth import Access, authorize
from parent.context import POOL
from parent.db import Connection
from parent.keys import Right
from parent.models import INSTALLATION_ID, InstallationIn

NEVER_EXPIRES = "9999-12-31T23:59:59.9999999Z"

#: what an installation's JSON is made of, for the upsert's RETURNING and the GET alike
_COLUMNS = (
    "installation_id, push_channel, push_channel_expired, tags, user_id, updated_at,"
    " retired_at, retired_reason, last_outcome, last_outcome_at, last_wns,"
    " (SELECT name FROM apps WHERE id = app_id) AS app"
)


def _installation_json(row: asyncpg.Record) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "installationId": row["installation_id"],
        "platform": "wns",
        "pushChannel": row["push_channel"],
        "pushChannelExpired": row["push_channel_expired"],
        "tags": list(row["tags"]),
        "app": row["app"],
        "expirationTime": NEVER_EXPIRES,
        "lastUpdate": row["updated_at"].isoformat(),
    }
    if row["user_id"] is not None:
        doc["userId"] = row["user_id"]
    if row["last_outcome"] is not None:
        doc["lastOutcome"] = {"outcome": row["last_outcome"],
                              "at": row["last_outcome_at"].isoformat(), "wns": row["last_wns"]}
    if row["retired_at"] is not None:
        doc["retired"] = {"at": row["retired_at"].isoformat(), "reason": row["retired_reason"]}
    return doc


async def _app_id(conn: Connection, access: Access, app_name: str | None) -> int:
    if app_name is None:
        if access.app_id is None:
            raise Problem("app is required with a hub-wide key", field="app")
        return access.app_id
    app_id: int | None = await conn.fetchval(
        "SELECT id FROM apps WHERE hub_id = $1 AND name = $2", access.hub_id, app_name)
    if app_id is None:
        raise Problem(f"app {app_name!r} does not exist in this hub", field="app")
    if access.app_id is not None and access.app_id != app_id:
        raise Forbidden("this key is for another app", field="app")
    return app_id


async def put_installation(request: web.Request) -> web.Response:
    access = await authorize(request, Right.listen)
    body = await read_model(request, InstallationIn)
    if body.installationId != request.match_info["installation"]:
        raise Problem("installationId must match the URL", field="installationId")
    async with request.app[POOL].acquire() as conn:
        app_id = await _app_id(conn, access, body.app)
        row = await conn.fetchrow(
            "INSERT INTO installations (hub_id, app_id, installation_id, push_channel, tags, user_id)"
            " VALUES ($1, $2, $3, $4, $5, $6)"
            " ON CONFLICT (hub_id, installation_id) DO UPDATE SET"
            "  app_id = EXCLUDED.app_id, push_channel = EXCLUDED.push_channel,"
            "  tags = EXCLUDED.tags, user_id = EXCLUDED.user_id,"
            "  push_channel_expired = false, retired_at = NULL, retired_reason = NULL,"
            "  revision = installations.revision + 1, updated_at = now()"
            f" WHERE $7::bigint IS NULL OR installations.app_id = $7 RETURNING {_COLUMNS}",
            access.hub_id, app_id, body.installationId, body.pushChannel,
            sorted(set(body.tags)), body.userId, access.app_id)
    if row is None:
        raise Forbidden("this installation belongs to another app", field="installationId")
    return web.json_response(_installation_json(row))


def _installation_id(request: web.Request) -> str:
    installation_id = request.match_info["installation"]
    if not INSTALLATION_ID.match(installation_id):
        raise NotFound("installation not found", field="installationId")
    return installation_id


async def get_installation(request: web.Request) -> web.Response:
    access = await authorize(request, Right.listen)
    installation_id = _installation_id(request)
    row = await request.app[POOL].fetchrow(
        f"SELECT {_COLUMNS} FROM installations"
        " WHERE hub_id = $1 AND installation_id = $2 AND ($3::bigint IS NULL OR app_id = $3)",
        access.hub_id, installation_id, access.app_id)
    if row is None:
        raise NotFound("installation not found", field="installationId")
    return web.json_response(_installation_json(row))


async def delete_installation(request: web.Request) -> web.Response:
    access = await authorize(request, Right.listen)
    await request.app[POOL].execute(
        "DELETE FROM installations WHERE hub_id = $1 AND installation_id = $2"
        " AND ($3::bigint IS NULL OR app_id = $3)",
        access.hub_id, _installation_id(request), access.app_id)
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    path = "/v1/hubs/{hub}/installations/{installation}"
    app.router.add_put(path, put_installation)
    app.router.add_get(path, get_installation)
    app.router.add_delete(path, delete_installation)
