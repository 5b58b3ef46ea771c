"""Request bodies of the parent's API. Installation fields use Notification Hubs' names."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from common.problem import Problem
from common.wire import Payload
from common.wns import (
    MAX_PAYLOAD_BYTES,
    InvalidChannelUri,
    InvalidHeader,
    NotificationType,
    normalize_headers,
    validate_channel_uri,
)
from parent.keys import Right

NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
# Notification Hubs' tag alphabet (up to 120 characters, no leading $).
Tag = Annotated[str, Field(pattern=r"^[A-Za-z0-9_@#.:-]{1,120}$")]
INSTALLATION_ID_PATTERN = r"^[A-Za-z0-9_@#.:=-]{1,200}$"
INSTALLATION_ID = re.compile(INSTALLATION_ID_PATTERN)
InstallationId = Annotated[str, Field(pattern=INSTALLATION_ID_PATTERN)]
UserId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_@#.:=-]{1,200}$")]
MAX_TAGS = 60


def _channel(uri: str) -> str:
    try:
        return validate_channel_uri(uri)
    except InvalidChannelUri as exc:
        raise ValueError(f"channel URI {exc}") from None


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HubIn(_Body):
    name: Name


class AppIn(_Body):
    childUrl: str = Field(pattern=r"^https?://[^\s/@]+(/[^\s]*)?$", max_length=2048)
    signingKeyId: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    signingKey: str | None = Field(default=None, min_length=32, max_length=256)

    @model_validator(mode="after")
    def _both_or_neither(self) -> AppIn:
        if (self.signingKeyId is None) != (self.signingKey is None):
            raise ValueError("signingKeyId and signingKey go together")
        return self


class KeyIn(_Body):
    name: str = Field(min_length=1, max_length=100)
    rights: list[Right] = Field(min_length=1)
    app: Name | None = None


class InstallationIn(_Body):
    """An installation as Notification Hubs clients send it, plus the app it belongs to."""

    installationId: InstallationId
    platform: str = Field(pattern=r"^(?i:wns)$")
    pushChannel: Annotated[str, AfterValidator(_channel)]
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_TAGS)
    userId: UserId | None = None
    app: Name | None = None
    # Read-only fields that Notification Hubs returns; clients may echo them back.
    pushChannelExpired: bool | None = None
    expirationTime: str | None = None
    lastUpdate: str | None = None


class PayloadIn(_Body):
    type: NotificationType
    body: str
    headers: dict[str, str] = Field(default_factory=dict, max_length=16)

    @field_validator("body")
    @classmethod
    def _body_fits_wns(cls, body: str, info: ValidationInfo) -> str:
        size = len(body.encode())
        if size > MAX_PAYLOAD_BYTES:
            raise ValueError(f"body is {size} bytes; WNS accepts at most {MAX_PAYLOAD_BYTES}")
        if info.data.get("type") == "raw" and not body:
            raise ValueError("a raw notification needs a body: WNS drops empty ones silently")
        return body

    def wire(self) -> Payload:
        """The payload as children get it; raises Problem naming a bad header
        (`payload.headers.X-WNS-TTL`), which a field validator could not name."""
        try:
            headers = normalize_headers(self.type, self.headers)
        except InvalidHeader as exc:
            raise Problem(str(exc), field=f"payload.headers.{exc.header}",
                          code="invalid_field") from None
        return Payload(type=self.type, body=self.body, headers=headers)


class TargetIn(_Body):
    """Exactly one of: an installation, a tag, a user, or everyone in the hub."""

    installationId: InstallationId | None = None
    tag: Tag | None = None
    userId: UserId | None = None
    everyone: bool | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> TargetIn:
        chosen = [k for k, v in self.model_dump().items() if v not in (None, False)]
        if len(chosen) != 1:
            raise ValueError("give exactly one of installationId, tag, userId, everyone")
        return self

    def stored(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v not in (None, False)}


class NotificationIn(_Body):
    target: TargetIn
    payload: PayloadIn
    #: limit the send to these apps of the hub (default: every app)
    apps: list[Name] | None = Field(default=None, min_length=1)
