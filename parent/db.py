"""Connection pool and numbered migrations.

Migrations run at start-up under an advisory lock, so several parents starting together apply
each migration exactly once; each runs in its own transaction with its version row.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, TypeAlias

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy

log = structlog.get_logger("tocsin.db")

_MIGRATION_LOCK = 0x7A0C_51
Pool = asyncpg.Pool
#: a plain connection or one borrowed from the pool; queries take either
Connection: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads,
                              schema="pg_catalog")


async def create_pool(database_url: str, max_size: int) -> Pool:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=max_size,
                                     init=_init_connection)
    assert pool is not None
    return pool


def _migrations() -> list[tuple[int, str, str]]:
    found = []
    for entry in resources.files("parent.migrations").iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text()))
    return sorted(found)


async def migrate(pool: Pool) -> None:
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version int PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            applied = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            for version, name, sql in _migrations():
                if version in applied:
                    continue
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                        version, name)
                log.info("applied migration", version=version, migration=name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
