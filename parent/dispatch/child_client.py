"""Signed batch posts from the parent to an app's child, one connection pool per app."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
from pydantic import ValidationError

from common.signing import sign
from common.wire import BATCH_PATH, Batch, BatchResult


@dataclass(frozen=True)
class ChildRoute:
    app_id: int
    app_name: str
    child_url: str
    key_id: str
    key: bytes


class ChildUnavailable(Exception):
    """The child did not answer with results: nothing is known about the batch's targets."""


class ChildClients:
    def __init__(self, timeout: float) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._sessions: dict[int, aiohttp.ClientSession] = {}

    def _session(self, app_id: int) -> aiohttp.ClientSession:
        session = self._sessions.get(app_id)
        if session is None or session.closed:
            session = aiohttp.ClientSession(timeout=self._timeout)
            self._sessions[app_id] = session
        return session

    async def post(self, route: ChildRoute, batch: Batch) -> BatchResult:
        body = batch.model_dump_json().encode()
        path = urlsplit(route.child_url).path.rstrip("/") + BATCH_PATH
        headers = {"Content-Type": "application/json",
                   **sign(route.key_id, route.key, "POST", path, body)}
        url = route.child_url.rstrip("/") + BATCH_PATH
        try:
            async with self._session(route.app_id).post(url, data=body, headers=headers) as resp:
                text = await resp.text()
                if resp.status != 200:
                    raise ChildUnavailable(f"child answered {resp.status}: {text[:200]}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ChildUnavailable(f"child unreachable: {exc.__class__.__name__}") from exc
        try:
            return BatchResult.model_validate_json(text)
        except ValidationError as exc:
            raise ChildUnavailable("child answered with a malformed result") from exc

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()
