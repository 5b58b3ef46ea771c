"""What the emulator knows: app identities, issued access tokens, channels and what it received.

Channel tokens are self-describing (the app identity, issue time and an id, MAC'd with a key kept
in the state directory), as real WNS encodes the app identity in the channel URL. So a channel
stays valid across emulator restarts, and a token of another app is recognised as such (403).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
import secrets
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, Field

from config.settings import EmulatedApp

_SUBDOMAINS = ("db5", "bn1", "db3", "dm3p", "wns2-by3p")
_MAC_BYTES = 12


@dataclass(frozen=True)
class Channel:
    identity: str
    issued_at: float
    channel_id: str


class ScriptedAnswer(BaseModel):
    """One answer a test wants a channel to give, e.g. 503 with Retry-After, or a reset
    connection (no HTTP answer at all)."""

    status: int = Field(default=200, ge=200, le=599)
    headers: dict[str, str] = Field(default_factory=dict)
    reset: bool = False
    #: hold the answer this long (longer than the child's read timeout makes it time out)
    delaySeconds: float = Field(default=0.0, ge=0)


class FaultRate(BaseModel):
    """Answer `status` (with `headers`) to this fraction of posts, at random."""

    status: int = Field(ge=200, le=599)
    rate: float = Field(ge=0, le=1)
    headers: dict[str, str] = Field(default_factory=dict)


class Throttling(BaseModel):
    """Posts per second above which WNS throttles: a channel (200 channelthrottled) or a whole
    app (406 appthrottled with Retry-After)."""

    channel_per_second: int | None = Field(default=None, ge=1)
    app_per_second: int | None = Field(default=None, ge=1)
    app_retry_after: int = Field(default=5, ge=0)


class _Window:
    """Posts accepted in the last second; a refused post does not count against the limit."""

    def __init__(self) -> None:
        self._times: deque[float] = deque()

    def allow(self, now: float, limit: int) -> bool:
        while self._times and self._times[0] <= now - 1.0:
            self._times.popleft()
        if len(self._times) >= limit:
            return False
        self._times.append(now)
        return True


@dataclass
class IssuedToken:
    identity: str
    expires_at: float


@dataclass
class EmulatorState:
    channel_key: bytes
    token_lifetime: int
    channel_lifetime: float
    apps: dict[str, EmulatedApp] = field(default_factory=dict)
    tokens: dict[str, IssuedToken] = field(default_factory=dict)
    #: channel id -> "expired" (410) or "invalid" (404), set through the control API
    revoked: dict[str, str] = field(default_factory=dict)
    #: channel id -> seconds to wait before answering
    latency: dict[str, float] = field(default_factory=dict)
    #: channel id -> answers to give, in order, before behaving normally again
    scripts: dict[str, list[ScriptedAnswer]] = field(default_factory=dict)
    faults: list[FaultRate] = field(default_factory=list)
    #: every post waits a uniform random time in this range (seconds)
    latency_range: tuple[float, float] = (0.0, 0.0)
    throttling: Throttling = field(default_factory=Throttling)
    #: benchmark mode: validate everything, but keep counts instead of every request
    fast: bool = False
    status_counts: Counter[int] = field(default_factory=Counter)
    _windows: dict[str, _Window] = field(default_factory=lambda: defaultdict(_Window))
    received: list[dict[str, Any]] = field(default_factory=list)
    token_requests: int = 0

    @classmethod
    def load(cls, state_dir: Path, token_lifetime: int, channel_lifetime_days: float) -> EmulatorState:
        key_file = state_dir / "channel.key"
        if not key_file.exists():
            state_dir.mkdir(parents=True, exist_ok=True)
            key_file.write_bytes(secrets.token_bytes(32))
            key_file.chmod(0o600)
        return cls(key_file.read_bytes(), token_lifetime, channel_lifetime_days * 86400)

    def add_app(self, app: EmulatedApp) -> None:
        self.apps[app.identity] = app

    def issue_token(self, identity: str) -> str:
        token = base64.b64encode(secrets.token_bytes(48)).decode()
        self.tokens[token] = IssuedToken(identity, time.time() + self.token_lifetime)
        return token

    def token_identity(self, token: str) -> str | None:
        issued = self.tokens.get(token)
        if issued is None or issued.expires_at <= time.time():
            return None
        return issued.identity

    def mint_channel(self, identity: str) -> str:
        payload = f"{identity}\x00{int(time.time())}\x00{secrets.token_hex(9)}".encode()
        mac = hmac.new(self.channel_key, payload, hashlib.sha256).digest()[:_MAC_BYTES]
        token = base64.b64encode(payload + mac).decode()
        host = f"{secrets.choice(_SUBDOMAINS)}.notify.windows.com"
        return f"https://{host}/?token={quote(token, safe='')}"

    def parse_channel(self, token: str) -> Channel | None:
        try:
            raw = base64.b64decode(token, validate=True)
        except ValueError:
            return None
        payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        expected = hmac.new(self.channel_key, payload, hashlib.sha256).digest()[:_MAC_BYTES]
        if len(raw) <= _MAC_BYTES or not hmac.compare_digest(mac, expected):
            return None
        identity, issued, channel_id = payload.decode().split("\x00")
        return Channel(identity, float(issued), channel_id)

    def random_fault(self) -> FaultRate | None:
        roll = random.random()  # noqa: S311 - fault injection, not security
        for fault in self.faults:
            if roll < fault.rate:
                return fault
            roll -= fault.rate
        return None

    def over_limit(self, channel: Channel) -> str | None:
        """'app' or 'channel' if this post exceeds a throttling threshold."""
        now = time.monotonic()
        limits = self.throttling
        if limits.app_per_second and not self._windows["a:" + channel.identity].allow(
            now, limits.app_per_second
        ):
            return "app"
        if limits.channel_per_second and not self._windows["c:" + channel.channel_id].allow(
            now, limits.channel_per_second
        ):
            return "channel"
        return None

    def revoke_tokens(self) -> None:
        self.tokens.clear()

    def next_scripted(self, channel: Channel) -> ScriptedAnswer | None:
        script = self.scripts.get(channel.channel_id)
        return script.pop(0) if script else None

    def channel_state(self, channel: Channel) -> str:
        """'live', 'expired' (410) or 'invalid' (404)."""
        forced = self.revoked.get(channel.channel_id)
        if forced:
            return forced
        if time.time() - channel.issued_at > self.channel_lifetime:
            return "expired"
        return "live"
