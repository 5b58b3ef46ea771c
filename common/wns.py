"""WNS protocol facts shared by the parent (validation at the API) and the child (posting).

Everything here follows `shared/reference/wns-protocol.md`; section numbers refer to it.
"""

from __future__ import annotations

import re
from typing import Final, Literal
from urllib.parse import urlsplit

NotificationType = Literal["toast", "tile", "badge", "raw"]

#: X-WNS-Type value per notification type (§2.2).
WNS_TYPE: Final[dict[str, str]] = {
    "toast": "wns/toast",
    "tile": "wns/tile",
    "badge": "wns/badge",
    "raw": "wns/raw",
}

#: Content-Type WNS requires for each type (§2.3): raw with text/xml gets a 400.
CONTENT_TYPE: Final[dict[str, str]] = {
    "toast": "text/xml",
    "tile": "text/xml",
    "badge": "text/xml",
    "raw": "application/octet-stream",
}

#: WNS answers 413 above this many payload bytes (§2.4).
MAX_PAYLOAD_BYTES: Final = 5000

#: The only hosts a channel URI may point at (§4): the domain and any subdomain of it.
CHANNEL_DOMAIN: Final = "notify.windows.com"

_MAX_CHANNEL_URI_LENGTH: Final = 2048
_TAG_OR_GROUP = re.compile(r"^[A-Za-z0-9]{1,16}$")
_BOOLEAN = ("true", "false")


class InvalidChannelUri(ValueError):
    """The channel URI is not one we may post to; the message says why without echoing it."""


def validate_channel_uri(uri: str) -> str:
    """Return `uri` unchanged if it is an https URL on notify.windows.com, else raise.

    This is the SSRF guard: a device could otherwise make us POST a bearer token anywhere.
    The URI is returned as given, never re-encoded: WNS answers 404 to a modified URI (§4).
    """
    if len(uri) > _MAX_CHANNEL_URI_LENGTH:
        raise InvalidChannelUri(f"longer than {_MAX_CHANNEL_URI_LENGTH} characters")
    if not uri.isascii() or any(c.isspace() or ord(c) < 0x20 or c == "\\" for c in uri):
        raise InvalidChannelUri("contains whitespace, control characters or backslashes")
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        raise InvalidChannelUri("is not a valid URL") from exc
    if parts.scheme != "https":
        raise InvalidChannelUri("must use https")
    if "@" in parts.netloc:
        raise InvalidChannelUri("must not contain user information")
    if port is not None or parts.netloc.endswith(":"):
        raise InvalidChannelUri("must not name a port")
    host = parts.hostname or ""
    if parts.netloc != host:
        # Upper case or anything else urlsplit normalised away: refuse rather than guess.
        raise InvalidChannelUri("host must be lower case and plain")
    if host != CHANNEL_DOMAIN and not host.endswith("." + CHANNEL_DOMAIN):
        raise InvalidChannelUri(f"host must be {CHANNEL_DOMAIN} or a subdomain of it")
    if parts.fragment:
        raise InvalidChannelUri("must not have a fragment")
    return uri


def channel_host(uri: str) -> str:
    """The channel's host: safe to log, unlike the token in its query."""
    return urlsplit(uri).hostname or "?"


def _boolean(value: str) -> str | None:
    return None if value.lower() in _BOOLEAN else "must be true or false"


def _ttl(value: str) -> str | None:
    return None if value.isdigit() and int(value) <= 2**31 - 1 else "must be whole seconds"


def _priority(value: str) -> str | None:
    return None if value in ("1", "2", "3", "4") else "must be 1, 2, 3 or 4"


def _tag_or_group(value: str) -> str | None:
    return None if _TAG_OR_GROUP.match(value) else "must be 1 to 16 letters or digits"


def _cache_policy(value: str) -> str | None:
    return None if value in ("cache", "no-cache") else "must be cache or no-cache"


#: Optional X-WNS request headers a sender may set (§2.2), with their value checks. Keys are the
#: canonical spelling we forward; lookups are case-insensitive.
OPTIONAL_HEADERS: Final = {
    "X-WNS-Cache-Policy": _cache_policy,
    "X-WNS-TTL": _ttl,
    "X-WNS-Tag": _tag_or_group,
    "X-WNS-Group": _tag_or_group,
    "X-WNS-PRIORITY": _priority,
    "X-WNS-SuppressPopup": _boolean,
    "X-WNS-RequestForStatus": _boolean,
}
_CANONICAL = {name.lower(): name for name in OPTIONAL_HEADERS}


class InvalidHeader(ValueError):
    """A send's WNS header is unknown or has a bad value; `header` names it."""

    def __init__(self, header: str, reason: str) -> None:
        super().__init__(f"{header} {reason}")
        self.header = header


def normalize_headers(kind: str, headers: dict[str, str]) -> dict[str, str]:
    """Validate a send's X-WNS headers and return them in canonical spelling.

    X-WNS-Type may be given but must agree with the payload type; Content-Type is ours to set.
    """
    result: dict[str, str] = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower == "x-wns-type":
            if value != WNS_TYPE[kind]:
                raise InvalidHeader(name, f"must be {WNS_TYPE[kind]} for a {kind} notification")
            continue
        canonical = _CANONICAL.get(lower)
        if canonical is None:
            raise InvalidHeader(name, "is not a WNS header Tocsin forwards")
        problem = OPTIONAL_HEADERS[canonical](value)
        if problem:
            raise InvalidHeader(canonical, problem)
        result[canonical] = value
    return result
