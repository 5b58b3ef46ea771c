"""The child service: one app's WNS identity behind a signed HTTP API. No database, no channels."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Mapping

import aiohttp
import structlog
from aiohttp import web
from pydantic import ValidationError

from child.resolver import ConnectToResolver
from child.sender import WnsSender
from child.token import TokenManager
from common import secretbox
from common.problem import Problem, Unauthorized, problem_middleware, validation_problem
from common.signing import SIGNATURE_HEADER, ReplayGuard, SignatureError, verify
from common.wire import BATCH_PATH, Batch
from config.settings import ChildSettings

log = structlog.get_logger("tocsin.child")

SETTINGS = web.AppKey("settings", ChildSettings)
SIGNING_KEYS: web.AppKey[Mapping[str, bytes]] = web.AppKey("signing_keys")
SENDER = web.AppKey("sender", WnsSender)
REPLAYS = web.AppKey("replays", ReplayGuard)

#: a full batch of 5000 items with 5000-byte payloads fits comfortably
MAX_REQUEST_BYTES = 64 * 1024 * 1024


async def handle_batch(request: web.Request) -> web.Response:
    body = await request.read()
    try:
        verify(request.headers, request.method, request.path, body, request.app[SIGNING_KEYS])
    except SignatureError as exc:
        raise Unauthorized(str(exc), field="X-Tocsin-Signature") from exc
    if not request.app[REPLAYS].first_time(request.headers[SIGNATURE_HEADER]):
        raise Problem("this signed request was already received", field="X-Tocsin-Signature",
                      status=409, code="replayed")
    try:
        batch = Batch.model_validate_json(body)
    except ValidationError as exc:
        raise validation_problem(exc) from exc
    settings = request.app[SETTINGS]
    if batch.app != settings.app:
        raise Problem(f"this child serves app {settings.app!r}", field="app", status=409,
                      code="wrong_app")
    result = await request.app[SENDER].send(batch)
    log.info("batch sent", batch_id=batch.batch_id, items=len(result.results))
    return web.json_response(text=result.model_dump_json())


async def handle_health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "app": request.app[SETTINGS].app})


def _client_ssl(settings: ChildSettings) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if settings.ca_file is not None:
        ctx.load_verify_locations(cafile=str(settings.ca_file))
    return ctx


async def _wns_client(app: web.Application) -> AsyncIterator[None]:
    """One pooled, keep-alive client for WNS and the token endpoint, closed on shutdown."""
    settings = app[SETTINGS]
    secret = secretbox.decrypt(settings.master_key.get_secret_value(),
                               settings.identity.client_secret.get_secret_value())
    connector = aiohttp.TCPConnector(
        limit=settings.concurrency,
        resolver=ConnectToResolver(settings.connect_to),
        ssl=_client_ssl(settings),
    )
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=settings.connect_timeout_seconds,
        sock_read=settings.read_timeout_seconds,
    )
    async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                     skip_auto_headers=("User-Agent",)) as session:
        tokens = TokenManager(settings.identity, secret, session,
                              settings.token_refresh_margin_seconds)
        app[SENDER] = WnsSender(session, tokens, settings.concurrency)
        yield


def init_app(settings: ChildSettings) -> web.Application:
    app = web.Application(middlewares=[problem_middleware], client_max_size=MAX_REQUEST_BYTES)
    app[SETTINGS] = settings
    app[SIGNING_KEYS] = {
        key_id: key.get_secret_value().encode() for key_id, key in settings.signing_keys.items()
    }
    app[REPLAYS] = ReplayGuard()
    app.cleanup_ctx.append(_wns_client)
    app.router.add_post(BATCH_PATH, handle_batch)
    app.router.add_get("/healthz", handle_health)
    return app
