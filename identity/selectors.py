"""Reads of the identity graph: identifiers by value, their values, a profile's survivor.

Values are PII: nothing here logs one or puts one in an exception.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from cdp.crypto.blind_index import blind_index
from cdp.crypto.envelope import decrypt, decrypt_many
from identity.models import Identifier, Profile
from identity.normalization import normalize

logger = logging.getLogger(__name__)

# Merges point a profile at its survivor; a chain this long means the merging code forgot to
# re-point (or wrote a cycle), and the lookup stops instead of walking on.
MAX_MERGE_HOPS = 64


def identifier_find(*, kind: str, raw_value: object) -> Identifier | None:
    """The identifier a raw value (as sent, e.g. ``" Ada@Example.com "``) stands for; None when
    the value is not a usable identifier (invalid, blocked) or no node exists. One query at most;
    ValueError for an unknown kind."""
    value = normalize(kind, raw_value)
    if value is None:
        return None
    return Identifier.objects.filter(kind=kind, blind_index=blind_index(kind, value)).first()


def identifier_value(identifier: Identifier) -> str:
    """The plaintext value (``KeyDestroyed`` once the person was erased)."""
    return decrypt(identifier.value_ciphertext, aad=Identifier.value_aad(identifier.pk))


def identifier_values(identifiers: Iterable[Identifier]) -> dict[int, str]:
    """Values by identifier id, with one query for all the uncached data keys."""
    rows = list(identifiers)
    values = decrypt_many((row.value_ciphertext, Identifier.value_aad(row.pk)) for row in rows)
    return {row.pk: value for row, value in zip(rows, values, strict=True)}


_CHAIN = """
WITH RECURSIVE chain (id, merged_into_id, depth, path) AS (
    SELECT id, merged_into_id, 0, ARRAY[id] FROM identity_profile WHERE id = %(id)s
    UNION ALL
    SELECT p.id, p.merged_into_id, c.depth + 1, c.path || p.id
    FROM chain c JOIN identity_profile p ON p.id = c.merged_into_id
    WHERE c.depth < %(max_hops)s AND p.id <> ALL(c.path)
)
SELECT p.* FROM identity_profile p JOIN chain c ON c.id = p.id
ORDER BY c.depth DESC
LIMIT 1
"""


def profile_current(profile_id: int) -> Profile | None:
    """The profile ``profile_id`` is now part of: itself, or the survivor its ``merged_into``
    chain ends at. None for an unknown id, and for a chain that loops or runs past
    ``MAX_MERGE_HOPS`` (logged as an error: the graph needs repair). One query."""
    rows = list(Profile.objects.raw(_CHAIN, {"id": profile_id, "max_hops": MAX_MERGE_HOPS}))
    if not rows:
        return None
    (last,) = rows
    if last.merged_into_id is not None:
        logger.error(
            "merged_into chain of profile %s does not end within %s hops (stopped at profile %s)",
            profile_id,
            MAX_MERGE_HOPS,
            last.pk,
        )
        return None
    return last
