"""The WNS emulator: token endpoints and channel endpoints over HTTPS, plus a control API.

It is the one fake in Tocsin's tests and local stack, standing in for WNS, which cannot be reached
from here. It follows `shared/reference/wns-protocol.md` §9; the child reaches it through the same
code path as production, by configuring where the WNS hosts resolve and which CA to trust.
"""

from __future__ import annotations

import asyncio
import secrets
import ssl
import time
from typing import Any
from urllib.parse import parse_qs, unquote

from aiohttp import web
from pydantic import BaseModel

from common.problem import NotFound, Problem, problem_middleware, read_model
from common.wns import CONTENT_TYPE, MAX_PAYLOAD_BYTES, WNS_TYPE
from common.wns_emulator.state import Channel, EmulatorState, ScriptedAnswer
from common.wns_emulator.tls import TlsFiles
from config.settings import EmulatedApp

STATE = web.AppKey("state", EmulatorState)

_TYPE_CONTENT = {WNS_TYPE[kind]: CONTENT_TYPE[kind] for kind in WNS_TYPE}


def _wns_headers(request: web.Request, status: str | None = None) -> dict[str, str]:
    headers = {
        "X-WNS-Msg-ID": secrets.token_hex(8).upper(),
        "X-WNS-Debug-Trace": "EMU" + secrets.token_hex(5).upper(),
        "MS-CV": request.headers.get("MS-CV") or secrets.token_urlsafe(16) + ".0",
        "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
    }
    if status:
        headers["X-WNS-Status"] = status
        headers["X-WNS-NotificationStatus"] = status
    return headers


def _error(request: web.Request, status: int, description: str, wns_status: str | None = None,
           extra: dict[str, str] | None = None) -> web.Response:
    headers = _wns_headers(request, wns_status)
    headers["X-WNS-Error-Description"] = description
    headers.update(extra or {})
    return web.Response(status=status, headers=headers)


# --- token endpoints -------------------------------------------------------------------------


def _token_error(description: str) -> web.Response:
    return web.json_response(
        {"error": "invalid_client", "error_description": description}, status=400,
        headers={"Cache-Control": "no-store"},
    )


async def _token(request: web.Request, tenant: str | None) -> web.Response:
    state = request.app[STATE]
    state.token_requests += 1
    if request.content_type != "application/x-www-form-urlencoded":
        return _token_error("body must be application/x-www-form-urlencoded")
    form = await request.post()
    expected_scope = "notify.windows.com" if tenant is None else "https://wns.windows.com/.default"
    if form.get("grant_type") != "client_credentials":
        return _token_error("grant_type must be client_credentials")
    if form.get("scope") != expected_scope:
        return _token_error(f"scope must be {expected_scope}")
    app = state.apps.get(str(form.get("client_id", "")))
    secret = str(form.get("client_secret", ""))
    if app is None or not secrets.compare_digest(app.secret.encode(), secret.encode()) or (
        app.tenant_id != tenant
    ):
        return _token_error("the authentication failed")
    token = state.issue_token(app.identity)
    if tenant is None:
        body: dict[str, Any] = {"token_type": "bearer", "access_token": token,
                                "expires_in": state.token_lifetime}
    else:  # Entra answers with a capital B and expires_in as a string (§1.2)
        now = int(time.time())
        body = {"token_type": "Bearer", "access_token": token,
                "expires_in": str(state.token_lifetime), "ext_expires_in": str(state.token_lifetime),
                "expires_on": str(now + state.token_lifetime), "not_before": str(now)}
    return web.json_response(body, headers={"Cache-Control": "no-store"})


# --- channel endpoint ------------------------------------------------------------------------


def _record(request: web.Request, channel: Channel | None, token_identity: str | None,
            status: int, body: bytes, wns_status: str | None) -> None:
    request.app[STATE].received.append({
        "channel": f"https://{request.host}{request.raw_path}",
        "channel_app": channel.identity if channel else None,
        "token_app": token_identity,
        "method": request.method,
        "status": status,
        "wns_status": wns_status,
        "headers": {k: v for k, v in request.headers.items()
                    if k.lower().startswith("x-wns-") or k.lower() in ("content-type", "ms-cv")},
        "body": body.decode("utf-8", errors="replace"),
        "at": time.time(),
    })


