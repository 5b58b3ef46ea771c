"""Post one batch to WNS: one POST per channel, bounded concurrency, pooled connections.

The child never sleeps or queues: a retryable answer is reported to the parent, whose job it is
to wait. The one retry done here is the one WNS asks for: a 401 refreshes the token and re-posts
that item once (reference §1.4).
"""

from __future__ import annotations

import asyncio
import secrets

import aiohttp
import structlog
from yarl import URL

from child.outcomes import classify, retry_after, wns_details
from child.token import CredentialsRejected, TokenManager, TokenUnavailable
from common.wire import Batch, BatchItem, ItemResult, Outcome, Payload
from common.wns import (
    CONTENT_TYPE,
    WNS_TYPE,
    InvalidChannelUri,
    channel_host,
    validate_channel_uri,
)

log = structlog.get_logger("tocsin.child.sender")


def _correlation_vector() -> str:
    """A fresh MS-CV per request (reference §2.2): 16 random bytes, base64, and a '.0' suffix."""
    return secrets.token_urlsafe(16)[:22] + ".0"


class WnsSender:
    def __init__(self, session: aiohttp.ClientSession, tokens: TokenManager, concurrency: int):
        self._session = session
        self._tokens = tokens
        self._slots = asyncio.Semaphore(concurrency)

    async def send(self, batch: Batch) -> list[ItemResult]:
        try:
            await self._tokens.get()
        except CredentialsRejected as exc:
            return [_result(i, Outcome.credentials_invalid, str(exc)) for i in batch.items]
        except TokenUnavailable as exc:
            return [_result(i, Outcome.retry, str(exc)) for i in batch.items]
        return list(await asyncio.gather(*(self._send_item(batch, item) for item in batch.items)))

    async def _send_item(self, batch: Batch, item: BatchItem) -> ItemResult:
        try:
            validate_channel_uri(item.channel)
        except InvalidChannelUri as exc:
            return _result(item, Outcome.rejected, f"channel URI refused: {exc}")
        if not 0 <= item.payload < len(batch.payloads):
            return _result(item, Outcome.rejected, "payload index out of range")
        payload = batch.payloads[item.payload]
        async with self._slots:
            try:
                result = await self._post(item, payload)
                if result.outcome is Outcome.credentials_invalid:
                    result = await self._post(item, payload)  # the token was refreshed once
                return result
            except CredentialsRejected as exc:
                return _result(item, Outcome.credentials_invalid, str(exc))
            except TokenUnavailable as exc:
                return _result(item, Outcome.retry, str(exc))
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.info("post to WNS failed", channel_host=channel_host(item.channel),
                         error=exc.__class__.__name__)
                return _result(item, Outcome.retry, f"network error: {exc.__class__.__name__}")

    async def _post(self, item: BatchItem, payload: Payload) -> ItemResult:
        token = await self._tokens.get()
        headers = {
            **payload.headers,
            "Authorization": f"Bearer {token}",
            "X-WNS-Type": WNS_TYPE[payload.type],
            "Content-Type": CONTENT_TYPE[payload.type],
            "MS-CV": _correlation_vector(),
        }
        # encoded=True: post to the channel URI byte for byte; re-encoding it makes WNS say 404.
        url = URL(item.channel, encoded=True)
        async with self._session.post(url, data=payload.body.encode(), headers=headers) as resp:
            await resp.read()
            details = wns_details(resp.headers)
            outcome = classify(resp.status, details)
            if outcome is Outcome.credentials_invalid:
                self._tokens.invalidate(token)
            return ItemResult(id=item.id, outcome=outcome, http_status=resp.status,
                              retry_after=retry_after(resp.headers), wns=details)


def _result(item: BatchItem, outcome: Outcome, error: str) -> ItemResult:
    return ItemResult(id=item.id, outcome=outcome, error=error)
