"""The deterministic resolver: stored events and CRM records -> identifiers, evidence, profiles.

A batch is one transaction (``resolve_batch``):

1. **claim** the oldest unresolved events (``identifier_id IS NULL``) and pending records
   (``resolved_seq`` behind ``seq``) with ``FOR UPDATE SKIP LOCKED``: concurrent workers take
   disjoint batches, and a crash rolls the claim back, so nothing is lost or done twice;
2. **extract** identifiers (``identity.extraction``) and find or create their nodes;
3. **lock** their components (``identity.merging``: profiles in key order);
4. **decide**: link each evidence edge in order under the merge rules (``identity.components``);
   an edge a rule refuses is stored unapplied with its conflict;
5. **write** set-based: new profiles, identifiers moved, absorbed profiles pointed at their
   survivor, edges, ledger entries, each event anchored on its identifier, trait observations,
   counters, and the touched profiles' derived fields.

Values are PII: nothing here logs one or puts one in an exception (ids and kinds only).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from cdp.crypto.blind_index import blind_index
from cdp.ingestion.models import Record, Source
from cdp.ingestion.pii import events_pii, records_pii, restore_event_pii
from cdp.ops.bulk import bound_cursor, rows_insert, rows_update
from identity.components import Components, LinkOutcome
from identity.extraction import (
    ExtractedIdentifier,
    IdentifierRole,
    carries_identity_evidence,
    event_anchor,
    event_identifiers,
    record_identifiers,
)
from identity.kinds import IdentifierKind
from identity.merging import (
    LockedComponents,
    LockRace,
    components_lock,
    identifiers_assign,
    ledger_entry,
    ledger_write,
    profile_changes_mark,
    profiles_absorb,
    profiles_create,
)
from identity.models import Edge, EdgeRule, Identifier, LedgerAction, MergeLedgerEntry
from identity.normalization import IdentityConfig, identity_config
from identity.rules import SIZE_CONFLICT, merge_rules
from identity.services.identifiers import identifiers_get_or_create
from identity.services.observations import ObservationInput, observations_write
from identity.services.profiles import profiles_counters_add, profiles_refresh

logger = logging.getLogger(__name__)

RESOLVER_ACTOR = "resolver"
DEFAULT_BATCH_SIZE = 1000
MAX_LOCK_ATTEMPTS = 8
# identifier_id of an event that carries no usable identifier (every id blocked or invalid):
# resolved, attached to nobody. Identifier ids start at 1.
NO_IDENTIFIER = 0

Pair = tuple[str, str]  # (kind, normalized value)
ComponentKey = tuple[str, int]  # ("p", profile id) or ("i", identifier id)


@dataclass
class ResolveResult:
    events: int = 0
    records: int = 0
    edges: int = 0
    conflicts: int = 0
    merges: int = 0
    profiles_created: int = 0
    lock_retries: int = 0

    def add(self, other: ResolveResult) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def empty(self) -> bool:
        return self.events == 0 and self.records == 0


@dataclass
class _Item:
    """One claimed event or record, as the resolver sees it."""

    origin: str  # "event" | "record"
    origin_id: int
    source_id: int
    observed_at: datetime
    identifiers: list[ExtractedIdentifier]
    rule: EdgeRule | None  # None: no identity evidence (track, page...)
    anchor: Pair | None = None
    traits: dict[str, Any] = field(default_factory=dict)
    received_at: datetime | None = None  # events: the partition key
    seq: int | None = None  # records: the version resolved


def resolve_pending(
    *, batch_size: int = DEFAULT_BATCH_SIZE, max_batches: int | None = None
) -> ResolveResult:
    """Resolve batches until nothing is pending (or ``max_batches`` ran); returns the totals."""
    total = ResolveResult()
    done = 0
    while max_batches is None or done < max_batches:
        result = resolve_batch(batch_size=batch_size)
        total.add(result)
        done += 1
        if result.empty:
            break
    return total


def resolve_batch(*, batch_size: int = DEFAULT_BATCH_SIZE) -> ResolveResult:
    """Resolve up to ``batch_size`` events and as many records in one transaction."""
    for attempt in range(MAX_LOCK_ATTEMPTS):
        try:
            with transaction.atomic():
                result = _resolve_once(batch_size)
            result.lock_retries = attempt
            return result
        except LockRace:
            logger.info("resolver batch raced a concurrent merge; retrying (attempt %d)", attempt)
    raise LockRace(f"resolver batch lost the lock race {MAX_LOCK_ATTEMPTS} times")


def _resolve_once(batch_size: int) -> ResolveResult:
    config = identity_config()
    items = _claim_events(batch_size, config) + _claim_records(batch_size, config)
    result = ResolveResult(
        events=sum(item.origin == "event" for item in items),
        records=sum(item.origin == "record" for item in items),
    )
    if not items:
        return result
    pairs = {(i.kind, i.value) for item in items for i in item.identifiers}
    nodes = identifiers_get_or_create(items=sorted(pairs), seen_at=timezone.now(), touch_seen=False)
    node_ids = {pair: node.pk for pair, node in nodes.items()}
    locked = components_lock(node_ids.values())
    decision = _decide(items, node_ids=node_ids, kinds=_kinds(nodes), locked=locked)
    _write(items, decision, node_ids=node_ids, nodes=nodes, result=result)
    return result


# --- claim + extract --------------------------------------------------------------------------
_CLAIM_EVENTS = """
SELECT id, received_at, source_id, type, user_id, anonymous_id, previous_id,
       -- Only identify and alias calls are evidence: the others need their ids, not their
       -- payloads (which would cost a JSON parse and a decryption each for nothing).
       CASE WHEN type IN ('identify', 'alias') THEN traits END,
       CASE WHEN type IN ('identify', 'alias') THEN context END,
       timestamp, message_id,
       CASE WHEN type IN ('identify', 'alias') THEN pii END