async def _channel_post(request: web.Request) -> web.Response:
    state = request.app[STATE]
    token_values = parse_qs(request.query_string, keep_blank_values=True).get("token", [])
    channel = state.parse_channel(unquote(token_values[0])) if len(token_values) == 1 else None
    body = await request.read()
    if channel is not None and (delay := state.latency.get(channel.channel_id)):
        await asyncio.sleep(delay)

    def answer(resp: web.Response, token_identity: str | None = None) -> web.Response:
        _record(request, channel, token_identity, resp.status, body, resp.headers.get("X-WNS-Status"))
        return resp

    if request.method != "POST":
        return answer(_error(request, 405, "only POST is allowed"))
    if channel is None:
        return answer(_error(request, 404, "The channel URI is not valid"))
    auth = request.headers.get("Authorization", "")
    scheme, _, bearer = auth.partition(" ")
    identity = state.token_identity(bearer) if scheme == "Bearer" else None
    if identity is None:
        return answer(_error(request, 401, "Invalid or expired access token",
                             extra={"WWW-Authenticate": 'Bearer error="invalid_token"'}))
    if identity != channel.identity:
        return answer(_error(request, 403, "Channel URL incompatible with caller app", "dropped"),
                      identity)
    scripted = state.next_scripted(channel)
    if scripted is not None:
        status = scripted.headers.get("X-WNS-Status")
        headers = {**_wns_headers(request, status), **scripted.headers}
        return answer(web.Response(status=scripted.status, headers=headers), identity)
    channel_state = state.channel_state(channel)
    if channel_state == "invalid":
        return answer(_error(request, 404, "The channel URI is not valid"), identity)
    if channel_state == "expired":
        return answer(_error(request, 410, "The channel has expired"), identity)
    wns_type = request.headers.get("X-WNS-Type", "")
    if wns_type not in _TYPE_CONTENT:
        return answer(_error(request, 400, "X-WNS-Type is missing or invalid"), identity)
    if request.content_type != _TYPE_CONTENT[wns_type]:
        return answer(_error(request, 400, f"Content-Type should be {_TYPE_CONTENT[wns_type]}"),
                      identity)
    if request.headers.get("Transfer-Encoding", "").lower() == "chunked" or (
        "Content-Length" not in request.headers
    ):
        return answer(_error(request, 400, "Content-Length is required; chunking is not supported"),
                      identity)
    if len(body) > MAX_PAYLOAD_BYTES:
        return answer(_error(request, 413, "the notification payload exceeds the 5000 byte limit"),
                      identity)
    headers = _wns_headers(request, "received")
    if request.headers.get("X-WNS-RequestForStatus", "").lower() == "true":
        headers["X-WNS-DeviceConnectionStatus"] = "connected"
    return answer(web.Response(status=200, headers=headers), identity)


async def _wns_dispatch(request: web.Request) -> web.StreamResponse:
    """One HTTPS listener answers for every host, as separate DNS names would in reality."""
    host = request.host.split(":")[0].lower()
    path = request.path
    if host == "login.live.com" and path == "/accesstoken.srf" and request.method == "POST":
        return await _token(request, tenant=None)
    if host == "login.microsoftonline.com" and request.method == "POST":
        parts = path.strip("/").split("/")
        if len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "token"]:
            return await _token(request, tenant=parts[0])
    if host == "notify.windows.com" or host.endswith(".notify.windows.com"):
        return await _channel_post(request)
    raise web.HTTPNotFound()


# --- control API -----------------------------------------------------------------------------


class _ChannelRef(BaseModel):
    channelUri: str
    latencySeconds: float | None = None


class _Script(BaseModel):
    channelUri: str
    answers: list[ScriptedAnswer]


class _NewChannel(BaseModel):
    app: str


def _channel_of(state: EmulatorState, uri: str) -> Channel:
    token = parse_qs(uri.partition("?")[2]).get("token", [""])[0]
    channel = state.parse_channel(token)
    if channel is None:
        raise Problem("not a channel this emulator minted", field="channelUri")
    return channel


async def _control_add_app(request: web.Request) -> web.Response:
    app = await read_model(request, EmulatedApp)
    request.app[STATE].add_app(app)
    return web.json_response({"identity": app.identity}, status=201)


async def _control_mint(request: web.Request) -> web.Response:
    body = await read_model(request, _NewChannel)
    state = request.app[STATE]
    if body.app not in state.apps:
        raise NotFound(f"unknown app identity {body.app!r}", field="app")
    return web.json_response({"channelUri": state.mint_channel(body.app)}, status=201)


def _revoke(kind: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        ref = await read_model(request, _ChannelRef)
        state = request.app[STATE]
        state.revoked[_channel_of(state, ref.channelUri).channel_id] = kind
        return web.Response(status=204)
    return handler


async def _control_latency(request: web.Request) -> web.Response:
    ref = await read_model(request, _ChannelRef)
    state = request.app[STATE]
    state.latency[_channel_of(state, ref.channelUri).channel_id] = ref.latencySeconds or 0.0
    return web.Response(status=204)


async def _control_script(request: web.Request) -> web.Response:
    body = await read_model(request, _Script)
    state = request.app[STATE]
    state.scripts[_channel_of(state, body.channelUri).channel_id] = list(body.answers)
    return web.Response(status=204)


async def _control_received(request: web.Request) -> web.Response:
    records = request.app[STATE].received
    if channel := request.query.get("channel"):
        records = [r for r in records if r["channel"] == channel]
    return web.json_response({"received": records})


async def _control_clear(request: web.Request) -> web.Response:
    request.app[STATE].received.clear()
    return web.Response(status=204)


async def _control_stats(request: web.Request) -> web.Response:
    return web.json_response({"tokenRequests": request.app[STATE].token_requests})


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def init_wns_app(state: EmulatorState) -> web.Application:
    app = web.Application()
    app[STATE] = state
    app.router.add_route("*", "/{tail:.*}", _wns_dispatch)
    return app


def init_control_app(state: EmulatorState) -> web.Application:
    app = web.Application(middlewares=[problem_middleware])
    app[STATE] = state
    app.router.add_get("/health", _health)
    app.router.add_post("/control/apps", _control_add_app)
    app.router.add_post("/control/channels", _control_mint)
    app.router.add_post("/control/channels/expire", _revoke("expired"))
    app.router.add_post("/control/channels/invalidate", _revoke("invalid"))
    app.router.add_post("/control/channels/latency", _control_latency)
    app.router.add_post("/control/channels/script", _control_script)
    app.router.add_get("/control/received", _control_received)
    app.router.add_delete("/control/received", _control_clear)
    app.router.add_get("/control/stats", _control_stats)
    return app


def server_ssl_context(tls: TlsFiles) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(tls.server_cert_chain), str(tls.server_key))
    return ctx

