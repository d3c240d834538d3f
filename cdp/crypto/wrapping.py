"""Wrapping data keys under master keys.

A wrapped data key is ``version (1 byte) | nonce (12 bytes) | AES-256-GCM(data key) + tag``
with the data key's id and the master key's id as associated data, so a wrapped key copied onto
another ``DataKey`` row (say, to survive that row's destruction) or relabelled with another
master key id does not unwrap. Random 96-bit nonces are fine for far more wraps than a master key
will ever do (the usual bound is 2**32 per key).
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag

from cdp.crypto.config import MasterKey, MasterKeyRing, master_key_ring
from cdp.crypto.errors import MasterKeyError

NONCE_BYTES = 12
WRAP_VERSION = 1


def data_key_wrap(raw_key: bytes, *, data_key_id: int, master_key: MasterKey) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    aad = _wrap_aad(data_key_id=data_key_id, master_key_id=master_key.key_id)
    return bytes([WRAP_VERSION]) + nonce + master_key.aead.encrypt(nonce, raw_key, aad)


def data_key_unwrap(
    wrapped: bytes, *, data_key_id: int, master_key_id: str, ring: MasterKeyRing | None = None
) -> bytes:
    ring = ring or master_key_ring()
    master_key = ring.get(master_key_id)
    if master_key is None:
        raise MasterKeyError(
            f"Data key {data_key_id} is wrapped by master key {master_key_id!r}, which is not "
            f"configured (CDP_MASTER_KEY has {', '.join(map(repr, ring.key_ids))}); add it back, "
            "or run rotate_keys before retiring a master key"
        )
    version, nonce = wrapped[:1], wrapped[1 : 1 + NONCE_BYTES]
    if version != bytes([WRAP_VERSION]):
        raise MasterKeyError(f"Data key {data_key_id} has an unknown wrapping format")
    aad = _wrap_aad(data_key_id=data_key_id, master_key_id=master_key_id)
    try:
        return master_key.aead.decrypt(nonce, wrapped[1 + NONCE_BYTES :], aad)
    except InvalidTag:
        raise MasterKeyError(
            f"Data key {data_key_id} does not unwrap with master key {master_key_id!r}: "
            "CDP_MASTER_KEY holds different key material under that id, or the wrapped key was "
            "altered"
        ) from None


def _wrap_aad(*, data_key_id: int, master_key_id: str) -> bytes:
    return f"cdp.crypto.data_key:v{WRAP_VERSION}:{data_key_id}:{master_key_id}".encode()