FROM ingestion_event
WHERE identifier_id IS NULL
ORDER BY id
LIMIT %s
FOR UPDATE SKIP LOCKED
"""


def _claim_events(limit: int, config: IdentityConfig) -> list[_Item]:
    with bound_cursor() as cursor:
        cursor.execute(_CLAIM_EVENTS, [limit])
        rows = cursor.fetchall()
    # PII (email and phone traits among it) was encrypted at ingest: open it in memory only.
    opened = events_pii([(row[11], row[2], row[10]) for row in rows])
    items = [_event_item(row, pii, config) for row, pii in zip(rows, opened, strict=True)]
    _resolve_alias_targets(items)
    return items


def _event_item(row: Sequence[Any], pii: dict[str, Any], config: IdentityConfig) -> _Item:
    (event_id, received_at, source_id, call_type, user_id, anonymous_id, previous_id) = row[:7]
    traits, context = restore_event_pii(traits=_json(row[7]), context=_json(row[8]), pii=pii)
    timestamp = row[9]
    anchor = event_anchor(user_id=user_id, anonymous_id=anonymous_id, config=config)
    evidence = carries_identity_evidence(call_type)
    if evidence:
        found = event_identifiers(
            call_type=call_type,
            user_id=user_id,
            anonymous_id=anonymous_id,
            previous_id=previous_id,
            traits=traits,
            context=context,
            config=config,
        )
    else:
        found = [] if anchor is None else [ExtractedIdentifier(*anchor, IdentifierRole.ID, "")]
    return _Item(
        origin="event",
        origin_id=event_id,
        source_id=source_id,
        observed_at=timestamp,
        identifiers=found,
        rule=(EdgeRule.ALIAS if call_type == "alias" else EdgeRule.IDENTIFY) if evidence else None,
        anchor=anchor,
        traits=_identify_traits(traits, context) if call_type == "identify" else {},
        received_at=received_at,
    )


def _identify_traits(traits: Mapping[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
    """An identify call's traits: ``context.traits`` (RudderStack) under top-level ``traits``
    (Segment), without nulls."""
    merged: dict[str, Any] = {}
    context_traits = context.get("traits")
    if isinstance(context_traits, Mapping):
        merged.update(context_traits)
    merged.update(traits)
    return {name: value for name, value in merged.items() if value is not None}


def _resolve_alias_targets(items: list[_Item]) -> None:
    """``previousId`` names an earlier userId or anonymousId (the call does not say which): keep
    the kind whose node exists (in the graph or earlier in this batch), user id first, else
    the anonymous id."""
    aliases = [item for item in items if item.rule == EdgeRule.ALIAS]
    if not aliases:
        return
    candidates = {
        (i.kind, i.value) for item in aliases for i in item.identifiers if i.role == "alias"
    }
    existing = _existing_pairs(candidates)
    seen: set[Pair] = set()
    for item in items:
        if item.rule == EdgeRule.ALIAS:
            item.identifiers = _pick_alias(item.identifiers, known=existing | seen)
        seen.update((i.kind, i.value) for i in item.identifiers)


def _pick_alias(found: list[ExtractedIdentifier], *, known: set[Pair]) -> list[ExtractedIdentifier]:
    alias = [i for i in found if i.role == IdentifierRole.ALIAS]
    rest = [i for i in found if i.role != IdentifierRole.ALIAS]
    chosen = next(
        (i for i in alias if (i.kind, i.value) in known and i.kind == IdentifierKind.USER_ID),
        None,
    ) or next((i for i in alias if (i.kind, i.value) in known), None)
    if chosen is None:
        chosen = next((i for i in alias if i.kind == IdentifierKind.ANONYMOUS_ID), None)
    if chosen is None or (chosen.kind, chosen.value) in {(i.kind, i.value) for i in rest}:
        return rest
    return [*rest, chosen]


def _existing_pairs(pairs: Iterable[Pair]) -> set[Pair]:
    by_index = {(kind, blind_index(kind, value)): (kind, value) for kind, value in pairs}
    if not by_index:
        return set()
    kinds = [kind for kind, _ in by_index]
    indexes = [index for _, index in by_index]
    with bound_cursor() as cursor:
        cursor.execute(
            "SELECT i.kind, i.blind_index FROM identity_identifier i "
            "JOIN unnest(%s::varchar[], %s::bytea[]) AS t(kind, blind_index) "
            "ON i.kind = t.kind AND i.blind_index = t.blind_index",
            [kinds, indexes],
        )
        return {by_index[(kind, bytes(index))] for kind, index in cursor.fetchall()}


def _claim_records(limit: int, config: IdentityConfig) -> list[_Item]:
    pending = Q(resolved_seq__isnull=True) | ~Q(resolved_seq=F("seq"))
    records = list(
        Record.objects.filter(pending).order_by("seq").select_for_update(skip_locked=True)[:limit]
    )
    if not records:
        return []
    names = dict(
        Source.objects.filter(pk__in={r.source_id for r in records}).values_list("pk", "name")
    )
    opened = records_pii(records)
    return [
        _record_item(record, pii, names[record.source_id], config)
        for record, pii in zip(records, opened, strict=True)
    ]


def _record_item(
    record: Record, pii: dict[str, Any], source_name: str, config: IdentityConfig
) -> _Item:
    """A record's person fields (decrypted) and attributes are its traits; the fields that
    identify (external id, email, phone, custom id attributes) are its identifiers."""
    fields = {name: value for name, value in pii.items() if name != "attributes"}
    if record.country:
        fields["country"] = record.country
    attributes = {**(record.attributes or {}), **(pii.get("attributes") or {})}
    found = record_identifiers(
        source=source_name,
        external_id=record.external_id,
        email=fields.get("email"),
        phone=fields.get("phone"),
        attributes=attributes,
        config=config,
    )
    traits = {name: value for name, value in fields.items() if value not in ("", None)}
    traits.update({k: v for k, v in attributes.items() if v is not None})
    external = next((i for i in found if i.kind == IdentifierKind.EXTERNAL), None)
    # An external id that normalizes to nothing (blocked) anchors nothing: only evidence goes.
    external_pair = None if external is None else (external.kind, external.value)
    return _Item(
        origin="record",
        origin_id=record.pk,
        source_id=record.source_id,
        observed_at=record.updated_at,
        identifiers=found,
        rule=EdgeRule.CRM_RECORD,
        anchor=external_pair,
        traits=traits,
        seq=record.seq,
    )


def _json(value: Any) -> dict[str, Any]:
    if isinstance(value, (str, bytes)):
        value = orjson.loads(value)
    return value if isinstance(value, dict) else {}


def _kinds(nodes: Mapping[Pair, Identifier]) -> dict[int, str]:
    return {node.pk: node.kind for node in nodes.values()}


# --- decide -----------------------------------------------------------------------------------
@dataclass
class _Decision:
    edges: list[Edge]
    edge_items: list[int]  # index of the item each edge came from
    outcomes: list[LinkOutcome[ComponentKey]]
    merges: list[tuple[int, int, int]]  # (kept profile, absorbed profile, edge index)
    components: Components[ComponentKey]
    key_of: dict[int, ComponentKey]


def _decide(
    items: Sequence[_Item],
    *,
    node_ids: Mapping[Pair, int],
    kinds: Mapping[int, str],
    locked: LockedComponents,
) -> _Decision:
    components: Components[ComponentKey] = Components(merge_rules())
    key_of: dict[int, ComponentKey] = {}
    for profile_id, counts in sorted(locked.counts.items()):
        components.add(("p", profile_id), counts=counts, rank=(0, profile_id))
    for identifier_id, owner in sorted(locked.profile_of.items()):
        if owner is None:
            key_of[identifier_id] = ("i", identifier_id)
            components.add(
                key_of[identifier_id], counts={kinds[identifier_id]: 1}, rank=(1, identifier_id)
            )
        else:
            key_of[identifier_id] = ("p", owner)
    decision = _Decision([], [], [], [], components, key_of)
    stored = _stored_record_edges([item.origin_id for item in items if item.origin == "record"])
    for index, item in enumerate(items):
        if item.rule is not None:
            _link_item(decision, index, item, node_ids=node_ids, kinds=kinds, stored=stored)
    return decision


def _stored_record_edges(record_ids: Sequence[int]) -> set[tuple[int, int, int]]:
    if not record_ids:
        return set()
    rows = Edge.objects.filter(record_id__in=record_ids, rule=EdgeRule.CRM_RECORD).values_list(
        "a_id", "b_id", "record_id"
    )
    return {(a, b, record) for a, b, record in rows if record is not None}


def _link_item(
    decision: _Decision,
    index: int,
    item: _Item,
    *,
    node_ids: Mapping[Pair, int],
    kinds: Mapping[int, str],
    stored: set[tuple[int, int, int]],
) -> None:
    """Decide the edges of one evidence item under the merge rules, in order. A record
    re-resolved after a change states its pairs again: those already stored are left as they
    were decided (an invalidated one stays invalidated)."""
    for edge in item_edges(item, node_ids=node_ids, kinds=kinds):
        if edge.record_id is not None and (edge.a_id, edge.b_id, edge.record_id) in stored:
            continue
        outcome = decision.components.link(decision.key_of[edge.a_id], decision.key_of[edge.b_id])
        edge.applied, edge.conflict = outcome.applied, outcome.conflict
        decision.edges.append(edge)
        decision.edge_items.append(index)
        decision.outcomes.append(outcome)
        kept, absorbed = outcome.kept, outcome.absorbed
        if kept is not None and absorbed is not None and kept[0] == absorbed[0] == "p":
            # Two existing profiles joined (an identifier joining a profile is no merge).
            decision.merges.append((kept[1], absorbed[1], len(decision.edges) - 1))


def item_edges(
    item: _Item, *, node_ids: Mapping[Pair, int], kinds: Mapping[int, str]
) -> list[Edge]:
    """The evidence of one item: a star from its strongest identifier (kind priority, then
    the oldest node) to each other one; unsaved, applied until decided otherwise."""
    if item.rule is None:
        return []
    registry = identity_config().kinds
    ids = [(node_ids[(i.kind, i.value)], i.field) for i in item.identifiers]
    if len(ids) < 2:
        return []
    hub, hub_field = min(ids, key=lambda pair: (registry.rank(kinds[pair[0]]), pair[0]))
    edges = []
    for other, other_field in ids:
        if other == hub:
            continue
        a, b = sorted((hub, other))
        fields = {hub: hub_field, other: other_field}
        edges.append(
            Edge(
                a_id=a,
                b_id=b,
                rule=item.rule,
                source_id=item.source_id,
                event_id=item.origin_id if item.origin == "event" else None,
                record_id=item.origin_id if item.origin == "record" else None,
                evidence={"fields": [fields[a], fields[b]]},
            )
        )
    return edges


# --- write ------------------------------------------------------------------------------------
def _write(
    items: Sequence[_Item],
    decision: _Decision,
    *,
    node_ids: Mapping[Pair, int],
    nodes: Mapping[Pair, Identifier],
    result: ResolveResult,
) -> None:
    groups = decision.components.groups()
    # A root that is an identifier: the component holds no existing profile (profiles rank
    # first), so it gets a new one; new ids in the order of the components' oldest identifier.
    new_roots = sorted(
        (root for root in groups if root[0] == "i"),
        key=lambda root: min(key[1] for key in groups[root]),
    )
    new_ids = profiles_create(len(new_roots))
    profile_of_root: dict[ComponentKey, int] = dict(zip(new_roots, new_ids, strict=True))
    absorbed: dict[int, int] = {}
    assignments: dict[int, int] = {}
    for root, keys in groups.items():
        if root[0] == "p":
            profile_of_root[root] = root[1]
        survivor = profile_of_root[root]
        for key in keys:
            if key[0] == "p" and key[1] != survivor:
                absorbed[key[1]] = survivor
            elif key[0] == "i":
                assignments[key[1]] = survivor
    identifiers_assign(assignments)
    profiles_absorb(absorbed)
    final = {
        identifier_id: profile_of_root[decision.components.find(key)]
        for identifier_id, key in decision.key_of.items()
    }
    edges = _edges_insert(decision)
    ledger_write(_ledger(decision, edges, final))
    _events_anchor(items, node_ids)
    _records_mark(items)
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
    membership_changed = {final[i] for i in assignments} | set(absorbed.values())
    # Observations change only on identifiers of this batch (a record's old ones hang on the
    # record's own external identifier), whose profiles are the locked ones.
    observed = {final[node.pk] for node in traits_changed if node.pk in final}
    # Profiles whose identifiers changed are recounted; the others only add this batch's events.
    profiles_refresh(profile_ids=membership_changed, traits_for=membership_changed | observed)
    profiles_counters_add(
        added=_by_profile(
            {i: delta for i, delta in added.items() if final[i] not in membership_changed},
            final,
        )
    )
    profile_changes_mark(touched)
    result.edges = len(edges)
    result.conflicts = sum(not edge.applied for edge in edges)
    result.merges = len(decision.merges)
    result.profiles_created = len(new_ids)


def _edges_insert(decision: _Decision) -> list[Edge]:
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
    decision: _Decision, edges: Sequence[Edge], final: Mapping[int, int]
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
    for edge in edges:
        if edge.applied:
            continue
        guardrail = edge.conflict == SIZE_CONFLICT
        entries.append(
            ledger_entry(
                action=LedgerAction.GUARDRAIL if guardrail else LedgerAction.CONFLICT,
                profile_id=final[edge.a_id],
                other_profile_id=final[edge.b_id],
                edge_id=edge.pk,
                actor=RESOLVER_ACTOR,
                reason=_conflict_reason(edge.conflict),
                details={"conflict": edge.conflict},
            )
        )
    return entries


def _conflict_reason(conflict: str) -> str:
    if conflict == SIZE_CONFLICT:
        return "merge refused: the profile would exceed the maximum number of identifiers"
    kind = conflict.partition(":")[2]
    return f"merge refused: the profile would hold more {kind} identifiers than allowed"


def _events_anchor(items: Sequence[_Item], node_ids: Mapping[Pair, int]) -> None:
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


def _records_mark(items: Sequence[_Item]) -> None:
    records = [item for item in items if item.origin == "record"]
    rows_update(
        "ingestion_record",
        key=("bigint[]", [item.origin_id for item in records]),
        columns={"resolved_seq": ("bigint[]", [item.seq for item in records])},
    )


Counters = tuple[int, datetime, datetime]  # events added, earliest and latest event time


def _counters_add(items: Sequence[_Item], node_ids: Mapping[Pair, int]) -> dict[int, Counters]:
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


# --- rebuild: evidence from raw data ------------------------------------------------------------
_EVIDENCE_EVENTS = """
SELECT e.id, e.received_at, e.source_id, e.type, e.user_id, e.anonymous_id, e.previous_id,
       e.traits, e.context, e.timestamp, e.message_id, e.pii
