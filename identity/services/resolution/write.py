"""Writing a decided batch, set-based: profiles, identifiers, edges, ledger, anchors, counters,
observations and the touched profiles' derived fields."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from django.utils import timezone

from cdp.ops.bulk import rows_insert, rows_update
from consent.services import consent_entries_append
from identity.merging import (
    ledger_entry,
    ledger_write,
    profile_changes_mark,
)
from identity.models import Edge, Identifier, LedgerAction, MergeLedgerEntry
from identity.rules import SIZE_CONFLICT
from identity.services.observations import ObservationInput, observations_write
from identity.services.partition import derived_refresh, partition_apply
from identity.services.profiles import profiles_counters_add
from identity.services.resolution.decide import Decision
from identity.services.resolution.items import Item, Pair
from identity.services.resolution.result import ResolveResult
from identity.services.unmerge import profile_unmerge

RESOLVER_ACTOR = "resolver"
# identifier_id of an event that carries no usable identifier (every id blocked or invalid):
# resolved, attached to nobody. Identifier ids start at 1.
NO_IDENTIFIER = 0


def write_batch(
    items: Sequence[Item],
    decision: Decision,
    *,
    node_ids: Mapping[Pair, int],
    nodes: Mapping[Pair, Identifier],
    result: ResolveResult,
) -> None:
    applied = partition_apply(decision.components, decision.key_of)
    final, absorbed = applied.final, applied.absorbed
    edges = _edges_insert(decision)
    ledger_write(_ledger(decision, edges, final))
    _events_anchor(items, node_ids)
    _records_mark(items)
    consent_changed = _consent_append(items, node_ids, final)
    added = _counters_add(items, node_ids)
    traits_changed = observations_write(
        [
            ObservationInput(
                identifier=nodes[item.anchor],
                source_id=item.source_id,
                origin=item.origin,
                origin_id=item.origin_id,
                observed_at=item.observed_at,
                traits=item.traits,
            )
            for item in items
            if item.anchor is not None and (item.traits or item.origin == "record")
        ]
    )
    touched = set(final.values())
    # Observations change only on identifiers of this batch (a record's old ones hang on the
    # record's own external identifier), whose profiles are the locked ones.
    observed = {final[node.pk] for node in traits_changed if node.pk in final}
    # Profiles whose identifiers changed are recounted; the others only add this batch's events.
    membership_changed = derived_refresh(
        applied, traits_for=observed, consent_changed=consent_changed
    )
    profiles_counters_add(
        added=_by_profile(
            {i: delta for i, delta in added.items() if final[i] not in membership_changed},
            final,
        )
    )
    # Absorbed profiles too: their segment memberships end (segments reads merged_into).
    profile_changes_mark(touched | set(absorbed))
    result.edges = len(edges)
    result.conflicts = sum(not edge.applied for edge in edges)
    result.merges = len(decision.merges)
    result.profiles_created = len(applied.created)


def _consent_append(
    items: Sequence[Item], node_ids: Mapping[Pair, int], final: Mapping[int, int]
) -> set[int]:
    """Append the consent choices of the batch's events to their anchors' ledgers; returns the
    profiles whose entries changed."""
    rows = [
        (node_ids[item.anchor], choice)
        for item in items
        if item.anchor is not None
        for choice in item.consent
    ]
    entries = consent_entries_append(rows, actor=RESOLVER_ACTOR)
    return {final[entry.identifier_id] for entry in entries if entry.identifier_id in final}


def _edges_insert(decision: Decision) -> list[Edge]:
    edges = decision.edges
    ids = edges_insert(edges, returning="id")
    for edge, edge_id in zip(edges, ids, strict=True):
        edge.pk = edge_id
    return edges


def edges_insert(
    edges: Sequence[Edge], *, returning: str | None = None, on_conflict: str = ""
) -> list[Any]:
    """Insert edges in one statement (in order: their ids are the order they were decided in)."""
    now = timezone.now()
    return rows_insert(
        Edge._meta.db_table,
        {
            "a_id": ("bigint[]", [e.a_id for e in edges]),
            "b_id": ("bigint[]", [e.b_id for e in edges]),
            "rule": ("varchar[]", [e.rule for e in edges]),
            "source_id": ("bigint[]", [e.source_id for e in edges]),
            "event_id": ("bigint[]", [e.event_id for e in edges]),
            "record_id": ("bigint[]", [e.record_id for e in edges]),
            "score": ("float8[]", [e.score for e in edges]),
            "evidence": ("jsonb[]", [e.evidence for e in edges]),
            "created_at": ("timestamptz[]", [now] * len(edges)),
            "applied": ("boolean[]", [e.applied for e in edges]),
            "conflict": ("varchar[]", [e.conflict for e in edges]),
            "invalidated_by": ("varchar[]", [""] * len(edges)),
            "invalidation_reason": ("text[]", [""] * len(edges)),
        },
        returning=returning,
        on_conflict=on_conflict,
    )


def _ledger(
    decision: Decision, edges: Sequence[Edge], final: Mapping[int, int]
) -> list[MergeLedgerEntry]:
    entries = []
    for kept, absorbed, edge_index in decision.merges:
        edge = decision.edges[edge_index]
        entries.append(
            ledger_entry(
                action=LedgerAction.MERGE,
                profile_id=kept,
                other_profile_id=absorbed,
                edge_id=edge.pk,
                actor=RESOLVER_ACTOR,
                reason=f"{edge.rule} evidence linked identifiers {edge.a_id} and {edge.b_id}",
            )
        )
    entries.extend(ledger_refusals(edges, final, actor=RESOLVER_ACTOR))
    return entries


def ledger_refusals(
    edges: Sequence[Edge], final: Mapping[int, int], *, actor: str
) -> list[MergeLedgerEntry]:
    """A conflict or guardrail ledger entry for each edge a merge rule refused."""
    return [
        ledger_entry(
            action=LedgerAction.GUARDRAIL
            if edge.conflict == SIZE_CONFLICT
            else LedgerAction.CONFLICT,
            profile_id=final[edge.a_id],
            other_profile_id=final[edge.b_id],
            edge_id=edge.pk,
            actor=actor,
            reason=_conflict_reason(edge.conflict),
            details={"conflict": edge.conflict},
        )
        for edge in edges
        if not edge.applied
    ]


def _conflict_reason(conflict: str) -> str:
    if conflict == SIZE_CONFLICT:
        return "merge refused: the profile would exceed the maximum number of identifiers"
    kind = conflict.partition(":")[2]
    return f"merge refused: the profile would hold more {kind} identifiers than allowed"


def _events_anchor(items: Sequence[Item], node_ids: Mapping[Pair, int]) -> None:
    events = [item for item in items if item.origin == "event"]
    rows_update(
        "ingestion_event",
        keys={  # the partition key too, so each row is found in its partition's primary key
            "id": ("bigint[]", [item.origin_id for item in events]),
            "received_at": ("timestamptz[]", [item.received_at for item in events]),
        },
        columns={
            "identifier_id": (
                "bigint[]",
                [
                    NO_IDENTIFIER if item.anchor is None else node_ids[item.anchor]
                    for item in events
                ],
            )
        },
    )


def _records_mark(items: Sequence[Item]) -> None:
    records = [item for item in items if item.origin == "record"]
    rows_update(
        "ingestion_record",
        key=("bigint[]", [item.origin_id for item in records]),
        columns={"resolved_seq": ("bigint[]", [item.seq for item in records])},
    )


Counters = tuple[int, datetime, datetime]  # events added, earliest and latest event time


def _counters_add(items: Sequence[Item], node_ids: Mapping[Pair, int]) -> dict[int, Counters]:
    """Add each anchor identifier's events of the batch to its counters; returns them."""
    added: dict[int, Counters] = {}
    for item in items:
        if item.origin != "event" or item.anchor is None:
            continue
        identifier_id = node_ids[item.anchor]
        count, first, last = added.get(identifier_id, (0, item.observed_at, item.observed_at))
        added[identifier_id] = (
            count + 1,
            min(first, item.observed_at),
            max(last, item.observed_at),
        )
    ids = sorted(added)
    rows_update(
        "identity_identifier",
        key=("bigint[]", ids),
        columns={
            "event_count": ("bigint[]", [added[i][0] for i in ids]),
            "first_event_at": ("timestamptz[]", [added[i][1] for i in ids]),
            "last_event_at": ("timestamptz[]", [added[i][2] for i in ids]),
            "last_seen_at": ("timestamptz[]", [added[i][2] for i in ids]),
        },
        assign={
            "event_count": "r.event_count + t.event_count",
            "first_event_at": "LEAST(r.first_event_at, t.first_event_at)",
            "last_event_at": "GREATEST(r.last_event_at, t.last_event_at)",
            "last_seen_at": "GREATEST(r.last_seen_at, t.last_event_at)",
        },
    )
    return added


