"""The parent service: API for hubs, apps, keys, installations and notifications, plus the
dispatch workers that fan notifications out to the apps' children."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

from common.problem import Handler, Problem, problem_middleware
from config.settings import ParentSettings
from parent import db
from parent.context import POOL, SETTINGS
from parent.dispatch.dispatcher import Dispatcher
from parent.handlers import apps, health, hubs, installations, keys, notifications

DISPATCHER = web.AppKey("dispatcher", Dispatcher)

MAX_REQUEST_BYTES = 256 * 1024


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    pool = await db.create_pool(settings.database_url,
                                max_size=max(10, settings.dispatch_workers * 2 + 4))
    await db.migrate(pool)
    app[POOL] = pool
    yield
    await pool.close()


async def _dispatch(app: web.Application) -> AsyncIterator[None]:
    dispatcher = Dispatcher(app[POOL], app[SETTINGS])
    app[DISPATCHER] = dispatcher
    await dispatcher.start()
    yield
    await dispatcher.stop()


@web.middleware
async def data_error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Last line behind input validation: a value PostgreSQL cannot store is the client's
    input, so it is a 400, and the transaction it was in has rolled back (nothing half-written)."""
    try:
        return await handler(request)
    except asyncpg.DataError as exc:
        raise Problem(f"a value cannot be stored: {exc.__class__.__name__}",
                      code="invalid_value") from exc


def init_app(settings: ParentSettings) -> web.Application:
    app = web.Application(middlewares=[problem_middleware, data_error_middleware],
                          client_max_size=MAX_REQUEST_BYTES)
    app[SETTINGS] = settings
    # Torn down in reverse: dispatch drains before the pool closes.
    app.cleanup_ctx.extend([_database, _dispatch])
    for module in (health, hubs, apps, keys, installations, notifications):
        module.add_routes(app)
    return app
