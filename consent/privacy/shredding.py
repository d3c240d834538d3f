"""Erasure's database work: find the people, lock them, suppress, shred their keys, delete.

Everything is set-based over a whole batch of requests (one statement per step, whatever the
number of people) and runs in the caller's transaction. Values are read in memory only (the
``external``, ``user_id`` and ``anonymous_id`` identifiers, to find CRM records and unresolved
events) and never logged.

What references an erased identifier, profile, edge or CRM record is found from the models'
foreign keys (``references``): rows of any model pointing at one are deleted, except the few
listed in ``NULLED`` (another person's row that merely mentions it: a merge ledger entry naming
the other profile, an identifier that first belonged to an erased profile). A new app's table
(segment memberships, say) is covered by its foreign key without a change here; data kept
without a foreign key plugs in through ``ERASURE_HOOKS``.
"""

from __future__ import annotations

import base64
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from django.apps import apps
from django.db import models
from django.db.models import Q
from django.utils import timezone

from cdp.crypto.envelope import decrypt_many_unless_erased
from cdp.crypto.services import data_keys_destroy
from cdp.ingestion.models import Record, Source
from cdp.ops.bulk import bound_cursor, rows_insert
from consent.models import PrivacyRequest, PrivacyRequestKind, Suppression
from identity.kinds import IdentifierKind, split_external
from identity.merging import LockRace, components_lock
from identity.models import Edge, Identifier, Profile

# (model label, field name): references kept, set to NULL (another person's row).
NULLED = frozenset(
    {
        ("identity.MergeLedgerEntry", "other_profile"),
        ("identity.MergeLedgerEntry", "edge"),
        ("identity.Identifier", "first_profile"),
        ("identity.Edge", "record"),
    }
)
# The erased rows' own links among themselves: they are deleted by id at the end.
OWN = frozenset(
    {
        ("identity.Identifier", "profile"),
        ("identity.Profile", "merged_into"),
        ("identity.Edge", "a"),
        ("identity.Edge", "b"),
    }
)
# Kinds whose values find more rows: CRM records, and unresolved events by their id columns.
VALUE_KINDS = (IdentifierKind.EXTERNAL, IdentifierKind.USER_ID, IdentifierKind.ANONYMOUS_ID)
EVENT_CHUNK = 2000  # identifiers per DELETE of anchored events


@dataclass
class Scope:
    """The erased rows of one batch, and which request each identifier is erased for."""

    owner: dict[int, uuid.UUID] = field(default_factory=dict)  # identifier id -> request
    keys: dict[int, int] = field(default_factory=dict)  # identifier id -> data key id
    index: dict[int, tuple[str, bytes]] = field(default_factory=dict)  # id -> (kind, index)
    values: dict[int, tuple[str, str]] = field(default_factory=dict)  # VALUE_KINDS only
    profiles: dict[int, uuid.UUID] = field(default_factory=dict)  # incl. merged-away ones
    records: dict[int, uuid.UUID] = field(default_factory=dict)
    edges: list[int] = field(default_factory=list)
    counts: dict[uuid.UUID, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))


# A hook deletes what an app keeps about the scope without a foreign key; returns a row count.
ErasureHook = Callable[[Scope], int]
ERASURE_HOOKS: list[tuple[str, ErasureHook]] = []


def erasure_hook_register(name: str, hook: ErasureHook) -> None:
    """Run ``hook`` in every erasure, after the keys are destroyed and before the rows that
    reference the person are deleted (apps call this from ``AppConfig.ready``); its count goes
    into the request's summary under ``name``."""
    ERASURE_HOOKS.append((name, hook))