def _by_profile(added: Mapping[int, Counters], final: Mapping[int, int]) -> dict[int, Counters]:
    out: dict[int, Counters] = {}
    for identifier_id, (count, first, last) in added.items():
        profile_id = final[identifier_id]
        known = out.get(profile_id)
        out[profile_id] = (
            (count, first, last)
            if known is None
            else (known[0] + count, min(known[1], first), max(known[2], last))
        )
    return out


def evidence_withdraw(decision: Decision, result: ResolveResult) -> None:
    """A changed CRM record no longer states some of its earlier pairs (a new email): those
    edges are invalidated and, where they held a profile together, the profile is split as a
    steward's unmerge would split it (ledger actor ``resolver``)."""
    if not decision.withdrawn:
        return
    reason = "the CRM record changed: evidence of its earlier version is withdrawn"
    refused = [edge_id for edge_id, applied, _ in decision.withdrawn if not applied]
    Edge.objects.filter(pk__in=refused).update(
        invalidated_at=timezone.now(), invalidated_by=RESOLVER_ACTOR, invalidation_reason=reason
    )
    applied = [(edge_id, end) for edge_id, was_applied, end in decision.withdrawn if was_applied]
    profile_of = dict(
        Identifier.objects.filter(pk__in={end for _, end in applied}).values_list(
            "pk", "profile_id"
        )
    )
    by_profile: dict[int, list[int]] = {}
    for edge_id, end in applied:
        by_profile.setdefault(profile_of[end], []).append(edge_id)
    for profile_id, edge_ids in sorted(by_profile.items()):
        unmerged = profile_unmerge(
            profile_id=profile_id, edge_ids=edge_ids, actor=RESOLVER_ACTOR, reason=reason
        )
        result.profiles_created += len(unmerged.profiles)
    result.withdrawn += len(decision.withdrawn)
