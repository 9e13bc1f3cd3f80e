"""Encryption of stored message bodies at rest (HUB_BODY_KEYS), with AES-256-GCM.

HUB_BODY_KEYS is a comma-separated list of `id:key` (the key 32 bytes, standard base64); the first
key encrypts new bodies, all of them decrypt. A stored body is `nonce (12 bytes) || ciphertext+tag`,
with the key id in its own column and the message id as associated data: a body copied onto another
message's row does not decrypt. `hub keys rotate` re-encrypts old bodies with the first key; after
that the old key can be removed (docs/security.md).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hub.service.ports import BodyUnreadable

__all__ = ["NO_ENCRYPTION", "BodyCipher", "BodyKeysInvalid", "BodyUnreadable", "Sealed"]

NONCE_BYTES = 12
_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,32}")


class BodyKeysInvalid(ValueError):
    """HUB_BODY_KEYS cannot be read; the message says why (never the key)."""


@dataclass(frozen=True, slots=True)
class Sealed:
    key_id: str | None  # None: stored as sent (no key configured)
    data: bytes


class BodyCipher:
    """Seals and opens stored bodies. Without keys it stores bodies as they are."""

    def __init__(self, keys: list[tuple[str, bytes]]) -> None:
        ids = [k for k, _ in keys]
        if len(set(ids)) != len(ids):
            raise BodyKeysInvalid("HUB_BODY_KEYS names a key id twice")
        self._keys = {key_id: AESGCM(key) for key_id, key in keys}
        self.current: str | None = ids[0] if ids else None
        self.key_ids = tuple(ids)

    @classmethod
    def from_setting(cls, text: str) -> BodyCipher:
        """From HUB_BODY_KEYS ("k2:base64,k1:base64"); empty: no encryption."""
        keys: list[tuple[str, bytes]] = []
        for n, item in enumerate(p.strip() for p in text.split(",") if p.strip()):
            key_id, sep, encoded = item.partition(":")
            if not sep or not _KEY_ID.fullmatch(key_id):
                raise BodyKeysInvalid(
                    f"HUB_BODY_KEYS item {n + 1} is not id:base64key (id: 1-32 of A-Za-z0-9._-)"
                )
            try:
                key = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise BodyKeysInvalid(f"HUB_BODY_KEYS key {key_id!r} is not base64") from None
            if len(key) != 32:
                raise BodyKeysInvalid(f"HUB_BODY_KEYS key {key_id!r} is {len(key)} bytes; AES-256 needs 32")
            keys.append((key_id, key))
        return cls(keys)

    @staticmethod
    def new_key() -> str:
        """A fresh key, base64, for HUB_BODY_KEYS."""
        return base64.b64encode(os.urandom(32)).decode()

    def seal(self, message_id: str, body: bytes) -> Sealed:
        if self.current is None:
            return Sealed(None, body)
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._keys[self.current].encrypt(nonce, body, message_id.encode())
        return Sealed(self.current, nonce + sealed)

    def open(self, message_id: str, key_id: str | None, data: bytes) -> bytes:
        if key_id is None:
            return data
        aead = self._keys.get(key_id)
        if aead is None:
            raise BodyUnreadable(
                f"the body of {message_id} is encrypted with key {key_id!r}, "
                "which HUB_BODY_KEYS does not hold"
            )
        try:
            return aead.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], message_id.encode())
        except InvalidTag:
            raise BodyUnreadable(
                f"the body of {message_id} does not decrypt with key {key_id!r}: "
                "the key under that id is not the one it was encrypted with, or the stored body was altered"
            ) from None

    def is_current(self, key_id: str | None) -> bool:
        return key_id == self.current


NO_ENCRYPTION = BodyCipher([])