# --- scope ------------------------------------------------------------------------------------
_SUBJECTS = """
SELECT t.request_id, i.id
FROM jsonb_to_recordset(%s::jsonb) AS t(request_id uuid, kind varchar, blind_index text)
JOIN identity_identifier i ON i.kind = t.kind AND i.blind_index = decode(t.blind_index, 'base64')
"""
_MEMBERS = """
SELECT id, kind, blind_index, data_key_id, profile_id,
       CASE WHEN kind = ANY(%(value_kinds)s::varchar[]) THEN value_ciphertext END
FROM identity_identifier
WHERE profile_id = ANY(%(profiles)s::bigint[]) OR id = ANY(%(orphans)s::bigint[])
"""
_TREE = """
WITH RECURSIVE tree (id, root) AS (
    SELECT id, id FROM identity_profile WHERE id = ANY(%s::bigint[])
    UNION
    SELECT p.id, t.root FROM identity_profile p JOIN tree t ON p.merged_into_id = t.id
)
SELECT id, root FROM tree
"""


def scope_lock(requests: Sequence[PrivacyRequest]) -> Scope:
    """Lock the components of the requests' subjects (``identity.merging``'s protocol: raises
    ``LockRace`` when one moved meanwhile) and collect everything they consist of. A subject
    whose identifier is gone (erased already) adds nothing."""
    scope = Scope()
    subjects = _subjects(requests)
    if not subjects:
        return scope
    locked = components_lock(subjects)
    request_of_profile: dict[int, uuid.UUID] = {}
    orphans: dict[int, uuid.UUID] = {}
    for identifier_id, request_id in subjects.items():
        profile_id = locked.profile_of.get(identifier_id)
        if profile_id is None:
            orphans.setdefault(identifier_id, request_id)
        else:
            request_of_profile.setdefault(profile_id, request_id)
    with bound_cursor() as cursor:
        # The locked profiles cannot gain or lose identifiers now: read them all.
        cursor.execute(
            _MEMBERS,
            {
                "value_kinds": list(VALUE_KINDS),
                "profiles": sorted(request_of_profile),
                "orphans": sorted(orphans),
            },
        )
        members = cursor.fetchall()
        cursor.execute(_TREE, [sorted(request_of_profile)])
        scope.profiles = {pid: request_of_profile[root] for pid, root in cursor.fetchall()}
    sealed = []
    for identifier_id, kind, index, data_key_id, profile_id, ciphertext in members:
        owner = request_of_profile[profile_id] if profile_id is not None else orphans[identifier_id]
        scope.owner[identifier_id] = owner
        scope.keys[identifier_id] = data_key_id
        scope.index[identifier_id] = (kind, bytes(index))
        if ciphertext is not None:
            sealed.append((identifier_id, kind, ciphertext))
    opened = decrypt_many_unless_erased((c, Identifier.value_aad(i)) for i, _, c in sealed)
    for (identifier_id, kind, _), value in zip(sealed, opened, strict=True):
        if value is not None:
            scope.values[identifier_id] = (kind, value)
    _edges_and_records(scope)
    return scope


def _subjects(requests: Sequence[PrivacyRequest]) -> dict[int, uuid.UUID]:
    """Subject identifier id -> the oldest request naming it (whose summary gets the counts)."""
    document = orjson.dumps(
        [
            {
                "request_id": str(r.pk),
                "kind": r.subject_kind,
                "blind_index": base64.b64encode(bytes(r.subject_blind_index)).decode(),
            }
            for r in requests
        ]
    ).decode()
    order = {r.pk: (r.created_at, str(r.pk)) for r in requests}
    with bound_cursor() as cursor:
        cursor.execute(_SUBJECTS, [document])
        rows = sorted(cursor.fetchall(), key=lambda row: order[row[0]])
    subjects: dict[int, uuid.UUID] = {}
    for request_id, identifier_id in rows:
        subjects.setdefault(identifier_id, request_id)
    return subjects


