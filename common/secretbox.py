"""Secrets at rest: Fernet (AES-128-CBC + HMAC-SHA256) under a master key kept out of the store.

The child keeps its WNS client secret encrypted in its configuration; the parent keeps the keys
that sign requests to children encrypted in its database. Only the master key, given through the
environment or a secrets manager, turns them back into plaintext.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken


class SecretDecryptError(Exception):
    """The ciphertext was not made with this master key (or was altered)."""


def new_master_key() -> str:
    return Fernet.generate_key().decode()


def encrypt(master_key: str, plaintext: str) -> str:
    return Fernet(master_key.encode()).encrypt(plaintext.encode()).decode()


def decrypt(master_key: str, ciphertext: str) -> str:
    try:
        return Fernet(master_key.encode()).decrypt(ciphertext.encode()).decode()
    except (InvalidToken, ValueError) as exc:
        raise SecretDecryptError("secret cannot be decrypted with the configured master key") from exc
