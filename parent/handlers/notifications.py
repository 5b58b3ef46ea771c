"""Notifications: accepted with 202 only once durably stored, then fanned out by dispatch."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from aiohttp import web

from common.problem import NotFound, Problem, read_model
from parent.auth import authorize
from parent.context import POOL, SETTINGS
from parent.db import Connection
from parent.dispatch.dispatcher import WAKE_CHANNEL
from parent.dispatch.queue import COUNTS
from parent.keys import Right
from parent.models import NotificationIn

MAX_IDEMPOTENCY_KEY = 200


async def _target_apps(conn: Connection, hub_id: int, body: NotificationIn) -> list[int]:
    """The apps that get a delivery row: all (or the named) apps of the hub; for a single
    installation only its own app, so a one-device send creates one small piece of work."""
    rows = await conn.fetch("SELECT id, name FROM apps WHERE hub_id = $1", hub_id)
    by_name = {r["name"]: r["id"] for r in rows}
    if body.apps is not None:
        unknown = sorted(set(body.apps) - set(by_name))
        if unknown:
            raise Problem(f"unknown app {unknown[0]!r}", field="apps")
        chosen = {by_name[name] for name in body.apps}
    else:
        chosen = set(by_name.values())
    if body.target.installationId is not None:
        app_id = await conn.fetchval(
            "SELECT app_id FROM installations WHERE hub_id = $1 AND installation_id = $2",
            hub_id, body.target.installationId)
        chosen &= {app_id}
    return sorted(chosen)


async def create_notification(request: web.Request) -> web.Response:
    access = await authorize(request, Right.send)
    body = await read_model(request, NotificationIn)
    idempotency_key = request.headers.get("Idempotency-Key")
    if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
        raise Problem(f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters",
                      field="Idempotency-Key")
    payload = body.payload.wire()
    async with request.app[POOL].acquire() as conn, conn.transaction():
        app_ids = await _target_apps(conn, access.hub_id, body)
        notification_id = await conn.fetchval(
            "INSERT INTO notifications (id, hub_id, target, payload, idempotency_key, state,"
            " completed_at, deliver_by) VALUES ($1, $2, $3, $4, $5,"
            " CASE WHEN $6 THEN 'completed' ELSE 'accepted' END,"
            " CASE WHEN $6 THEN now() END, now() + make_interval(secs => $7))"
            " ON CONFLICT (hub_id, idempotency_key) DO NOTHING RETURNING id",
            uuid.uuid4(), access.hub_id, body.target.stored(), payload.model_dump(),
            idempotency_key, not app_ids, request.app[SETTINGS].retry_deadline_seconds)
        if notification_id is None:  # the same Idempotency-Key was accepted before
            notification_id = await conn.fetchval(
                "SELECT id FROM notifications WHERE hub_id = $1 AND idempotency_key = $2",
                access.hub_id, idempotency_key)
        elif app_ids:
            await conn.execute(
                "INSERT INTO deliveries (notification_id, app_id) SELECT $1, unnest($2::bigint[])",
                notification_id, app_ids)
            await conn.execute(f"NOTIFY {WAKE_CHANNEL}")
    location = f"/v1/hubs/{access.hub_name}/notifications/{notification_id}"
    return web.json_response({"id": str(notification_id), "location": location}, status=202,
                             headers={"Location": location})


def _outcomes(row: asyncpg.Record) -> dict[str, int]:
    return {name: int(row[name]) for name in COUNTS}


async def get_notification(request: web.Request) -> web.Response:
    access = await authorize(request, Right.send)
    try:
        notification_id = uuid.UUID(request.match_info["notification"])
    except ValueError:
        raise NotFound("notification not found", field="notification") from None
    pool = request.app[POOL]
    row = await pool.fetchrow(
        "SELECT id, state, target, payload, created_at, completed_at FROM notifications"
        " WHERE id = $1 AND hub_id = $2", notification_id, access.hub_id)
    if row is None:
        raise NotFound("notification not found", field="notification")
    deliveries = await pool.fetch(
        "SELECT a.name AS app, d.streamed, d.targeted, d.last_error, "
        + ", ".join(f"d.{c}" for c in COUNTS)
        + " FROM deliveries d JOIN apps a ON a.id = d.app_id"
        " WHERE d.notification_id = $1 ORDER BY a.name", notification_id)
    totals = {name: sum(int(d[name]) for d in deliveries) for name in COUNTS}
    targeted = sum(int(d["targeted"]) for d in deliveries)
    doc: dict[str, Any] = {
        "id": str(row["id"]),
        "state": row["state"],
        "target": row["target"],
        "payloadType": row["payload"]["type"],
        "createdAt": row["created_at"].isoformat(),
        "completedAt": row["completed_at"].isoformat() if row["completed_at"] else None,
        "targeted": targeted,
        "outcomes": totals,
        "apps": [
            {"app": d["app"], "streamed": d["streamed"], "targeted": d["targeted"],
             "outcomes": _outcomes(d), "lastError": d["last_error"]}
            for d in deliveries
        ],
    }
    return web.json_response(doc)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/hubs/{hub}/notifications", create_notification)
    app.router.add_get("/v1/hubs/{hub}/notifications/{notification}", get_notification)
