"""What the emulator knows: app identities, issued access tokens, channels and what it received.

Channel tokens are self-describing (the app identity, issue time and an id, MAC'd with a key kept
in the state directory), as real WNS encodes the app identity in the channel URL. So a channel
stays valid across emulator restarts, and a token of another app is recognised as such (403).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
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
    """One answer a test wants a channel to give, e.g. 503 with Retry-After."""

    status: int = Field(ge=200, le=599)
    headers: dict[str, str] = Field(default_factory=dict)


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
