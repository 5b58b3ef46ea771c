"""The WNS emulator: token endpoints and channel endpoints over HTTPS, plus a control API.

It is the one fake in Tocsin's tests and local stack, standing in for WNS, which cannot be reached
from here. It follows `shared/reference/wns-protocol.md` §9; the child reaches it through the same
code path as production, by configuring where the WNS hosts resolve and which CA to trust.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import ssl
import time
from typing import Any
from urllib.parse import parse_qs, unquote

from aiohttp import web
from pydantic import BaseModel, Field

from common.problem import NotFound, Problem, problem_middleware, read_model
from common.wns import CONTENT_TYPE, MAX_PAYLOAD_BYTES, OPTIONAL_HEADERS, WNS_TYPE
from common.wns_emulator.state import (
    Channel,
    EmulatorState,
    FaultRate,
    ScriptedAnswer,
    Throttling,
)
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
    state = request.app[STATE]
    state.status_counts[status] += 1
    if state.fast:
        return
    state.received.append({
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


def _injected(request: web.Request, status: int, headers: dict[str, str]) -> web.Response:
    """An answer a test asked for: WNS's usual headers, overridden by the ones given."""
    return web.Response(status=status, headers={
        **_wns_headers(request, headers.get("X-WNS-Status")), **headers})


def _invalid_optional_header(request: web.Request) -> str | None:
    for name, check in OPTIONAL_HEADERS.items():
        value = request.headers.get(name)
        if value is not None and (problem := check(value)):
            return f"{name} {problem}"
    return None


