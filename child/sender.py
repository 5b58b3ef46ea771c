"""Post one batch to WNS: one POST per channel, bounded concurrency, pooled connections.

The child never sleeps or queues: a retryable answer is reported to the parent, whose job it is
to wait. The one retry done here is the one WNS asks for: a 401 refreshes the token and re-posts
that item once (reference §1.4).
"""

from __future__ import annotations

import asyncio
import secrets
import time

import aiohttp
import structlog
from yarl import URL

from child.outcomes import classify, retry_after, wns_details
from child.token import CredentialsRejected, TokenManager, TokenUnavailable
from common.wire import Batch, BatchItem, BatchResult, ItemResult, Outcome, Payload
from common.wns import (
    CONTENT_TYPE,
    WNS_TYPE,
    InvalidChannelUri,
    channel_host,
    validate_channel_uri,
)

log = structlog.get_logger("tocsin.child.sender")


#: how long to hold an app back when WNS throttles it without saying for how long
DEFAULT_APP_THROTTLE_SECONDS = 60.0


def _correlation_vector() -> str:
    """A fresh MS-CV per request (reference §2.2): 16 random bytes, base64, and a '.0' suffix."""
    return secrets.token_urlsafe(16)[:22] + ".0"


class WnsSender:
    def __init__(self, session: aiohttp.ClientSession, tokens: TokenManager, concurrency: int):
        self._session = session
        self._tokens = tokens
        self._slots = asyncio.Semaphore(concurrency)
        #: monotonic time until which WNS told us to send nothing for this app (406 appthrottled)
        self._app_throttled_until = 0.0

    def _throttle_left(self) -> float:
        return max(0.0, self._app_throttled_until - time.monotonic())

    async def send(self, batch: Batch) -> BatchResult:
        try:
            await self._tokens.get()
        except CredentialsRejected as exc:
            results = [_result(i, Outcome.credentials_invalid, str(exc)) for i in batch.items]
        except TokenUnavailable as exc:
            results = [_result(i, Outcome.retry, str(exc)) for i in batch.items]
        else:
            results = list(await asyncio.gather(*(self._send_item(batch, i) for i in batch.items)))
        return BatchResult(results=results, app_throttled_for=self._throttle_left() or None)

    async def _send_item(self, batch: Batch, item: BatchItem) -> ItemResult:
        try:
            validate_channel_uri(item.channel)
        except InvalidChannelUri as exc:
            return _result(item, Outcome.rejected, f"channel URI refused: {exc}")
        if not 0 <= item.payload < len(batch.payloads):
            return _result(item, Outcome.rejected, "payload index out of range")
        payload = batch.payloads[item.payload]
        async with self._slots:
            if wait := self._throttle_left():  # the app is throttled: don't make it worse
                return ItemResult(id=item.id, outcome=Outcome.throttled, retry_after=wait,
                                  error="app throttled by WNS")
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
            wait = retry_after(resp.headers)
            if outcome is Outcome.credentials_invalid:
                self._tokens.invalidate(token)
            elif resp.status == 406 and details.status == "appthrottled":
                wait = wait or DEFAULT_APP_THROTTLE_SECONDS
                self._app_throttled_until = max(self._app_throttled_until, time.monotonic() + wait)
                log.warning("WNS throttled the app", retry_after=wait)
            return ItemResult(id=item.id, outcome=outcome, http_status=resp.status,
                              retry_after=wait, wns=details)


def _result(item: BatchItem, outcome: Outcome, error: str) -> ItemResult:
    return ItemResult(id=item.id, outcome=outcome, error=error)
