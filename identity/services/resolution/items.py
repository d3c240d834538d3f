"""Claimed events and records as the resolver sees them: their identifiers, evidence and
traits, read from the raw rows (PII decrypted in memory only)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from django.db.models import F, Q

from cdp.crypto.blind_index import blind_index
from cdp.ingestion.models import Record, Source
from cdp.ingestion.pii import events_pii, records_pii, restore_event_pii
from cdp.ops.bulk import bound_cursor
from consent.extraction import context_choices
from consent.models import LegalBasis
from consent.purposes import purposes
from consent.services import ChoiceInput
from identity.extraction import (
    ExtractedIdentifier,
    IdentifierRole,
    carries_identity_evidence,
    event_anchor,
    event_identifiers,
    record_identifiers,
)
from identity.kinds import IdentifierKind
from identity.models import Edge, EdgeRule, Identifier
from identity.normalization import IdentityConfig, identity_config

Pair = tuple[str, str]  # (kind, normalized value)
Claim = tuple[str, int]  # ("event" | "record", id)


@dataclass
class Item:
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
    consent: list[ChoiceInput] = field(default_factory=list)  # events: choices in the context


_CLAIM_EVENTS = """
SELECT id, received_at, source_id, type, user_id, anonymous_id, previous_id,
       -- Only identify and alias calls are evidence: the others need their ids, not their
       -- payloads (which would cost a JSON parse and a decryption each for nothing).
       CASE WHEN type IN ('identify', 'alias') THEN traits END,
       CASE WHEN type IN ('identify', 'alias') THEN context END,
       timestamp, message_id,
       CASE WHEN type IN ('identify', 'alias') THEN pii END,
       -- Consent choices ride on any call (consent tools resend them with every event).
       CASE WHEN context ?| array['consent', 'consentManagement', 'gpc'] THEN jsonb_build_object(
           'consent', context -> 'consent', 'consentManagement', context -> 'consentManagement',
           'gpc', context -> 'gpc', 'userAgent', context -> 'userAgent') END
FROM ingestion_event
WHERE identifier_id IS NULL
ORDER BY id
LIMIT %s
FOR UPDATE SKIP LOCKED
"""


def claim_events(limit: int, config: IdentityConfig, *, claimed: list[Claim]) -> list[Item]:
    """The oldest unresolved events, locked; their ids are appended to ``claimed`` first, so a
    caller whose batch fails still knows which rows it held."""
    if limit <= 0:
        return []
    with bound_cursor() as cursor:
        cursor.execute(_CLAIM_EVENTS, [limit])
        rows = cursor.fetchall()
    claimed.extend(("event", row[0]) for row in rows)
    # PII (email and phone traits among it) was encrypted at ingest: open it in memory only.
    opened = events_pii([(row[11], row[2], row[10]) for row in rows])
    items = [event_item(row, pii, config) for row, pii in zip(rows, opened, strict=True)]
    resolve_alias_targets(items)
    return items


def event_item(row: Sequence[Any], pii: dict[str, Any], config: IdentityConfig) -> Item:
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
    consent_context = _json(row[12])
    return Item(
        origin="event",
        origin_id=event_id,
        source_id=source_id,
        observed_at=timestamp,
        identifiers=found,
        rule=(EdgeRule.ALIAS if call_type == "alias" else EdgeRule.IDENTIFY) if evidence else None,
        anchor=anchor,
        traits=_identify_traits(traits, context) if call_type == "identify" else {},
        received_at=received_at,
        consent=event_consent(
            consent_context,
            event_id=event_id,
            source_id=source_id,
            given_at=timestamp,
            ip=context.get("ip") if evidence else None,
        )
        if consent_context and anchor is not None
        else [],
    )


def event_consent(
    context: Mapping[str, Any],
    *,
    event_id: int,
    source_id: int,
    given_at: datetime,
    ip: object,
) -> list[ChoiceInput]:
    """The consent choices an event's context states (``consent.extraction``), as ledger input.
    The IP is known only for identify and alias calls, whose PII the resolver decrypts."""
    user_agent = context.get("userAgent")
    return [
        ChoiceInput(
            purpose=choice.purpose,
            status=choice.status,
            channel=choice.channel,
            legal_basis=choice.legal_basis
            if choice.legal_basis in LegalBasis.values
            else LegalBasis.CONSENT,
            source_id=source_id,
            provider=choice.provider,
            policy_version=choice.policy_version,
            ip=ip if isinstance(ip, str) and ip else None,
            user_agent=user_agent if isinstance(user_agent, str) else "",
            event_id=event_id,
            given_at=given_at,
        )
        for choice in context_choices(context, purposes())
    ]


def _identify_traits(traits: Mapping[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
    """An identify call's traits: ``context.traits`` (RudderStack) under top-level ``traits``
    (Segment), without nulls."""
    merged: dict[str, Any] = {}
    context_traits = context.get("traits")
    if isinstance(context_traits, Mapping):
        merged.update(context_traits)
    merged.update(traits)
    return {name: value for name, value in merged.items() if value is not None}


def resolve_alias_targets(items: list[Item]) -> None:
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


def claim_records(limit: int, config: IdentityConfig, *, claimed: list[Claim]) -> list[Item]:
    """The pending records, oldest change first, locked; ids appended to ``claimed`` first."""
    if limit <= 0:
        return []
    pending = Q(resolved_seq__isnull=True) | ~Q(resolved_seq=F("seq"))
    records = list(
        Record.objects.filter(pending).order_by("seq").select_for_update(skip_locked=True)[:limit]
    )
    claimed.extend(("record", record.pk) for record in records)
    if not records:
        return []
    names = dict(
        Source.objects.filter(pk__in={r.source_id for r in records}).values_list("pk", "name")
    )
    opened = records_pii(records)
    return [
        record_item(record, pii, names[record.source_id], config)
        for record, pii in zip(records, opened, strict=True)
    ]


def record_item(
    record: Record, pii: dict[str, Any], source_name: str, config: IdentityConfig
) -> Item:
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
    return Item(
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


def node_kinds(nodes: Mapping[Pair, Identifier]) -> dict[int, str]:
    return {node.pk: node.kind for node in nodes.values()}


def item_edges(item: Item, *, node_ids: Mapping[Pair, int], kinds: Mapping[int, str]) -> list[Edge]:
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