def _answer(request: web.Request, channel: Channel | None, identity: str | None,
            body: bytes, scripted: ScriptedAnswer | None) -> web.Response | None:
    """What WNS answers to this post, in the order WNS checks (reference §3.2, §9); None means
    the connection is reset without an answer."""
    state = request.app[STATE]
    if request.method != "POST":
        return _error(request, 405, "only POST is allowed")
    if channel is None:
        return _error(request, 404, "The channel URI is not valid")
    if identity is None:
        return _error(request, 401, "Invalid or expired access token",
                      extra={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    if identity != channel.identity:
        return _error(request, 403, "Channel URL incompatible with caller app", "dropped")
    if scripted is not None:
        return None if scripted.reset else _injected(request, scripted.status, scripted.headers)
    if (fault := state.random_fault()) is not None:
        return _injected(request, fault.status, fault.headers)
    channel_state = state.channel_state(channel)
    if channel_state == "invalid":
        return _error(request, 404, "The channel URI is not valid")
    if channel_state == "expired":
        return _error(request, 410, "The channel has expired")
    wns_type = request.headers.get("X-WNS-Type", "")
    if wns_type not in _TYPE_CONTENT:
        return _error(request, 400, "X-WNS-Type is missing or invalid")
    if request.content_type != _TYPE_CONTENT[wns_type]:
        return _error(request, 400, f"Content-Type should be {_TYPE_CONTENT[wns_type]}")
    if request.headers.get("Transfer-Encoding", "").lower() == "chunked" or (
        "Content-Length" not in request.headers
    ):
        return _error(request, 400, "Content-Length is required; chunking is not supported")
    if problem := _invalid_optional_header(request):
        return _error(request, 400, problem)
    if len(body) > MAX_PAYLOAD_BYTES:
        return _error(request, 413, "the notification payload exceeds the 5000 byte limit")
    limit = state.over_limit(channel)
    if limit == "app":
        return _error(request, 406, "The app exceeded its throttle limit", "appthrottled",
                      extra={"Retry-After": str(state.throttling.app_retry_after)})
    if limit == "channel":
        return web.Response(status=200, headers=_wns_headers(request, "channelthrottled"))
    if request.headers.get("X-WNS-SuppressPopup", "").lower() == "true":
        # Phone-only header: a Windows channel drops the notification and says why (§2.2).
        headers = _wns_headers(request, "dropped")
        headers["X-WNS-Error-Description"] = "X-WNS-SuppressPopup is not supported on this channel"
        return web.Response(status=200, headers=headers)
    # An empty raw body is accepted but never reaches the device (§2.4): WNS says received.
    headers = _wns_headers(request, "received")
    if request.headers.get("X-WNS-RequestForStatus", "").lower() == "true":
        headers["X-WNS-DeviceConnectionStatus"] = "connected"
    return web.Response(status=200, headers=headers)


async def _channel_post(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    token_values = parse_qs(request.query_string, keep_blank_values=True).get("token", [])
    channel = state.parse_channel(unquote(token_values[0])) if len(token_values) == 1 else None
    body = await request.read()
    if not state.fast:
        low, high = state.latency_range
        delay = state.latency.get(channel.channel_id, 0.0) if channel else 0.0
        delay += random.uniform(low, high) if high else 0.0  # noqa: S311 - simulated latency
        if delay:
            await asyncio.sleep(delay)
    scheme, _, bearer = request.headers.get("Authorization", "").partition(" ")
    identity = state.token_identity(bearer) if scheme == "Bearer" else None
    # A scripted answer is taken now (so a retry meanwhile gets the next one), given later.
    scripted = (state.next_scripted(channel)
                if channel is not None and identity == channel.identity else None)
    if scripted is not None and scripted.delaySeconds:
        await asyncio.sleep(scripted.delaySeconds)
    resp = _answer(request, channel, identity, body, scripted)
    if resp is None:
        _record(request, channel, identity, 0, body, None)
        assert request.transport is not None
        request.transport.abort()  # a connection reset: no status line at all
        raise asyncio.CancelledError
    _record(request, channel, identity, resp.status, body, resp.headers.get("X-WNS-Status"))
    return resp


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


class _Faults(BaseModel):
    rates: list[FaultRate]


class _Latency(BaseModel):
    minSeconds: float = Field(ge=0)
    maxSeconds: float = Field(ge=0)


class _Tokens(BaseModel):
    lifetimeSeconds: int = Field(ge=1)


class _Mode(BaseModel):
    fast: bool


async def _control_faults(request: web.Request) -> web.Response:
    body = await read_model(request, _Faults)
    if sum(f.rate for f in body.rates) > 1:
        raise Problem("fault rates add up to more than 1", field="rates")
    request.app[STATE].faults = body.rates
    return web.Response(status=204)


async def _control_latency_range(request: web.Request) -> web.Response:
    body = await read_model(request, _Latency)
    if body.maxSeconds < body.minSeconds:
        raise Problem("maxSeconds is below minSeconds", field="maxSeconds")
    request.app[STATE].latency_range = (body.minSeconds, body.maxSeconds)
    return web.Response(status=204)


async def _control_throttling(request: web.Request) -> web.Response:
    request.app[STATE].throttling = await read_model(request, Throttling)
    return web.Response(status=204)


async def _control_tokens(request: web.Request) -> web.Response:
    request.app[STATE].token_lifetime = (await read_model(request, _Tokens)).lifetimeSeconds
    return web.Response(status=204)


async def _control_revoke_tokens(request: web.Request) -> web.Response:
    request.app[STATE].revoke_tokens()
    return web.Response(status=204)


async def _control_mode(request: web.Request) -> web.Response:
    request.app[STATE].fast = (await read_model(request, _Mode)).fast
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
    state = request.app[STATE]
    return web.json_response({"tokenRequests": state.token_requests,
                              "statusCounts": {str(k): v for k, v in state.status_counts.items()}})


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
    app.router.add_post("/control/faults", _control_faults)
    app.router.add_post("/control/latency", _control_latency_range)
    app.router.add_post("/control/throttling", _control_throttling)
    app.router.add_post("/control/tokens", _control_tokens)
    app.router.add_post("/control/tokens/revoke", _control_revoke_tokens)
    app.router.add_post("/control/mode", _control_mode)
    app.router.add_get("/control/received", _control_received)
    app.router.add_delete("/control/received", _control_clear)
    app.router.add_get("/control/stats", _control_stats)
    return app


def server_ssl_context(tls: TlsFiles) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(tls.server_cert_chain), str(tls.server_key))
    return ctx

