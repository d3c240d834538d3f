"""The built-in sections of an access export: what identity, ingestion and consent hold about
one person (one cluster), PII decrypted. Each section reads in a bounded number of queries, and
events in batches over a server-side cursor, so a person with millions of events is exported in
constant memory (besides the compressed zip itself).

A value whose data key was destroyed (an identifier erased earlier, through a partial erasure or
an unmerge followed by erasure of the other side) is exported as ``null``: it is no longer held.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import Any, TypeVar

import orjson
from django.db.models import Q

from cdp.crypto.envelope import decrypt_many_unless_erased
from cdp.ingestion.models import Event, Record, Source
from cdp.ingestion.pii import events_pii, records_pii, restore_event_pii
from consent.models import ConsentEntry
from consent.privacy.access.registry import ExportSection, ExportSubject, Row
from consent.selectors import profile_consent
from identity.kinds import IdentifierKind, split_external
from identity.models import Edge, Identifier, MergeLedgerEntry, Profile, TraitObservation
from identity.selectors import identifier_values_shown, profile_read

# Rows per query and per decryption round trip.
BATCH_SIZE = 2000
T = TypeVar("T")


def _batched(rows: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(rows)
    while batch := list(islice(iterator, size)):
        yield batch


def _source_names() -> dict[int, str]:
    return dict(Source.objects.values_list("pk", "name"))


# --- identity ---------------------------------------------------------------------------------
def profile_rows(subject: ExportSubject) -> Iterator[Row]:
    """The current profile first (``current: true``), then every profile merged into it."""
    profiles = Profile.objects.filter(pk__in=subject.profile_ids).order_by("pk")
    rows = sorted(profiles, key=lambda p: (p.pk != subject.profile_id, p.pk))
    for profile in rows:
        yield {
            "id": profile.pk,
            "current": profile.pk == subject.profile_id,
            "merged_into": profile.merged_into_id,
            "created_at": profile.created_at,
            "first_seen_at": profile.first_seen_at,
            "last_seen_at": profile.last_seen_at,
            "event_count": profile.event_count,
        }


def identifier_rows(subject: ExportSubject) -> Iterator[Row]:
    for batch in _batched(_ids(subject), BATCH_SIZE):
        identifiers = list(Identifier.objects.filter(pk__in=batch).order_by("pk"))
        values = identifier_values_shown(identifiers, reveal_pii=True)
        for row in identifiers:
            yield {
                "id": row.pk,
                "kind": row.kind,
                "value": values[row.pk],
                "profile_id": row.profile_id,
                "first_profile_id": row.first_profile_id,
                "first_seen_at": row.first_seen_at,
                "last_seen_at": row.last_seen_at,
                "event_count": row.event_count,
                "first_event_at": row.first_event_at,
                "last_event_at": row.last_event_at,
            }


def trait_rows(subject: ExportSubject) -> Iterator[Row]:
    """The profile's traits as survivorship chose them, each with its provenance."""
    if subject.profile_id is None:
        return
    read = profile_read(subject.profile_id, reveal_pii=True)
    if read is None:
        return
    for name, trait in sorted(read.traits.items()):
        yield {"name": name, **trait}


def trait_observation_rows(subject: ExportSubject) -> Iterator[Row]:
    """Everything identify calls and CRM records said about a trait, per identifier."""
    names = _source_names()
    observations = (
        TraitObservation.objects.filter(identifier_id__in=_ids(subject))
        .order_by("pk")
        .iterator(chunk_size=BATCH_SIZE)
    )
    for batch in _batched(observations, BATCH_SIZE):
        sealed = [
            (row.pk, row.value_ciphertext) for row in batch if row.value_ciphertext is not None
        ]
        opened = decrypt_many_unless_erased(
            (ciphertext, TraitObservation.value_aad(pk)) for pk, ciphertext in sealed
        )
        values = {
            pk: None if plaintext is None else orjson.loads(plaintext)
            for (pk, _), plaintext in zip(sealed, opened, strict=True)
        }
        for row in batch:
            pii = row.value_ciphertext is not None
            yield {
                "id": row.pk,
                "identifier_id": row.identifier_id,
                "name": row.name,
                "value": values[row.pk] if pii else row.value,
                "pii": pii,
                "source": names.get(row.source_id),
                "count": row.count,
                "first_observed_at": row.first_observed_at,
                "observed_at": row.observed_at,
                "first_event_id": row.first_event_id,
                "event_id": row.event_id,
                "record_id": row.record_id,
            }


