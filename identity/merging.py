"""Everything that merges or splits profiles takes its locks here, in one fixed order.

The lock protocol (docs/identity.md, "Concurrency"):

1. A profile row is the mutex of its component: an identifier's ``profile_id`` changes only in a
   transaction that holds the lock of the profile it leaves and of the profile it joins.
   Identifiers without a profile (new nodes) are locked as rows of their own.
2. Locks are taken profiles first, then profile-less identifiers, each set in one statement in
   primary-key order. No transaction holding one of these locks waits for anything else but
   another of these locks, so two workers can wait for each other only in key order: they never
   deadlock.
3. After locking, the identifiers' profiles are read again. A concurrent merge or unmerge that
   committed between the first read and the lock shows up as a difference; the caller's whole
   transaction is then rolled back and retried (``LockRace``), because taking the extra locks
   now could break the order.

The writes here are set-based (one statement per step, whatever the number of profiles).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from django.utils import timezone

from cdp.audit.models import AuditAction
from cdp.audit.services import audit_record
from cdp.ops.bulk import bound_cursor, rows_update
from identity.models import LedgerAction, MergeLedgerEntry, ProfileChange

_AUDITED: dict[str, AuditAction] = {
    LedgerAction.MERGE: AuditAction.PROFILE_MERGED,
    LedgerAction.UNMERGE: AuditAction.PROFILE_UNMERGED,
}
AUDIT_MAX_IDS = 1000  # ids listed per audit entry; the count is always exact


class LockRace(Exception):
    """The identifiers moved between reading and locking; retry the transaction."""


@dataclass(frozen=True)
class LockedComponents:
    """What a transaction holds after ``components_lock``."""

    profile_of: Mapping[int, int | None]  # identifier id -> profile id (None: no profile yet)
    counts: Mapping[int, Counter[str]]  # profile id -> identifiers per kind


_PROFILE_OF = "SELECT id, profile_id FROM identity_identifier WHERE id = ANY(%s::bigint[])"


def components_lock(identifier_ids: Iterable[int]) -> LockedComponents:
    """Lock the components of these identifiers (their profiles, or the identifiers themselves
    when they have none) and return them with each profile's kind counts. Must run inside a
    transaction; raises ``LockRace`` when a concurrent change moved one of them meanwhile."""
    ids = sorted(set(identifier_ids))
    with bound_cursor() as cursor:
        cursor.execute(_PROFILE_OF, [ids])
        before = dict(cursor.fetchall())
        profiles = sorted({p for p in before.values() if p is not None})
        if profiles:
            cursor.execute(
                "SELECT id FROM identity_profile WHERE id = ANY(%s::bigint[]) "
                "AND merged_into_id IS NULL ORDER BY id FOR UPDATE",
                [profiles],
            )
            if len(cursor.fetchall()) != len(profiles):
                raise LockRace("a profile was merged away before it could be locked")
        orphans = sorted(i for i, p in before.items() if p is None)
        if orphans:
            cursor.execute(
                "SELECT id FROM identity_identifier WHERE id = ANY(%s::bigint[]) "
                "AND profile_id IS NULL ORDER BY id FOR UPDATE",
                [orphans],
            )
            if len(cursor.fetchall()) != len(orphans):
                raise LockRace("an identifier joined a profile before it could be locked")
        cursor.execute(_PROFILE_OF, [ids])
        if dict(cursor.fetchall()) != before:
            raise LockRace("an identifier changed profile before it could be locked")
        counts = profile_kind_counts(profiles)
    return LockedComponents(profile_of=before, counts=counts)


def profile_kind_counts(profile_ids: Sequence[int]) -> dict[int, Counter[str]]:
    counts: dict[int, Counter[str]] = {profile_id: Counter() for profile_id in profile_ids}
    if not profile_ids:
        return counts
    with bound_cursor() as cursor:
        cursor.execute(
            "SELECT profile_id, kind, count(*) FROM identity_identifier "
            "WHERE profile_id = ANY(%s::bigint[]) GROUP BY profile_id, kind",
            [list(profile_ids)],
        )
        for profile_id, kind, count in cursor.fetchall():
            counts[profile_id][kind] = count
    return counts


def profiles_create(count: int) -> list[int]:
    """``count`` new profile ids, ascending (one statement)."""
    if count == 0:
        return []
    with bound_cursor() as cursor:
        cursor.execute(
            "INSERT INTO identity_profile (created_at, updated_at, event_count, traits) "
            "SELECT now(), now(), 0, '{}'::jsonb FROM generate_series(1, %s) RETURNING id",
            [count],
        )
        return sorted(row[0] for row in cursor.fetchall())


def identifiers_assign(assignments: Mapping[int, int]) -> None:
    """Set identifiers' profiles (identifier id -> profile id); an identifier's first profile is
    remembered the first time it gets one."""
    ids = sorted(assignments)
    rows_update(
        "identity_identifier",
        key=("bigint[]", ids),
        columns={
            "profile_id": ("bigint[]", [assignments[i] for i in ids]),
            "first_profile_id": ("bigint[]", [assignments[i] for i in ids]),
        },
        assign={"first_profile_id": "COALESCE(r.first_profile_id, t.first_profile_id)"},
    )


def profiles_absorb(absorbed: Mapping[int, int]) -> None:
    """Merge each absorbed profile into its survivor (absorbed id -> survivor id): its
    identifiers move over and it, and every profile that pointed at it, now points at the
    survivor, so a lookup by any old id is one hop."""
    if not absorbed:
        return
    old = sorted(absorbed)
    new = [absorbed[profile_id] for profile_id in old]
    with bound_cursor() as cursor:
        cursor.execute(
            """
            UPDATE identity_identifier AS i SET profile_id = t.survivor
            FROM unnest(%s::bigint[], %s::bigint[]) AS t(absorbed, survivor)
            WHERE i.profile_id = t.absorbed
            """,
            [old, new],
        )
        cursor.execute(
            """
            UPDATE identity_profile AS p SET merged_into_id = t.survivor, updated_at = now()
            FROM unnest(%s::bigint[], %s::bigint[]) AS t(absorbed, survivor)
            WHERE p.id = t.absorbed OR p.merged_into_id = t.absorbed
            """,
            [old, new],
        )


def ledger_write(entries: Sequence[MergeLedgerEntry]) -> None:
    """Append merge ledger entries, and one audit entry per actor and action summarising them
    (ledger ids and profile ids: the ledger holds the details)."""
    if not entries:
        return
    MergeLedgerEntry.objects.bulk_create(entries, batch_size=1000)
    groups: dict[tuple[str, str], list[MergeLedgerEntry]] = {}
    for entry in entries:
        if entry.action in _AUDITED:
            groups.setdefault((entry.actor, entry.action), []).append(entry)
    for (actor, action), grouped in groups.items():
        audit_record(
            actor=actor,
            action=_AUDITED[action],
            target_type="profile" if len(grouped) == 1 else "profiles",
            target_id=grouped[0].profile_id if len(grouped) == 1 else "",
            details={
                "ledger_entries": [entry.pk for entry in grouped][:AUDIT_MAX_IDS],
                "profiles": sorted({entry.profile_id for entry in grouped})[:AUDIT_MAX_IDS],
                "other_profiles": sorted(
                    {entry.other_profile_id for entry in grouped if entry.other_profile_id}
                )[:AUDIT_MAX_IDS],
                "count": len(grouped),
            },
        )


def ledger_entry(
    *,
    action: LedgerAction,
    profile_id: int,
    actor: str,
    other_profile_id: int | None = None,
    edge_id: int | None = None,
    reason: str = "",
    details: dict[str, object] | None = None,
) -> MergeLedgerEntry:
    return MergeLedgerEntry(
        action=action,
        profile_id=profile_id,
        other_profile_id=other_profile_id,
        edge_id=edge_id,
        actor=actor,
        reason=reason,
        details=details or {},
    )


def profile_changes_prune(profile_ids: Iterable[int]) -> int:
    """Delete the change rows of these profiles that every consumer has seen: segments
    evaluated the latest change, and the matcher compared the profile since (or the profile was
    merged away: the matcher reads live profiles only). Returns how many."""
    ids = sorted(set(profile_ids))
    if not ids:
        return 0
    with bound_cursor() as cursor:
        cursor.execute(
            """
            DELETE FROM identity_profilechange c
            USING identity_profile p
            WHERE c.profile_id = ANY(%s::bigint[]) AND p.id = c.profile_id
              AND c.segments_seen_at = c.changed_at
              AND (p.merged_into_id IS NOT NULL OR EXISTS (
                  SELECT 1 FROM identity_matchprofile m
                  WHERE m.profile_id = c.profile_id AND m.matched_at >= c.changed_at))
            """,
            [ids],
        )
        return cursor.rowcount


def profile_changes_mark(profile_ids: Iterable[int]) -> None:
    """Tell downstream consumers (segments, the matcher) these profiles changed."""
    ids = sorted(set(profile_ids))
    if not ids:
        return
    now = timezone.now()
    with bound_cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {ProfileChange._meta.db_table} (profile_id, changed_at)
            SELECT unnest(%s::bigint[]), %s
            ON CONFLICT (profile_id) DO UPDATE SET changed_at = EXCLUDED.changed_at
            """,
            [ids, now],
        )
