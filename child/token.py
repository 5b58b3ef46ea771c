"""The child's WNS access token: fetched with the client-credentials flow, cached until shortly
before it expires, refreshed by one request however many sends wait for it, and fetched again
every time it expires (PushSharp's renew-once bug, reference §8.1, is the thing to avoid).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp
import structlog

from config.settings import EntraIdentity, PackageSidIdentity

log = structlog.get_logger("tocsin.child.token")

#: The reference says expires_in may be absent; WNS tokens last 24 h (§1.1).
DEFAULT_LIFETIME_SECONDS = 86400.0


class CredentialsRejected(Exception):
    """The token endpoint refused our client id/secret: no post can succeed until an admin acts."""


class TokenUnavailable(Exception):
    """The token endpoint could not be reached or answered oddly: worth retrying later."""


@dataclass(frozen=True)
class AccessToken:
    value: str
    refresh_at: float


class TokenManager:
    def __init__(
        self,
        identity: PackageSidIdentity | EntraIdentity,
        client_secret: str,
        session: aiohttp.ClientSession,
        refresh_margin: float,
    ) -> None:
        self._identity = identity
        self._client_id = (
            identity.package_sid if isinstance(identity, PackageSidIdentity) else identity.client_id
        )
        self._secret = client_secret
        self._session = session
        self._margin = refresh_margin
        self._token: AccessToken | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> str:
        token = self._token
        if token is not None and time.monotonic() < token.refresh_at:
            return token.value
        async with self._lock:
            token = self._token
            if token is None or time.monotonic() >= token.refresh_at:
                token = await self._fetch()
                self._token = token
            return token.value

    def invalidate(self, value: str) -> None:
        """Drop `value` after WNS refused it (401), unless a newer token already replaced it."""
        if self._token is not None and self._token.value == value:
            self._token = None

    async def _fetch(self) -> AccessToken:
        form = {
            "grant_type": "client_credentials",
            "client_id": self._client_id,
            "client_secret": self._secret,
            "scope": self._identity.scope,
        }
        try:
            async with self._session.post(self._identity.token_url, data=form) as resp:
                status = resp.status
                body = await resp.json(content_type=None) if status == 200 else None
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise TokenUnavailable(f"token endpoint unreachable: {exc.__class__.__name__}") from exc
        if status in (400, 401, 403):
            log.error("token endpoint refused the app's credentials", http_status=status)
            raise CredentialsRejected(f"token endpoint refused the credentials ({status})")
        if status != 200 or not isinstance(body, dict):
            raise TokenUnavailable(f"token endpoint answered {status}")
        value = body.get("access_token")
        token_type = str(body.get("token_type", "bearer"))
        if not isinstance(value, str) or not value or token_type.lower() != "bearer":
            raise TokenUnavailable("token endpoint answer has no bearer access_token")
        try:
            lifetime = float(body.get("expires_in", DEFAULT_LIFETIME_SECONDS))
        except (TypeError, ValueError):
            lifetime = DEFAULT_LIFETIME_SECONDS
        # Refresh ahead of expiry, but never sooner than half the lifetime for short tokens.
        refresh_in = max(lifetime - self._margin, lifetime / 2)
        log.info("fetched WNS access token", expires_in=lifetime)
        return AccessToken(value, time.monotonic() + refresh_in)