def _edge_fields(edge: Edge, names: dict[int, str]) -> dict[str, Any]:
    return {
        "id": edge.pk,
        "a_identifier_id": edge.a_id,
        "b_identifier_id": edge.b_id,
        "rule": edge.rule,
        "source": names.get(edge.source_id) if edge.source_id else None,
        "event_id": edge.event_id,
        "record_id": edge.record_id,
        "score": edge.score,
        "evidence": edge.evidence,
        "created_at": edge.created_at,
        "applied": edge.applied,
        "conflict": edge.conflict,
        "invalidated_at": edge.invalidated_at,
        "invalidated_by": edge.invalidated_by,
        "invalidation_reason": edge.invalidation_reason,
    }


def edge_rows(subject: ExportSubject) -> Iterator[Row]:
    """Every piece of evidence touching the cluster's identifiers, valid or invalidated (an
    unmerge), applied or blocked by a merge rule. The other end may be someone else's
    identifier: it is named by id only."""
    names = _source_names()
    ids = _ids(subject)
    edges = (
        Edge.objects.filter(Q(a_id__in=ids) | Q(b_id__in=ids))
        .order_by("pk")
        .iterator(chunk_size=BATCH_SIZE)
    )
    for edge in edges:
        yield _edge_fields(edge, names)


def merge_ledger_rows(subject: ExportSubject) -> Iterator[Row]:
    """Merges, unmerges, blocked merges and guardrail hits naming any of the cluster's
    profiles, oldest first, each with the edge (rule, evidence) it was about."""
    names = _source_names()
    profile_ids = list(subject.profile_ids)
    entries = (
        MergeLedgerEntry.objects.filter(
            Q(profile_id__in=profile_ids) | Q(other_profile_id__in=profile_ids)
        )
        .select_related("edge")
        .order_by("pk")
    )
    for entry in entries:
        yield {
            "id": entry.pk,
            "action": entry.action,
            "profile_id": entry.profile_id,
            "other_profile_id": entry.other_profile_id,
            "actor": entry.actor,
            "reason": entry.reason,
            "details": entry.details,
            "created_at": entry.created_at,
            "edge": None if entry.edge is None else _edge_fields(entry.edge, names),
        }


# --- ingestion ---------------------------------------------------------------------------------
EVENT_FIELDS = (
    "pk",
    "source_id",
    "message_id",
    "type",
    "event_name",
    "user_id",
    "anonymous_id",
    "previous_id",
    "group_id",
    "timestamp",
    "original_timestamp",
    "sent_at",
    "received_at",
    "properties",
    "traits",
    "context",
    "integrations",
    "pii",
    "identifier_id",
)


def event_rows(subject: ExportSubject) -> Iterator[Row]:
    """Every event anchored on the cluster's identifiers, oldest id first, with the PII taken
    out at ingest put back where it was (``traits``, ``context.traits``, ``context.ip``)."""
    names = _source_names()
    ids = _ids(subject)
    if not ids:
        return
    rows = (
        Event.objects.filter(identifier_id__in=ids)
        .order_by("pk")
        .values_list(*EVENT_FIELDS, named=True)
        .iterator(chunk_size=BATCH_SIZE)
    )
    for batch in _batched(rows, BATCH_SIZE):
        opened = events_pii([(row.pii, row.source_id, row.message_id) for row in batch])
        for row, pii in zip(batch, opened, strict=True):
            traits, context = row.traits, row.context
            if pii:
                traits, context = restore_event_pii(traits=traits, context=context, pii=pii)
            yield {
                "id": row.pk,
                "type": row.type,
                "event": row.event_name,
                "source": names.get(row.source_id),
                "message_id": row.message_id,
                "user_id": row.user_id,
                "anonymous_id": row.anonymous_id,
                "previous_id": row.previous_id,
                "group_id": row.group_id,
                "timestamp": row.timestamp,
                "original_timestamp": row.original_timestamp,
                "sent_at": row.sent_at,
                "received_at": row.received_at,
                "properties": row.properties,
                "traits": traits,
                "context": context,
                "integrations": row.integrations,
                "identifier_id": row.identifier_id,
            }


