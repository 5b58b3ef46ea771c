"""Which HTTP client should the child post to WNS with? Measured on the child's real path.

    .venv/bin/python -m tests.bench_http_clients [--posts 2000] [--rounds 3] [--concurrency 64]

Starts the WNS emulator in fast mode (it still checks every request and token) in its own
process, mints channels, then alternates rounds of:

* aiohttp: the child's own WnsSender, TokenManager and ConnectToResolver, unchanged;
* httpx: the same posts (same headers, token, concurrency bound and outcome mapping) through
  httpx.AsyncClient, connecting to the emulator by address with TLS checked against the WNS name.

Both run in this process one after the other, so they share the machine's noise; the ratios
are what to read. Client CPU is this process's CPU time per post (the emulator's is excluded).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import httpx
from pydantic import SecretStr

from child.outcomes import classify, wns_details
from child.resolver import ConnectToResolver
from child.sender import WnsSender
from child.token import TokenManager
from common.wire import Batch, BatchItem, Outcome, Payload
from common.wns import CONTENT_TYPE, WNS_TYPE
from config.settings import PackageSidIdentity

SID = "ms-app://s-1-15-2-1234567890-bench"
BODY = '<toast><visual><binding template="ToastGeneric"><text>bench</text></binding></visual></toast>'


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_emulator(state: Path, secret: str) -> tuple[subprocess.Popen[bytes], int, int]:
    https_port, control_port = _free_port(), _free_port()
    env = {**os.environ, "TOCSIN_EMULATOR_HTTPS_PORT": str(https_port),
           "TOCSIN_EMULATOR_CONTROL_PORT": str(control_port),
           "TOCSIN_EMULATOR_STATE_DIR": str(state), "TOCSIN_EMULATOR_FAST": "true",
           "TOCSIN_EMULATOR_LOG_LEVEL": "WARNING",
           "TOCSIN_EMULATOR_APPS": json.dumps([{"identity": SID, "secret": secret}])}
    proc = subprocess.Popen([sys.executable, "-m", "common.wns_emulator"], env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{control_port}/health").status_code == 200:
                return proc, https_port, control_port
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("emulator did not start")


def _ssl(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


Round = Callable[[list[str]], Awaitable[int]]


async def aiohttp_round_factory(ca: Path, port: int, secret: str, concurrency: int
                                ) -> tuple[Round, Callable[[], Awaitable[None]]]:
    """The child's production objects, exactly as child.app wires them."""
    connector = aiohttp.TCPConnector(
        limit=concurrency, ssl=_ssl(ca),
        resolver=ConnectToResolver({"notify.windows.com": f"127.0.0.1:{port}",
                                    "login.live.com": f"127.0.0.1:{port}"}))
    session = aiohttp.ClientSession(connector=connector, skip_auto_headers=("User-Agent",),
                                    timeout=aiohttp.ClientTimeout(sock_read=15, sock_connect=5))
    identity = PackageSidIdentity(package_sid=SID, client_secret=SecretStr("unused"))
    sender = WnsSender(session, TokenManager(identity, secret, session, 300), concurrency)
    payload = Payload(type="toast", body=BODY)

    async def run(channels: list[str]) -> int:
        batch = Batch(batch_id="bench", app="bench", payloads=[payload],
                      items=[BatchItem(id=str(n), channel=c) for n, c in enumerate(channels)])
        result = await sender.send(batch)
        return sum(r.outcome is Outcome.delivered for r in result.results)

    return run, session.close


async def httpx_round_factory(ca: Path, port: int, secret: str, concurrency: int
                              ) -> tuple[Round, Callable[[], Awaitable[None]]]:
    """The same posts through httpx.AsyncClient (no resolver hook: connect by address, send the
    WNS host name in Host and SNI, verify TLS against it)."""
    client = httpx.AsyncClient(
        verify=_ssl(ca), timeout=httpx.Timeout(15, connect=5),
        limits=httpx.Limits(max_connections=concurrency,
                            max_keepalive_connections=concurrency))
    resp = await client.post(
        f"https://127.0.0.1:{port}/accesstoken.srf",
        data={"grant_type": "client_credentials", "client_id": SID, "client_secret": secret,
              "scope": "notify.windows.com"},
        headers={"Host": "login.live.com"}, extensions={"sni_hostname": "login.live.com"})
    token = resp.json()["access_token"]
    slots = asyncio.Semaphore(concurrency)

    async def post(channel: str) -> bool:
        parts = urlsplit(channel)
        async with slots:
            r = await client.post(
                f"https://127.0.0.1:{port}{parts.path}?{parts.query}", content=BODY.encode(),
                headers={"Host": parts.netloc, "Authorization": f"Bearer {token}",
                         "X-WNS-Type": WNS_TYPE["toast"], "Content-Type": CONTENT_TYPE["toast"],
                         "MS-CV": secrets.token_urlsafe(16)[:22] + ".0"},
                extensions={"sni_hostname": parts.netloc})
            return classify(r.status_code, wns_details(r.headers)) is Outcome.delivered

    async def run(channels: list[str]) -> int:
        return sum(await asyncio.gather(*(post(c) for c in channels)))

    return run, client.aclose


async def bench(posts: int, rounds: int, concurrency: int) -> None:
    secret = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory() as tmp:
        proc, https_port, control_port = start_emulator(Path(tmp), secret)
        try:
            ca = Path(tmp) / "ca.pem"
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{control_port}") as control:
                channels = [(await control.post("/control/channels", json={"app": SID}))
                            .json()["channelUri"] for _ in range(posts)]
            clients = {
                "aiohttp (child's WnsSender)":
                    await aiohttp_round_factory(ca, https_port, secret, concurrency),
                "httpx.AsyncClient": await httpx_round_factory(ca, https_port, secret, concurrency),
            }
            rates: dict[str, list[float]] = {name: [] for name in clients}
            cpu: dict[str, list[float]] = {name: [] for name in clients}
            for run, _ in clients.values():  # warm-up: connections, token, imports
                await run(channels[: concurrency * 2])
            for _ in range(rounds):
                for name, (run, _) in clients.items():
                    wall, proc_time = time.perf_counter(), time.process_time()
                    delivered = await run(channels)
                    wall, proc_time = time.perf_counter() - wall, time.process_time() - proc_time
                    if delivered != posts:
                        raise SystemExit(f"{name}: only {delivered}/{posts} delivered")
                    rates[name].append(posts / wall)
                    cpu[name].append(proc_time / posts * 1e6)
            for _, close in clients.values():
                await close()
        finally:
            proc.terminate()
            proc.wait()
    print(f"{posts} posts x {rounds} rounds per client, concurrency {concurrency}, "
          f"alternating rounds, {os.cpu_count()} CPUs")
    print(f"{'client':<30} {'posts/s (median)':>17} {'client CPU µs/post':>19}")
    for name in clients:
        print(f"{name:<30} {statistics.median(rates[name]):>17.0f} "
              f"{statistics.median(cpu[name]):>19.0f}")
    fast, slow = (statistics.median(rates[n]) for n in clients)
    cpu_a, cpu_b = (statistics.median(cpu[n]) for n in clients)
    print(f"ratio aiohttp/httpx: throughput x{fast / slow:.2f}, client CPU per post x{cpu_a / cpu_b:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    asyncio.run(bench(args.posts, args.rounds, args.concurrency))


if __name__ == "__main__":
    main()
