"""Who is calling and what they may do.

Every request names a hub in its path and carries `Authorization: Bearer <key>`. A key belongs to
one hub (and optionally one app) and holds some rights; the operator key from settings may act on
any hub. A key for another hub gets 403 whether or not the named hub exists.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass

import asyncpg
from aiohttp import web

from common.problem import Forbidden, NotFound, Unauthorized
from parent import keys
from parent.context import POOL, SETTINGS
from parent.keys import Right
from parent.models import NAME_PATTERN

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="tocsin"'}
HUB_NAME = re.compile(NAME_PATTERN)


@dataclass(frozen=True)
class Access:
    hub_id: int
    hub_name: str
    #: set when the key may only touch one app's installations
    app_id: int | None


def _bearer(request: web.Request) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing access key", field="Authorization", headers=_CHALLENGE)
    return token.strip()


def is_operator(request: web.Request) -> bool:
    expected = request.app[SETTINGS].operator_key.get_secret_value().encode()
    return hmac.compare_digest(_bearer(request).encode(), expected)


def require_operator(request: web.Request) -> None:
    if not is_operator(request):
        raise Forbidden("only the operator key may do this", field="Authorization")


async def _key_row(request: web.Request) -> asyncpg.Record:
    """The caller's key, or 401."""
    parts = keys.split(_bearer(request))
    row: asyncpg.Record | None = None
    if parts is not None:
        row = await request.app[POOL].fetchrow(
            "SELECT k.hub_id, k.app_id, k.rights, k.secret_hash, h.name AS hub_name"
            " FROM access_keys k JOIN hubs h ON h.id = k.hub_id"
            " WHERE k.id = $1 AND k.revoked_at IS NULL", parts[0])
    if row is None or parts is None or not hmac.compare_digest(
        bytes(row["secret_hash"]), keys.hash_secret(parts[1])
    ):
        raise Unauthorized("access key is not valid", field="Authorization", headers=_CHALLENGE)
    return row


async def authorize(request: web.Request, right: Right) -> Access:
    """Resolve the path's hub and check that the caller holds `right` on it."""
    hub_name = request.match_info["hub"]
    pool = request.app[POOL]
    if not HUB_NAME.match(hub_name):
        # No hub has such a name: the same answers as for a hub that does not exist.
        if is_operator(request):
            raise NotFound(f"hub {hub_name!r} does not exist", field="hub")
        await _key_row(request)
        raise Forbidden("access key does not belong to this hub", field="Authorization")
    if is_operator(request):
        hub_id = await pool.fetchval("SELECT id FROM hubs WHERE name = $1", hub_name)
        if hub_id is None:
            raise NotFound(f"hub {hub_name!r} does not exist", field="hub")
        return Access(hub_id, hub_name, None)
    row = await _key_row(request)
    if row["hub_name"] != hub_name:
        raise Forbidden("access key does not belong to this hub", field="Authorization")
    if right not in row["rights"]:
        raise Forbidden(f"access key lacks the {right} right", field="Authorization")
    return Access(row["hub_id"], hub_name, row["app_id"])
