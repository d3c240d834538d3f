"""Blind indexes: find a PII value by equality without storing or decrypting it.

``blind_index(kind, value)`` is HMAC-SHA256 of the UTF-8 value under a per-kind subkey,
``HKDF-SHA256(CDP_BLIND_INDEX_KEY, info="cdp/blind-index/v1/" + kind)``: the same value of the same
kind always maps to the same 32 bytes, and equal values of different kinds (an email that is also
a user id) never collide. Without the key the index cannot be recomputed from a guessed value.

``keyed_digest(purpose, data)`` is the same construction for change detection over PII (a CRM
record's ``content_digest``): HMAC-SHA256 under ``HKDF(CDP_BLIND_INDEX_KEY, info="cdp/" + purpose
+ "/v1")``, a subkey of its own, so a digest never equals a blind index and, unlike a plain hash,
cannot be confirmed against guessed values by someone holding only the database.

The derivation is part of the stored data: changing it, or ``CDP_BLIND_INDEX_KEY``, orphans
every stored index (they would all have to be recomputed from decrypted values). Callers pass
values already normalized (``identity``'s job): the index only matches byte-equal input.
"""

from __future__ import annotations

import hmac
import re
from functools import lru_cache

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cdp.crypto.config import blind_index_root_key

INDEX_BYTES = 32
# Lower case only: "Email" and "email" would otherwise be two silently disjoint indexes.
_KIND = re.compile(r"[a-z0-9][a-z0-9_.:-]{0,62}")


def blind_index(kind: str, normalized_value: str) -> bytes:
    return hmac.digest(_subkey(blind_index_root_key(), kind), normalized_value.encode(), "sha256")


def keyed_digest(purpose: str, data: bytes) -> str:
    """Hex HMAC-SHA256 of ``data`` under the ``purpose`` subkey (e.g. ``"record-digest"``)."""
    return hmac.new(_purpose_key(blind_index_root_key(), purpose), data, "sha256").hexdigest()


@lru_cache(maxsize=16)
def _purpose_key(root_key: bytes, purpose: str) -> bytes:
    if not _KIND.fullmatch(purpose):
        raise ValueError("Digest purpose must be 1-63 lower-case letters, digits or '_.:-'")
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=INDEX_BYTES,
        salt=None,
        info=b"cdp/" + purpose.encode("ascii") + b"/v1",
    )
    return hkdf.derive(root_key)


@lru_cache(maxsize=64)
def _subkey(root_key: bytes, kind: str) -> bytes:
    if not _KIND.fullmatch(kind):
        raise ValueError(
            "Blind index kind must be 1-63 lower-case letters, digits, '_', '.', ':' or '-'"
        )
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=INDEX_BYTES,
        salt=None,
        info=b"cdp/blind-index/v1/" + kind.encode("ascii"),
    )
    return hkdf.derive(root_key)