_RECORDS = """
SELECT r.id, t.identifier_id
FROM jsonb_to_recordset(%s::jsonb) AS t(identifier_id bigint, source_id bigint, external_id text)
JOIN ingestion_record r ON r.source_id = t.source_id AND r.external_id = t.external_id
ORDER BY r.id
FOR UPDATE OF r SKIP LOCKED
"""
_RECORDS_COUNT = """
SELECT count(*)
FROM jsonb_to_recordset(%s::jsonb) AS t(identifier_id bigint, source_id bigint, external_id text)
JOIN ingestion_record r ON r.source_id = t.source_id AND r.external_id = t.external_id
"""
_EDGES = """
SELECT id, a_id, b_id, record_id, rule FROM identity_edge
WHERE a_id = ANY(%(ids)s::bigint[]) OR b_id = ANY(%(ids)s::bigint[])
"""


def _edges_and_records(scope: Scope) -> None:
    """The CRM records behind the scope's ``external`` identifiers (a record a resolver holds
    right now is skipped: that resolver waits for this transaction, then finds the identifier
    suppressed and drops it), and every edge touching one of the identifiers."""
    names = dict(Source.objects.values_list("name", "pk"))
    wanted = []
    for identifier_id, (kind, value) in scope.values.items():
        split = split_external(value) if kind == IdentifierKind.EXTERNAL else None
        if split is not None and split[0] in names:
            source_id, external_id = names[split[0]], split[1]
            wanted.append(
                {"identifier_id": identifier_id, "source_id": source_id, "external_id": external_id}
            )
    with bound_cursor() as cursor:
        if wanted:
            document = orjson.dumps(wanted).decode()
            cursor.execute(_RECORDS, [document])
            scope.records = {rid: scope.owner[iid] for rid, iid in cursor.fetchall()}
            cursor.execute(_RECORDS_COUNT, [document])
            (total,) = cursor.fetchone() or (0,)
            if total > len(scope.records):
                # Skipped: an upsert or a resolver batch holds one. Erasing without it would
                # leave the record (and its external id) behind: retry the batch instead.
                raise LockRace("a CRM record of the person is locked by another transaction")
        cursor.execute(_EDGES, {"ids": sorted(scope.owner)})
        for edge_id, a_id, b_id, _record_id, rule in cursor.fetchall():
            scope.edges.append(edge_id)
            owner = scope.owner.get(a_id) or scope.owner[b_id]
            scope.counts[owner]["edges"] += 1
            if rule == "probabilistic":
                # A person joined only by a probabilistic match is erased with the subject: the
                # summary says how many such links the erasure followed.
                scope.counts[owner]["probabilistic_edges"] += 1


# --- the work ---------------------------------------------------------------------------------
def scope_erase(scope: Scope, requests: Iterable[PrivacyRequest]) -> dict[uuid.UUID, Counter[str]]:
    """Suppress, shred, delete; returns the counts per request (zeros for a request whose
    person was erased already)."""
    if scope.owner:
        _suppress(scope)
        _shred(scope)
        _access_exports_shred(scope)
        _events_delete(scope)
        _observations_delete(scope)
        # Hooks see the rows that reference the person (memberships...) before they go.
        owners = set(scope.owner.values())
        for name, hook in ERASURE_HOOKS:
            count = hook(scope)
            if len(owners) == 1:  # a hook counts for the batch, not per request
                scope.counts[next(iter(owners))][name] += count
        _references_clear(scope)
        _own_rows_delete(scope)
    return {r.pk: _summary(scope.counts.get(r.pk, Counter())) for r in requests}


SUMMARY_FIELDS = (
    "identifiers",
    "profiles",
    "events",
    "records",
    "observations",
    "keys_destroyed",
    "exports",
)


def _summary(counts: Counter[str]) -> Counter[str]:
    summary = Counter({name: counts.get(name, 0) for name in (*SUMMARY_FIELDS, "edges")})
    summary.update({name: count for name, count in counts.items() if name not in summary})
    return summary


