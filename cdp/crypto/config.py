"""The crypto settings, parsed and validated: master keys and the blind index key.

``CDP_MASTER_KEY`` is a comma-separated list of ``key_id:base64(32 bytes)``, newest first
(``settings.CDP_MASTER_KEYS``). The newest wraps every new data key and ``rotate_keys`` re-wraps
old ones under it; the others stay usable for unwrapping until they are retired.
``CDP_BLIND_INDEX_KEY`` is base64 of at least 32 random bytes.

``cdp/settings.py`` calls the ``*_parse`` functions at start-up so a malformed key stops the
process before it serves anything; the accessors below parse again (once per distinct value)
for code and tests that read or override the settings later. So this module must stay importable
while settings load: standard library, ``cryptography`` and Django's exceptions only. Error
messages name the entry, never its secret.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

MASTER_KEY_BYTES = 32
BLIND_INDEX_KEY_MIN_BYTES = 32
KEY_ID_MAX_LENGTH = 64  # DataKey.master_key_id's column
_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


@dataclass(frozen=True)
class MasterKey:
    key_id: str
    aead: AESGCM = field(repr=False, compare=False)


@dataclass(frozen=True)
class MasterKeyRing:
    """The configured master keys, newest first."""

    keys: tuple[MasterKey, ...]

    @property
    def newest(self) -> MasterKey:
        return self.keys[0]

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(key.key_id for key in self.keys)

    def get(self, key_id: str) -> MasterKey | None:
        return next((key for key in self.keys if key.key_id == key_id), None)


def master_keys_parse(values: Sequence[str]) -> MasterKeyRing:
    if not values:
        raise ImproperlyConfigured("CDP_MASTER_KEY must hold at least one master key")
    keys: list[MasterKey] = []
    for position, value in enumerate(values, start=1):
        key_id, separator, encoded = value.strip().partition(":")
        if not separator or not _KEY_ID.fullmatch(key_id):
            raise ImproperlyConfigured(
                f"CDP_MASTER_KEY entry {position} must be 'key_id:base64(32 bytes)', the key id "
                "made of 1-64 letters, digits, '.', '_' or '-'"
            )
        if any(key.key_id == key_id for key in keys):
            raise ImproperlyConfigured(f"CDP_MASTER_KEY names master key {key_id!r} twice")
        raw = _base64_or_empty(encoded)
        if len(raw) != MASTER_KEY_BYTES:
            raise ImproperlyConfigured(
                f"CDP_MASTER_KEY: master key {key_id!r} must be the base64 encoding of exactly "
                f"{MASTER_KEY_BYTES} random bytes"
            )
        keys.append(MasterKey(key_id=key_id, aead=AESGCM(raw)))
    return MasterKeyRing(keys=tuple(keys))


def blind_index_key_parse(value: str) -> bytes:
    raw = _base64_or_empty(value)
    if len(raw) < BLIND_INDEX_KEY_MIN_BYTES:
        raise ImproperlyConfigured(
            f"CDP_BLIND_INDEX_KEY must be the base64 encoding of at least "
            f"{BLIND_INDEX_KEY_MIN_BYTES} random bytes"
        )
    return raw


def master_key_ring() -> MasterKeyRing:
    return _ring_for(tuple(settings.CDP_MASTER_KEYS))


def blind_index_root_key() -> bytes:
    return _blind_index_key_for(settings.CDP_BLIND_INDEX_KEY)


@lru_cache(maxsize=4)
def _ring_for(values: tuple[str, ...]) -> MasterKeyRing:
    return master_keys_parse(values)


@lru_cache(maxsize=4)
def _blind_index_key_for(value: str) -> bytes:
    return blind_index_key_parse(value)


def _base64_or_empty(encoded: str) -> bytes:
    try:
        return base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return b""
