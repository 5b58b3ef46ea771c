"""HMAC signatures on parent → child requests.

The signed string binds the key id, a timestamp, the method, the path and a digest of the body,
so a captured request cannot be replayed after the skew window or altered in transit. Several key
ids may be valid at once on the child, which is how a signing key rotates with overlap.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping

KEY_ID_HEADER = "X-Tocsin-Key-Id"
TIMESTAMP_HEADER = "X-Tocsin-Timestamp"
DIGEST_HEADER = "X-Tocsin-Content-SHA256"
SIGNATURE_HEADER = "X-Tocsin-Signature"

MAX_SKEW_SECONDS = 300


class SignatureError(Exception):
    """The request is not signed by a key we hold; the message is safe to return."""


def _string_to_sign(key_id: str, timestamp: str, method: str, path: str, digest: str) -> bytes:
    return "\n".join(("tocsin-v1", key_id, timestamp, method.upper(), path, digest)).encode()


def _mac(key: bytes, message: bytes) -> str:
    return base64.urlsafe_b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


def sign(
    key_id: str, key: bytes, method: str, path: str, body: bytes, now: float | None = None
) -> dict[str, str]:
    """Headers that authenticate this request to a child holding `key` under `key_id`."""
    timestamp = str(int(time.time() if now is None else now))
    digest = hashlib.sha256(body).hexdigest()
    signature = _mac(key, _string_to_sign(key_id, timestamp, method, path, digest))
    return {
        KEY_ID_HEADER: key_id,
        TIMESTAMP_HEADER: timestamp,
        DIGEST_HEADER: digest,
        SIGNATURE_HEADER: signature,
    }


def verify(
    headers: Mapping[str, str],
    method: str,
    path: str,
    body: bytes,
    keys: Mapping[str, bytes],
    now: float | None = None,
) -> str:
    """Return the key id that signed this request, or raise SignatureError."""
    key_id = headers.get(KEY_ID_HEADER, "")
    timestamp = headers.get(TIMESTAMP_HEADER, "")
    signature = headers.get(SIGNATURE_HEADER, "")
    if not (key_id and timestamp and signature):
        raise SignatureError("request is not signed")
    key = keys.get(key_id)
    if key is None:
        raise SignatureError("unknown signing key id")
    if not timestamp.isdigit():
        raise SignatureError("malformed timestamp")
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > MAX_SKEW_SECONDS:
        raise SignatureError("timestamp outside the allowed clock skew")
    digest = hashlib.sha256(body).hexdigest()
    expected = _mac(key, _string_to_sign(key_id, timestamp, method, path, digest))
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise SignatureError("signature does not match")
    return key_id


class ReplayGuard:
    """Signatures accepted within the skew window, so a captured request cannot be replayed.

    Every request the parent sends is signed afresh (its own timestamp and batch id), so a
    repeated signature is never a legitimate retry. Held in memory per process: replicas behind
    a load balancer each keep their own.
    """

    def __init__(self, window: float = 2 * MAX_SKEW_SECONDS) -> None:
        self._window = window
        self._seen: dict[str, float] = {}
        self._next_prune = 0.0

    def first_time(self, signature: str, now: float | None = None) -> bool:
        current = time.time() if now is None else now
        if current >= self._next_prune:
            self._seen = {sig: until for sig, until in self._seen.items() if until > current}
            self._next_prune = current + self._window / 10
        if signature in self._seen:
            return False
        self._seen[signature] = current + self._window
        return True