def _suppress(scope: Scope) -> None:
    ids = sorted(scope.index)
    rows_insert(
        Suppression._meta.db_table,
        {
            "kind": ("varchar[]", [scope.index[i][0] for i in ids]),
            "blind_index": ("bytea[]", [scope.index[i][1] for i in ids]),
            "request_id": ("uuid[]", [str(scope.owner[i]) for i in ids]),
            "created_at": ("timestamptz[]", [timezone.now()] * len(ids)),
            "lifted_by": ("varchar[]", [""] * len(ids)),
            "lift_reason": ("text[]", [""] * len(ids)),
        },
        on_conflict="ON CONFLICT (kind, blind_index) WHERE lifted_at IS NULL DO NOTHING",
    )
    for owner in scope.owner.values():
        scope.counts[owner]["identifiers"] += 1


def _access_exports_shred(scope: Scope) -> None:
    """Access exports of the person (by profile, or by a subject that is one of their
    identifiers) hold their PII under the export's own key: destroy it too, and clear them."""
    subjects = Q()
    for kind, index in scope.index.values():
        subjects |= Q(subject_kind=kind, subject_blind_index=index)
    exports = list(
        PrivacyRequest.objects.filter(
            Q(profile_id__in=list(scope.profiles)) | subjects,
            kind=PrivacyRequestKind.ACCESS,
            export_data_key__isnull=False,
        )
        .select_for_update()
        .order_by("pk")
        .values_list("pk", "export_data_key_id", "profile_id")
    )
    if not exports:
        return
    data_keys_destroy(ids=[key_id for _, key_id, _ in exports])
    PrivacyRequest.objects.filter(pk__in=[pk for pk, _, _ in exports]).update(
        export_ciphertext=None, export_expires_at=timezone.now()
    )
    fallback = next(iter(scope.owner.values()))
    for _, _, profile_id in exports:
        owner = scope.profiles.get(profile_id, fallback) if profile_id is not None else fallback
        scope.counts[owner]["exports"] += 1


def _shred(scope: Scope) -> None:
    """Destroy the identifiers' data keys: their values, and the PII of their events, records
    and trait observations, become unreadable wherever a copy of the ciphertext is."""
    by_key = {key: scope.owner[i] for i, key in scope.keys.items()}
    with bound_cursor() as cursor:
        cursor.execute(
            "SELECT id FROM crypto_datakey WHERE id = ANY(%s::bigint[]) AND destroyed_at IS NULL",
            [sorted(by_key)],
        )
        live = [row[0] for row in cursor.fetchall()]
    data_keys_destroy(ids=live)
    for key in live:
        scope.counts[by_key[key]]["keys_destroyed"] += 1


_ANCHORED = """
DELETE FROM ingestion_event WHERE identifier_id = ANY(%s::bigint[])
RETURNING id, identifier_id
"""
# Not resolved yet and naming one of the ids: the person's too. Rows a resolver holds are
# skipped (that batch finds the identifiers suppressed after this commits and drops them).
_UNRESOLVED = """
DELETE FROM ingestion_event e USING (
    SELECT id, received_at FROM ingestion_event
    WHERE identifier_id IS NULL
      AND (user_id = ANY(%(user_ids)s::varchar[])
           OR anonymous_id = ANY(%(anonymous_ids)s::varchar[]))
    FOR UPDATE SKIP LOCKED
) AS q
WHERE e.id = q.id AND e.received_at = q.received_at
RETURNING e.id, e.user_id, e.anonymous_id
"""