def record_rows(subject: ExportSubject) -> Iterator[Row]:
    """The CRM records behind the cluster's ``external`` identifiers, person fields decrypted."""
    externals = list(
        Identifier.objects.filter(pk__in=_ids(subject), kind=IdentifierKind.EXTERNAL).order_by("pk")
    )
    values = identifier_values_shown(externals, reveal_pii=True)
    pairs = {split_external(value) for value in values.values() if value is not None}
    wanted = {pair for pair in pairs if pair is not None}
    if not wanted:
        return
    names = _source_names()
    sources = {name: pk for pk, name in names.items()}
    keys = {(sources[name], external_id) for name, external_id in wanted if name in sources}
    if not keys:
        return
    query = Q()
    for source_id, external_id in sorted(keys):
        query |= Q(source_id=source_id, external_id=external_id)
    records = list(Record.objects.filter(query).order_by("pk"))
    for record, pii in zip(records, records_pii(records), strict=True):
        fields = {name: value for name, value in pii.items() if name != "attributes"}
        if record.country:
            fields["country"] = record.country
        yield {
            "id": record.pk,
            "source": names[record.source_id],
            "external_id": record.external_id,
            "fields": fields,
            "attributes": {**(record.attributes or {}), **(pii.get("attributes") or {})},
            "created_at": record.created_at,
            "updated_at": record.updated_at,
        }


# --- consent -----------------------------------------------------------------------------------
def consent_state_rows(subject: ExportSubject) -> Iterator[Row]:
    """The current state of every configured purpose (``is_default``: no choice recorded)."""
    if subject.profile_id is None:
        return
    for state in profile_consent(subject.profile_id):
        yield {
            "purpose": state.purpose,
            "status": state.status,
            "allowed": state.allowed,
            "is_default": state.is_default,
            "given_at": state.given_at,
            "entry_id": state.entry_id,
            "opted_out_identifier_ids": state.opted_out_identifiers,
        }


def consent_ledger_rows(subject: ExportSubject) -> Iterator[Row]:
    """Every choice recorded through the cluster's identifiers, oldest first."""
    names = _source_names()
    entries = (
        ConsentEntry.objects.filter(identifier_id__in=_ids(subject))
        .order_by("pk")
        .iterator(chunk_size=BATCH_SIZE)
    )
    for entry in entries:
        yield {
            "id": entry.pk,
            "identifier_id": entry.identifier_id,
            "purpose": entry.purpose,
            "status": entry.status,
            "legal_basis": entry.legal_basis,
            "channel": entry.channel,
            "source": names.get(entry.source_id) if entry.source_id else None,
            "provider": entry.provider,
            "policy_version": entry.policy_version,
            "proof_ip_digest": entry.proof_ip_digest,
            "proof_user_agent": entry.proof_user_agent,
            "event_id": entry.event_id,
            "address_bound": entry.address_bound,
            "actor": entry.actor,
            "given_at": entry.given_at,
            "recorded_at": entry.recorded_at,
        }


def _ids(subject: ExportSubject) -> Sequence[int]:
    return list(subject.identifier_ids)


BUILTIN_SECTIONS = (
    ExportSection(
        "profiles",
        "The current profile (current: true) and every profile merged into it.",
        profile_rows,
    ),
    ExportSection(
        "identifiers",
        "Identifiers (kind, value, seen times, event counters) the profile holds.",
        identifier_rows,
    ),
    ExportSection(
        "traits",
        "The profile's traits with provenance (rule, source, origin, observation, time).",
        trait_rows,
    ),
    ExportSection(
        "trait_observations",
        "Every value identify calls and CRM records stated for a trait, per identifier.",
        trait_observation_rows,
    ),
    ExportSection(
        "events",
        "Every event anchored on the identifiers, PII restored, one JSON object per line.",
        event_rows,
        lines=True,
    ),
    ExportSection(
        "records",
        "CRM records behind the external identifiers, person fields decrypted.",
        record_rows,
    ),
    ExportSection(
        "consent_states",
        "The current consent state per purpose, derived from the ledger.",
        consent_state_rows,
    ),
    ExportSection(
        "consent_ledger",
        "Every consent choice recorded (status, legal basis, channel, proof, time).",
        consent_ledger_rows,
    ),
    ExportSection(
        "merge_history",
        "Merge ledger entries naming the profiles, with the edge each was about.",
        merge_ledger_rows,
    ),
    ExportSection(
        "evidence",
        "Every edge (evidence linking two identifiers) touching the identifiers.",
        edge_rows,
    ),
)
