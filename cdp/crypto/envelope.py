"""Encrypting PII values with data keys (AES-256-GCM).

A ciphertext is ``version (1 byte) | data key id (8 bytes, big-endian) | nonce (12 bytes) |
ciphertext + tag (16 bytes)``: 37 bytes plus the UTF-8 length of the value. It names its own
data key, so a column needs no key reference to be decrypted, and ``data_key_id_of`` tells an
erasure which key a stored value depends on.

``aad`` (associated data) is not stored but must be given again to decrypt: pass the row's
identity, e.g. ``b"identity.identifier:123:value"``, so a ciphertext copied to another row or
column does not decrypt. The header (version and key id) is authenticated with it.

Unwrapped keys are cached in process memory; see ``cdp.crypto.key_cache`` for how soon a
destroyed key stops decrypting. Errors name data key ids only, never values or key material.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cdp.crypto.errors import DecryptionFailed, KeyDestroyed
from cdp.crypto.key_cache import data_key_cache
from cdp.crypto.models import DataKey
from cdp.crypto.selectors import DataKeyMaterial, data_keys_material
from cdp.crypto.wrapping import data_key_unwrap

CIPHERTEXT_VERSION = 1
NONCE_BYTES = 12
TAG_BYTES = 16
_HEADER = struct.Struct(">BQ")  # version, data key id
OVERHEAD_BYTES = _HEADER.size + NONCE_BYTES + TAG_BYTES

Ciphertext = bytes | memoryview  # BinaryField values come back from PostgreSQL as memoryview


def encrypt(plaintext: str, *, key: DataKey, aad: bytes) -> bytes:
    """Encrypt ``plaintext`` under ``key``; no query: the row in hand is trusted, so a key
    destroyed since it was loaded still encrypts (into a value nobody can read back)."""
    return encrypt_bytes(plaintext.encode("utf-8"), key=key, aad=aad)


def encrypt_bytes(plaintext: bytes, *, key: DataKey, aad: bytes) -> bytes:
    """``encrypt`` for binary content (an access export's zip), in the same format."""
    _check_aad(aad)
    header = _HEADER.pack(CIPHERTEXT_VERSION, _saved_id(key))
    nonce = os.urandom(NONCE_BYTES)
    sealed = _aead_for_key(key).encrypt(nonce, plaintext, header + aad)
    return header + nonce + sealed


def decrypt(ciphertext: Ciphertext, *, aad: bytes) -> str:
    """Decrypt one value; at most one query (none when its data key is cached)."""
    (plaintext,) = decrypt_many([(ciphertext, aad)])
    return plaintext


def decrypt_bytes(ciphertext: Ciphertext, *, aad: bytes) -> bytes:
    """Decrypt what ``encrypt_bytes`` made; at most one query. Raises like ``decrypt``."""
    sealed = bytes(ciphertext)
    key_id = data_key_id_of(sealed)
    aead = _aeads_for_ids([key_id])[key_id]
    return _open_bytes(sealed, aad=aad, aead=aead, key_id=key_id)


def decrypt_many(items: Iterable[tuple[Ciphertext, bytes]]) -> list[str]:
    """Decrypt ``(ciphertext, aad)`` pairs with one query for all uncached data keys.

    The first failure raises (``DecryptionFailed``, ``KeyDestroyed`` or ``MasterKeyError``) and
    nothing is returned; callers showing partly erased data use ``decrypt_many_unless_erased``.
    """
    pairs = [(bytes(ciphertext), aad) for ciphertext, aad in items]
    key_ids = [data_key_id_of(ciphertext) for ciphertext, _ in pairs]
    aeads = _aeads_for_ids(key_ids)
    return [
        _open(ciphertext, aad=aad, aead=aeads[key_id], key_id=key_id)
        for (ciphertext, aad), key_id in zip(pairs, key_ids, strict=True)
    ]


def decrypt_many_unless_erased(items: Iterable[tuple[Ciphertext, bytes]]) -> list[str | None]:
    """``decrypt_many`` for lists that may hold erased values: a ciphertext whose data key was
    destroyed gives None instead of failing the whole list, with the same one query.

    For readers showing many rows of several people (a page of events), where one erased person
    must not make everyone else's rows unreadable. Any other failure still raises.
    """
    pairs = [(bytes(ciphertext), aad) for ciphertext, aad in items]
    key_ids = [data_key_id_of(ciphertext) for ciphertext, _ in pairs]
    aeads = _aeads_for_ids(key_ids, erased=True)
    return [
        None
        if key_id not in aeads
        else _open(ciphertext, aad=aad, aead=aeads[key_id], key_id=key_id)
        for (ciphertext, aad), key_id in zip(pairs, key_ids, strict=True)
    ]


def data_key_id_of(ciphertext: Ciphertext) -> int:
    """The id of the data key a ciphertext was made with (read from its header, not verified)."""
    if len(ciphertext) < OVERHEAD_BYTES:
        raise DecryptionFailed("Ciphertext is too short to be a cdp ciphertext")
    version, key_id = _HEADER.unpack_from(ciphertext)
    if version != CIPHERTEXT_VERSION:
        raise DecryptionFailed(f"Unsupported ciphertext version {version}")
    return int(key_id)


def _open(ciphertext: bytes, *, aad: bytes, aead: AESGCM, key_id: int) -> str:
    return _open_bytes(ciphertext, aad=aad, aead=aead, key_id=key_id).decode("utf-8")


def _open_bytes(ciphertext: bytes, *, aad: bytes, aead: AESGCM, key_id: int) -> bytes:
    _check_aad(aad)
    header = ciphertext[: _HEADER.size]
    nonce = ciphertext[_HEADER.size : _HEADER.size + NONCE_BYTES]
    try:
        plaintext = aead.decrypt(nonce, ciphertext[_HEADER.size + NONCE_BYTES :], header + aad)
    except InvalidTag:
        raise DecryptionFailed(
            f"Ciphertext under data key {key_id} does not authenticate: it was altered or "
            "belongs to another row (associated data differs)"
        ) from None
    return plaintext


def _aead_for_key(key: DataKey) -> AESGCM:
    key_id = _saved_id(key)
    if key.destroyed_at is not None or key.wrapped_key is None:
        raise KeyDestroyed(f"Data key {key_id} is destroyed: nothing can be encrypted under it")
    aead = data_key_cache.get(key_id)
    if aead is None:
        raw = data_key_unwrap(
            bytes(key.wrapped_key), data_key_id=key_id, master_key_id=key.master_key_id
        )
        aead = AESGCM(raw)
        data_key_cache.put(key_id, aead)
    return aead


def _aeads_for_ids(key_ids: Sequence[int], *, erased: bool = False) -> dict[int, AESGCM]:
    """The ready AEADs of these keys, one query for the uncached ones. With ``erased`` a
    destroyed key is left out of the result instead of raising ``KeyDestroyed``."""
    found: dict[int, AESGCM] = {}
    missing: set[int] = set()
    for key_id in key_ids:
        aead = data_key_cache.get(key_id)
        if aead is None:
            missing.add(key_id)
        else:
            found[key_id] = aead
    if missing:
        rows = data_keys_material(ids=missing)
        for key_id in sorted(missing):
            row = rows.get(key_id)
            if erased and row is not None and row.destroyed_at is not None:
                continue
            aead = AESGCM(_unwrap_row(row, key_id=key_id))
            data_key_cache.put(key_id, aead)
            found[key_id] = aead
    return found


def _unwrap_row(row: DataKeyMaterial | None, *, key_id: int) -> bytes:
    if row is None:
        raise DecryptionFailed(f"Ciphertext names data key {key_id}, which does not exist")
    if row.destroyed_at is not None or row.wrapped_key is None:
        raise KeyDestroyed(f"Data key {key_id} was destroyed: the value is erased")
    return data_key_unwrap(row.wrapped_key, data_key_id=key_id, master_key_id=row.master_key_id)


def _saved_id(key: DataKey) -> int:
    if key.pk is None:
        raise ValueError("Data keys are made by cdp.crypto.services.data_key_create")
    return int(key.pk)


def _check_aad(aad: bytes) -> None:
    if not isinstance(aad, bytes) or not aad:
        raise ValueError("aad must be non-empty bytes binding the value to its row")
