"""Access keys: `<id>.<secret>` strings, where only a hash of the secret is stored.

The secret part carries 256 bits of randomness, so a plain SHA-256 is enough to store it; the
comparison is constant-time all the same.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum


class Right(StrEnum):
    listen = "listen"  # register, read and delete installations
    send = "send"      # send notifications and read their outcome
    manage = "manage"  # apps, keys and everything else in the hub


@dataclass(frozen=True)
class NewKey:
    id: str
    secret: str

    @property
    def token(self) -> str:
        return f"{self.id}.{self.secret}"

    @property
    def secret_hash(self) -> bytes:
        return hash_secret(self.secret)


def generate() -> NewKey:
    return NewKey(id="tk_" + secrets.token_hex(8), secret=secrets.token_urlsafe(32))


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


KEY_ID = re.compile(r"^tk_[0-9a-f]{16}$")


def split(token: str) -> tuple[str, str] | None:
    key_id, dot, secret = token.partition(".")
    if not dot or not KEY_ID.match(key_id) or not secret:
        return None
    return key_id, secret