def _events_delete(scope: Scope) -> None:
    ids = sorted(scope.owner)
    deleted: list[int] = []
    with bound_cursor() as cursor:
        for start in range(0, len(ids), EVENT_CHUNK):
            cursor.execute(_ANCHORED, [ids[start : start + EVENT_CHUNK]])
            for event_id, identifier_id in cursor.fetchall():
                deleted.append(event_id)
                scope.counts[scope.owner[identifier_id]]["events"] += 1
        by_value = {
            (kind, value): scope.owner[i]
            for i, (kind, value) in scope.values.items()
            if kind != IdentifierKind.EXTERNAL
        }
        if by_value:
            cursor.execute(
                _UNRESOLVED,
                {
                    "user_ids": [v for k, v in by_value if k == IdentifierKind.USER_ID],
                    "anonymous_ids": [v for k, v in by_value if k == IdentifierKind.ANONYMOUS_ID],
                },
            )
            for event_id, user_id, anonymous_id in cursor.fetchall():
                deleted.append(event_id)
                owner = (
                    by_value.get((IdentifierKind.USER_ID, user_id))
                    or by_value[(IdentifierKind.ANONYMOUS_ID, anonymous_id)]
                )
                scope.counts[owner]["events"] += 1
        cursor.execute(
            "DELETE FROM identity_resolutionfailure WHERE "
            "(origin = 'event' AND origin_id = ANY(%s::bigint[])) "
            "OR (origin = 'record' AND origin_id = ANY(%s::bigint[]))",
            [deleted, sorted(scope.records)],
        )


def _observations_delete(scope: Scope) -> None:
    with bound_cursor() as cursor:
        cursor.execute(
            "DELETE FROM identity_traitobservation "
            "WHERE identifier_id = ANY(%s::bigint[]) OR record_id = ANY(%s::bigint[]) "
            "RETURNING identifier_id",
            [sorted(scope.owner), sorted(scope.records)],
        )
        for (identifier_id,) in cursor.fetchall():
            owner = scope.owner.get(identifier_id)
            if owner is not None:
                scope.counts[owner]["observations"] += 1


TARGETS: dict[type[models.Model], str] = {
    Identifier: "owner",
    Profile: "profiles",
    Edge: "edges",
    Record: "records",
}
EXPLICIT = frozenset(
    {("identity.TraitObservation", "identifier"), ("identity.TraitObservation", "record")}
)


def references() -> list[tuple[type[models.Model], Any, str]]:
    """Every foreign key of an installed model to an erased kind of row, with the ``Scope``
    attribute holding those rows' ids: what ``_references_clear`` deletes or nulls."""
    found = []
    for model in apps.get_models():
        if model._meta.proxy or not model._meta.managed:
            continue
        for f in model._meta.concrete_fields:
            target = f.related_model if f.is_relation else None
            if target not in TARGETS:
                continue
            label = (model._meta.label, f.name)
            if label not in OWN and label not in EXPLICIT:
                found.append((model, f, TARGETS[target]))
    return found


def _references_clear(scope: Scope) -> None:
    with bound_cursor() as cursor:
        for model, f, attribute in references():
            ids = sorted(getattr(scope, attribute))
            if not ids:
                continue
            table, column = model._meta.db_table, f.column
            if (model._meta.label, f.name) in NULLED:
                sql = f"UPDATE {table} SET {column} = NULL WHERE {column} = ANY(%s::bigint[])"  # noqa: S608 (names from the models)
            else:
                sql = f"DELETE FROM {table} WHERE {column} = ANY(%s::bigint[])"  # noqa: S608
            cursor.execute(sql, [ids])


def _own_rows_delete(scope: Scope) -> None:
    """The records, edges, profiles (merged-away ones too) and identifiers themselves."""
    with bound_cursor() as cursor:
        cursor.execute("DELETE FROM identity_edge WHERE id = ANY(%s::bigint[])", [scope.edges])
        cursor.execute(
            "DELETE FROM ingestion_record WHERE id = ANY(%s::bigint[])", [sorted(scope.records)]
        )
        cursor.execute(
            "DELETE FROM identity_identifier WHERE id = ANY(%s::bigint[])", [sorted(scope.owner)]
        )
        cursor.execute(
            "DELETE FROM identity_profile WHERE id = ANY(%s::bigint[])", [sorted(scope.profiles)]
        )
    for owner in scope.records.values():
        scope.counts[owner]["records"] += 1
    for owner in scope.profiles.values():
        scope.counts[owner]["profiles"] += 1
