"""Encryption of biometric and personal data at rest (AES-256-GCM).

Each value is bound to where it lives (its *context*, e.g. ``"enrolment:<uuid>:face_image"``)
through the GCM associated data, so a ciphertext copied to another row or column fails to
decrypt instead of silently standing in for someone else's data.
"""

from __future__ import annotations

import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from central_api.exceptions import InternalError

_VERSION = b"\x01"
_NONCE = 12


class DecryptionError(InternalError):
    """A stored value could not be decrypted (wrong key, wrong context or tampered data)."""


class FieldCipher:
    """AES-GCM with a random 96-bit nonce; blob = version | key id (4) | nonce | ciphertext."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("AES-256 key must be 32 bytes")
        self._aead = AESGCM(key)
        self.key_id = hashlib.sha256(b"rnp-data-key-id" + key).digest()[:4]

    def encrypt(self, plaintext: bytes, context: str) -> bytes:
        """Encrypt ``plaintext`` bound to ``context``."""
        nonce = os.urandom(_NONCE)
        ct = self._aead.encrypt(nonce, plaintext, context.encode())
        return _VERSION + self.key_id + nonce + ct

    def decrypt(self, blob: bytes, context: str) -> bytes:
        """Decrypt a blob made by :meth:`encrypt` with the same key and context."""
        if len(blob) < 1 + 4 + _NONCE + 16 or blob[:1] != _VERSION:
            raise DecryptionError("not an encrypted value of a known format")
        if blob[1:5] != self.key_id:
            raise DecryptionError("value was encrypted under another data key")
        nonce = blob[5 : 5 + _NONCE]
        try:
            return self._aead.decrypt(nonce, blob[5 + _NONCE :], context.encode())
        except InvalidTag as exc:
            raise DecryptionError("authentication failed (tampered data or wrong context)") from exc
