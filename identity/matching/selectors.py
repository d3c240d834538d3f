"""Reads of the review queue: candidates by status and score, with both sides side by side."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from cdp.ingestion.pii import REDACTED
from cdp.ops.bulk import bound_cursor
from identity.matching.features import FIELDS
from identity.matching.inputs import inputs_read
from identity.models import Identifier, MatchCandidate
from identity.selectors import profile_current


def match_candidates(
    *, status: str | None = None, min_score: float | None = None, max_score: float | None = None
) -> QuerySet[MatchCandidate]:
    rows = MatchCandidate.objects.select_related("model")
    if status:
        rows = rows.filter(status=status)
    if min_score is not None:
        rows = rows.filter(score__gte=min_score)
    if max_score is not None:
        rows = rows.filter(score__lte=max_score)
    return rows


@dataclass(frozen=True)
class Side:
    identifier_id: int
    profile_id: int | None  # the live profile the anchor identifier is in now
    fields: dict[str, Any]  # field -> value (pii:read), REDACTED, or None when absent


def candidate_sides(
    candidates: Sequence[MatchCandidate], *, reveal_pii: bool
) -> dict[int, tuple[Side, Side]]:
    """Both sides of each candidate: one identifier query, one read of the profiles' fields
    (one key query) when values may be shown."""
    ends = {i for c in candidates for i in (c.a_id, c.b_id)}
    owner = dict(Identifier.objects.filter(pk__in=ends).values_list("pk", "profile_id"))
    current = {
        pk: (None if pk is None else getattr(profile_current(pk), "pk", None))
        for pk in set(owner.values())
    }
    live = {i: None if owner.get(i) is None else current.get(owner[i]) for i in ends}
    frame = inputs_read([p for p in set(live.values()) if p is not None]).frame
    out = {}
    for candidate in candidates:
        out[candidate.pk] = (
            _side(candidate.a_id, live[candidate.a_id], frame, reveal_pii),
            _side(candidate.b_id, live[candidate.b_id], frame, reveal_pii),
        )
    return out


def _side(identifier_id: int, profile_id: int | None, frame: Any, reveal: bool) -> Side:
    fields: dict[str, Any] = dict.fromkeys(FIELDS)
    if profile_id is not None and profile_id in frame.index:
        row = frame.loc[profile_id]
        for name in FIELDS:
            value = row[name]
            if value is not None:
                fields[name] = value if reveal else REDACTED
    return Side(identifier_id=identifier_id, profile_id=profile_id, fields=fields)


# --- incremental selection ------------------------------------------------------------------
def profiles_changed_unmatched(limit: int) -> list[int]:
    """Live profiles changed since the matcher last compared them (or never compared), oldest
    change first."""
    with bound_cursor() as cursor:
        cursor.execute(
            """
            SELECT c.profile_id FROM identity_profilechange c
            JOIN identity_profile p ON p.id = c.profile_id AND p.merged_into_id IS NULL
            LEFT JOIN identity_matchprofile m ON m.profile_id = c.profile_id
            WHERE m.profile_id IS NULL OR c.changed_at > m.matched_at
            ORDER BY c.changed_at, c.profile_id LIMIT %s
            """,
            [limit],
        )
        return [row[0] for row in cursor.fetchall()]


def profiles_sharing_block_keys(digests: Sequence[str], *, exclude: Sequence[int]) -> list[int]:
    """Live profiles sharing a blocking-key digest (through the GIN index)."""
    if not digests:
        return []
    with bound_cursor() as cursor:
        cursor.execute(
            """
            SELECT m.profile_id FROM identity_matchprofile m
            JOIN identity_profile p ON p.id = m.profile_id AND p.merged_into_id IS NULL
            WHERE m.block_keys && %s::varchar[] AND m.profile_id <> ALL(%s::bigint[])
            """,
            [list(digests), list(exclude)],
        )
        return [row[0] for row in cursor.fetchall()]
