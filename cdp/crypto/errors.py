"""Errors of the PII crypto layer.

Messages name data key ids and master key ids only: never a plaintext, associated data or any
key material, so they are safe to log and to record in ``JobRun.error``.
"""

from __future__ import annotations

from rest_framework import status

from cdp.api.errors import SERVER_ERROR, ApplicationError


class CryptoError(ApplicationError):
    """Base of the crypto errors; by default a server-side fault (500)."""

    status_code: int = status.HTTP_500_INTERNAL_SERVER_ERROR
    type = SERVER_ERROR
    default_code = "crypto_error"


class DecryptionFailed(CryptoError):
    """The ciphertext is malformed, was altered, was moved to another row (associated data
    differs) or names a data key that does not exist."""

    default_code = "decryption_failed"


class KeyDestroyed(CryptoError):
    """The data key was destroyed (crypto-shredding): the value is gone for good."""

    status_code = status.HTTP_410_GONE
    default_code = "key_destroyed"


class MasterKeyError(CryptoError):
    """A data key cannot be unwrapped: its master key is not configured, or the configured key
    with that id is not the one it was wrapped with (or the wrapped bytes were altered)."""

    default_code = "master_key_error"
