"""The parent ↔ child wire format: one batch of one notification's targets for one app.

Both sides validate with these models; they are the whole contract between the processes.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from common.wns import NotificationType

BATCH_PATH = "/v1/batches"


class Outcome(StrEnum):
    """Per-target result a child reports; see the outcome table in DESIGN.md."""

    delivered = "delivered"
    dropped = "dropped"
    throttled = "throttled"
    rejected = "rejected"
    credentials_invalid = "credentials_invalid"
    forbidden = "forbidden"
    channel_gone = "channel_gone"
    retry = "retry"


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Payload(_Wire):
    """A native WNS notification; `headers` holds only validated optional X-WNS headers."""

    type: NotificationType
    body: str
    headers: dict[str, str] = Field(default_factory=dict)


class BatchItem(_Wire):
    id: str
    channel: str
    #: index into Batch.payloads, so per-installation bodies (templates) fit without a new format
    payload: int = 0


class Batch(_Wire):
    batch_id: str
    app: str
    payloads: list[Payload] = Field(min_length=1)
    items: list[BatchItem] = Field(max_length=5000)


class WnsDetails(_Wire):
    """What WNS said about one post, kept with the outcome for diagnosis."""

    status: str | None = None
    msg_id: str | None = None
    debug_trace: str | None = None
    error_description: str | None = None
    device_connection_status: str | None = None


class ItemResult(_Wire):
    id: str
    outcome: Outcome
    http_status: int | None = None
    retry_after: float | None = None
    wns: WnsDetails = Field(default_factory=WnsDetails)
    error: str | None = None


class BatchResult(_Wire):
    results: list[ItemResult]
    #: WNS throttled the whole app (406 appthrottled): send nothing for it for this many seconds
    app_throttled_for: float | None = None