FROM ingestion_event e
WHERE e.type IN ('identify', 'alias') AND e.identifier_id IS NOT NULL AND e.id > %s
  AND NOT EXISTS (SELECT 1 FROM identity_edge g WHERE g.event_id = e.id)
ORDER BY e.id
LIMIT %s
"""
EVIDENCE_CHUNK = 5000


def evidence_restore(
    *, progress: Callable[[str, int, int], object] | None = None, chunk: int = EVIDENCE_CHUNK
) -> int:
    """Store the evidence of resolved events and records that have none stored (the graph's
    edges lost, or data resolved before a rule existed); returns the edges added. Events and
    records with stored evidence are skipped, so decisions already made (an alias target, an
    invalidated edge) are never made again differently. Runs in the caller's transaction."""
    config = identity_config()
    added = 0
    after = 0
    scanned = 0
    while True:
        with bound_cursor() as cursor:
            cursor.execute(_EVIDENCE_EVENTS, [after, chunk])
            rows = cursor.fetchall()
        if not rows:
            break
        after = rows[-1][0]
        opened = events_pii([(row[11], row[2], row[10]) for row in rows])
        items = [_event_item(row, pii, config) for row, pii in zip(rows, opened, strict=True)]
        _resolve_alias_targets(items)
        added += _evidence_store(items)
        scanned += len(rows)
        if progress is not None:
            progress("evidence", scanned, scanned)
    pending = Q(resolved_seq__isnull=True) | ~Q(resolved_seq=F("seq"))
    records = Record.objects.exclude(pending).filter(
        ~Exists(Edge.objects.filter(record_id=OuterRef("pk")))
    )
    last = 0
    while batch := list(records.filter(pk__gt=last).order_by("pk")[:chunk]):
        last = batch[-1].pk
        names = dict(Source.objects.values_list("pk", "name"))
        opened = records_pii(batch)
        items = [
            _record_item(record, pii, names[record.source_id], config)
            for record, pii in zip(batch, opened, strict=True)
        ]
        added += _evidence_store(items)
    return added


def _evidence_store(items: Sequence[_Item]) -> int:
    pairs = sorted({(i.kind, i.value) for item in items for i in item.identifiers})
    nodes = identifiers_get_or_create(items=pairs, seen_at=timezone.now(), touch_seen=False)
    node_ids = {pair: node.pk for pair, node in nodes.items()}
    kinds = _kinds(nodes)
    edges = [edge for item in items for edge in item_edges(item, node_ids=node_ids, kinds=kinds)]
    # The graph step that follows decides applied/conflict for every edge.
    return len(edges_insert(edges, returning="id", on_conflict="ON CONFLICT DO NOTHING"))
