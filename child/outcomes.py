"""WNS answer → outcome, as in DESIGN.md's outcome table and reference §3.2."""

from __future__ import annotations

from collections.abc import Mapping

from common.wire import Outcome, WnsDetails

_STATUS_OUTCOME = {
    "received": Outcome.delivered,
    "dropped": Outcome.dropped,
    "channelthrottled": Outcome.throttled,
}


def wns_details(headers: Mapping[str, str]) -> WnsDetails:
    # Real WNS sends both names; older answers only one of them (§3.1, pitfall §8.5).
    status = headers.get("X-WNS-Status") or headers.get("X-WNS-NotificationStatus")
    return WnsDetails(
        status=status.lower() if status else None,
        msg_id=headers.get("X-WNS-Msg-ID"),
        debug_trace=headers.get("X-WNS-Debug-Trace"),
        error_description=headers.get("X-WNS-Error-Description"),
        device_connection_status=headers.get("X-WNS-DeviceConnectionStatus"),
    )


def retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After", "")
    return float(value) if value.isdigit() else None


def classify(http_status: int, details: WnsDetails) -> Outcome:
    """The outcome of one post. A 401 here is final: the caller already refreshed once."""
    if http_status == 200:
        return _STATUS_OUTCOME.get(details.status or "received", Outcome.delivered)
    if http_status in (400, 405, 413):
        return Outcome.rejected
    if http_status == 401:
        return Outcome.credentials_invalid
    if http_status == 403:
        return Outcome.forbidden
    if http_status in (404, 410):
        return Outcome.channel_gone
    if http_status in (406, 429):
        return Outcome.throttled
    if http_status >= 500:
        return Outcome.retry
    return Outcome.rejected
