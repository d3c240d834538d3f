"""Writes of the ingestion app: sources, events, CRM records.

Events and records are written set-based, one statement per request inside one transaction: the
input travels as one JSON parameter (events, ``jsonb_to_recordset``) or as arrays (records,
``unnest``), so there is no per-row ORM save and no per-row round trip.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import psycopg
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from cdp.api import keys
from cdp.api.errors import Conflict, InvalidInput, PayloadTooLarge
from cdp.ingestion.models import Source
from cdp.ingestion.pii import (
    PiiItem,
    SealedPii,
    base64_or_none,
    events_pii_seal,
    pii_keys,
    pii_seal,
    record_anchor,
    record_pii_aad,
)
from cdp.ingestion.records import RecordError, RecordRow, validate_record
from cdp.ingestion.selectors import write_key_cache
from cdp.ingestion.validation import (
    EventError,
    EventRow,
    Limits,
    batch_sent_at,
    validate_event,
)
from cdp.ops.bulk import bound_cursor
from identity.tasks import resolution_schedule

WRITE_KEY_KIND = "wk"
logger = logging.getLogger(__name__)


# --- sources ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SourceWithKey:
    source: Source
    write_key: str


@transaction.atomic
def source_create(*, name: str) -> SourceWithKey:
    """Create a source and return its write key (shown once; only a digest is stored)."""
    name_field = Source._meta.get_field("name")
    try:
        if not name:
            raise ValidationError("blank")
        name_field.run_validators(name)
    except ValidationError:
        raise InvalidInput(
            f"Invalid source name {name!r}: use letters, digits, - and _ "
            f"(at most {name_field.max_length}).",
            code="invalid_name",
            attr="name",
        ) from None
    secret = keys.new_secret(WRITE_KEY_KIND)
    try:
        with transaction.atomic():
            source = Source.objects.create(
                name=name, write_key_prefix=secret.display_prefix, write_key_digest=secret.digest
            )
    except IntegrityError:  # the name is taken (also by a concurrent create)
        raise Conflict(
            f"A source named {name!r} exists.", code="source_exists", attr="name"
        ) from None
    return SourceWithKey(source=source, write_key=secret.plaintext)


@transaction.atomic
def source_rotate_write_key(*, source: Source) -> SourceWithKey:
    secret = keys.new_secret(WRITE_KEY_KIND)
    source.write_key_prefix = secret.display_prefix
    source.write_key_digest = secret.digest
    source.save(update_fields=["write_key_prefix", "write_key_digest"])
    transaction.on_commit(write_key_cache.clear)  # so no request refills it with the old row
    return SourceWithKey(source=source, write_key=secret.plaintext)


@transaction.atomic
def source_disable(*, source: Source) -> Source:
    if source.disabled_at is None:
        source.disabled_at = timezone.now()
        source.save(update_fields=["disabled_at"])
    transaction.on_commit(write_key_cache.clear)  # so no request refills it with the old row
    return source


# --- events -----------------------------------------------------------------------------------
@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[EventError] = field(default_factory=list)
    # Events stored without their PII values: no usable anchor id to encrypt them under (see
    # cdp.ingestion.pii); the values are dropped, never stored in clear.
    pii_dropped: int = 0

    @property
    def received(self) -> int:
        return self.accepted + self.duplicates + len(self.rejected)


def ingest_limits() -> Limits:
    config = settings.CDP_INGEST
    return Limits(
        max_event_bytes=config["MAX_EVENT_BYTES"], max_future_skew=config["MAX_FUTURE_SKEW"]
    )


def events_ingest(
    *,
    source_id: int,
    messages: Sequence[Any],
    call_type: str | None = None,
    sent_at: Any = None,
    context: Any = None,
    received_at: datetime | None = None,
) -> IngestResult:
    """Validate, deduplicate and durably store messages; return what happened to each.

    ``call_type`` is fixed by single-call endpoints (``/v1/track``) and read from each message's
    ``type`` for batches. ``sent_at`` and ``context`` are the batch-level values, if any. PII
    traits are stored encrypted (``cdp.ingestion.pii``).
    """
    received_at = received_at or timezone.now()
    limits = ingest_limits()
    keys = pii_keys()
    batch_time = batch_sent_at(sent_at)
    batch_context = context if isinstance(context, dict) else None
    result = IngestResult()
    rows: dict[str, EventRow] = {}
    for index, raw in enumerate(messages):
        outcome = validate_event(
            raw,
            index=index,
            call_type=call_type,
            received_at=received_at,
            limits=limits,
            batch_sent_at=batch_time,
            batch_context=batch_context,
            pii_keys=keys,
        )
        if isinstance(outcome, EventError):
            result.rejected.append(outcome)
        elif outcome.message_id in rows:
            result.duplicates += 1  # the same messageId twice in one batch: keep the first
        else:
            rows[outcome.message_id] = outcome
    if rows:
        valid = list(rows.values())
        sealed = _seal_pii(source_id, valid, received_at)
        result.pii_dropped = sealed.dropped if sealed else 0
        stored = _insert_events(source_id, valid, received_at, sealed)
        result.accepted = stored
        result.duplicates += len(rows) - stored
        if stored:
            # Runs at once in autocommit, after the commit inside an outer transaction.
            transaction.on_commit(resolution_schedule)
    return result


_INSERT_EVENTS = """
WITH input AS (
    SELECT * FROM jsonb_to_recordset(%(rows)s::jsonb) AS t(
        message_id text, type text, event_name text, user_id text, anonymous_id text,
        previous_id text, group_id text, ts timestamptz, original_ts timestamptz,
        sent_at timestamptz, clamped boolean, properties jsonb, traits jsonb, context jsonb,
        integrations jsonb, pii text
    )
),
fresh AS (
    -- Sorted, so concurrent requests with overlapping ids lock them in one order.
    INSERT INTO ingestion_ingestedmessage AS seen (source_id, message_id, received_at)
    SELECT %(source_id)s, message_id, %(received_at)s FROM input ORDER BY message_id
    ON CONFLICT (source_id, message_id) DO UPDATE SET received_at = EXCLUDED.received_at
        WHERE seen.received_at < %(window_start)s
    RETURNING message_id
)
INSERT INTO ingestion_event (
    source_id, message_id, type, event_name, user_id, anonymous_id, previous_id, group_id,
    timestamp, original_timestamp, sent_at, received_at, clock_skew_clamped,
    properties, traits, context, integrations, pii
)
SELECT %(source_id)s, i.message_id, i.type, i.event_name, i.user_id, i.anonymous_id,
       i.previous_id, i.group_id, i.ts, i.original_ts, i.sent_at, %(received_at)s, i.clamped,
       i.properties, i.traits, i.context, i.integrations, decode(i.pii, 'base64')
FROM input i JOIN fresh USING (message_id)
ORDER BY i.ts
"""


def _seal_pii(source_id: int, rows: list[EventRow], received_at: datetime) -> SealedPii | None:
    """The rows' PII ciphertexts; None (no query, no work) when no row carries PII."""
    if all(row.pii is None for row in rows):
        return None
    sealed = events_pii_seal(source_id=source_id, rows=rows, seen_at=received_at)
    if sealed.dropped:
        # Counts only: which values were dropped is itself personal data.
        logger.warning(
            "Dropped the PII of %d event(s) of source %d: no usable userId or anonymousId, or "
            "its key is destroyed",
            sealed.dropped,
            source_id,
        )
    return sealed


def _rows_json(rows: list[EventRow], sealed: SealedPii | None) -> str:
    """The rows as one JSON array of objects, for ``jsonb_to_recordset``.

    One orjson call in C replaces fifteen parameter arrays: psycopg dumps text arrays in Python,
    escaping each element with a regex, which cost more than the rest of the request. The JSON
    parts were serialised by validation and are embedded as they are (``Fragment``); parsing the
    whole array as jsonb once is cheaper for PostgreSQL than ``json_to_recordset`` re-parsing each
    jsonb column's text. A PII ciphertext travels as base64 text, decoded in SQL.
    """
    ciphertexts = sealed.ciphertexts if sealed else [None] * len(rows)
    return orjson.dumps(
        [
            {
                "message_id": r.message_id,
                "type": r.type,
                "event_name": r.event_name,
                "user_id": r.user_id,
                "anonymous_id": r.anonymous_id,
                "previous_id": r.previous_id,
                "group_id": r.group_id,
                "ts": r.timestamp,
                "original_ts": r.original_timestamp,
                "sent_at": r.sent_at,
                "clamped": r.clock_skew_clamped,
                "properties": orjson.Fragment(r.properties),
                "traits": orjson.Fragment(r.traits),
                "context": orjson.Fragment(r.context),
                "integrations": orjson.Fragment(r.integrations),
                "pii": base64_or_none(pii),
            }
            for r, pii in zip(rows, ciphertexts, strict=True)
        ]
    ).decode()


def _insert_events(
    source_id: int, rows: list[EventRow], received_at: datetime, sealed: SealedPii | None
) -> int:
    """Store the rows whose (source, messageId) is new within the window; return how many."""
    params = {
        "source_id": source_id,
        "received_at": received_at,
        "window_start": received_at - settings.CDP_INGEST["DEDUPE_WINDOW"],
        "rows": _rows_json(rows, sealed),
    }
    if connection.in_atomic_block:
        with transaction.atomic(), bound_cursor() as cursor:  # a savepoint
            cursor.execute(_INSERT_EVENTS, params)
            return cursor.rowcount
    # One statement is its own transaction in autocommit mode, committed (and flushed) before
    # execute returns: no BEGIN and COMMIT round trips, which cost a single /v1/track a third.
    # Nor a health-check ping: a connection the server dropped is replaced and the statement
    # sent once more, which is safe because the dedupe table makes a repeat count as duplicates.
    for attempt in (1, 2):
        try:
            with bound_cursor(health_check=False) as cursor:
                cursor.execute(_INSERT_EVENTS, params)
                return cursor.rowcount
        except psycopg.OperationalError:
            if attempt == 2 or not connection.connection or not connection.connection.broken:
                raise
            connection.close()
    raise AssertionError("unreachable")


# --- CRM records ------------------------------------------------------------------------------
@dataclass
class RecordsResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    superseded: int = 0  # an earlier copy of an external_id repeated later in the same request
    rejected: list[RecordError] = field(default_factory=list)
    # Records stored without their PII: the external id is not a usable identifier (blocked)
    # or its key is destroyed (an erased person); the values are dropped, never kept in clear.
    pii_dropped: int = 0


def records_upsert(
    *,
    source_id: int,
    records: Sequence[Any],
    extra_as_attributes: bool = False,
) -> RecordsResult:
    """Upsert records by (source, external_id); identical content changes nothing. The person
    fields are stored encrypted under the record's ``external`` identifier (created here when
    new), see ``cdp.ingestion.pii``."""
    result = RecordsResult()
    rows: dict[str, RecordRow] = {}
    keys = pii_keys()
    for index, raw in enumerate(records):
        outcome = validate_record(
            raw, index=index, extra_as_attributes=extra_as_attributes, pii_keys=keys
        )
        if isinstance(outcome, RecordError):
            result.rejected.append(outcome)
        else:
            if outcome.external_id in rows:
                result.superseded += 1  # the last version of a repeated id wins
            rows[outcome.external_id] = outcome
    if rows:
        valid = list(rows.values())
        sealed = _seal_record_pii(source_id, valid)
        result.pii_dropped = sealed.dropped
        inserted, updated = _upsert_records(source_id, valid, sealed.ciphertexts)
        result.created, result.updated = inserted, updated
        result.unchanged = len(rows) - inserted - updated
        if inserted or updated:
            transaction.on_commit(resolution_schedule)
    return result


def _seal_record_pii(source_id: int, rows: list[RecordRow]) -> SealedPii:
    source_name = Source.objects.values_list("name", flat=True).get(pk=source_id)
    items = [
        PiiItem(
            plaintext=row.pii,
            anchor=None
            if row.pii is None
            else record_anchor(source_name=source_name, external_id=row.external_id),
            aad=record_pii_aad(source_id=source_id, external_id=row.external_id),
        )
        for row in rows
    ]
    sealed = pii_seal(items=items, seen_at=timezone.now())
    if sealed.dropped:
        logger.warning(
            "Dropped the PII of %d record(s) of source %d: external id not usable as an "
            "identifier, or its key is destroyed",
            sealed.dropped,
            source_id,
        )
    return sealed


_UPSERT_RECORDS = """
INSERT INTO ingestion_record AS r (
    source_id, external_id, country, pii, attributes, content_digest, seq, created_at, updated_at
)
SELECT %(source_id)s, t.external_id, t.country, t.pii, t.attributes::jsonb, t.content_digest,
       nextval('ingestion_record_seq'), now(), now()
FROM unnest(
    %(external_id)s::text[], %(country)s::text[], %(pii)s::bytea[], %(attributes)s::text[],
    %(content_digest)s::text[]
) AS t(external_id, country, pii, attributes, content_digest)
ORDER BY t.external_id
ON CONFLICT (source_id, external_id) DO UPDATE SET
    country = EXCLUDED.country, pii = EXCLUDED.pii, attributes = EXCLUDED.attributes,
    content_digest = EXCLUDED.content_digest, seq = EXCLUDED.seq,
    updated_at = EXCLUDED.updated_at
WHERE r.content_digest <> EXCLUDED.content_digest
RETURNING (xmax = 0) AS inserted
"""


def _upsert_records(
    source_id: int, rows: list[RecordRow], ciphertexts: list[bytes | None]
) -> tuple[int, int]:
    params: dict[str, Any] = {
        name: [getattr(r, name) for r in rows]
        for name in ("external_id", "country", "attributes", "content_digest")
    }
    params["pii"] = ciphertexts
    params["source_id"] = source_id
    with transaction.atomic(), bound_cursor() as cursor:
        cursor.execute(_UPSERT_RECORDS, params)
        flags = [row[0] for row in cursor.fetchall()]
    inserted = sum(flags)
    return inserted, len(flags) - inserted


def raise_if_all_rejected(result: IngestResult | RecordsResult, *, noun: str) -> None:
    """A request in which nothing was valid is a 400 with every item's error."""
    accepted_any = (
        result.accepted + result.duplicates
        if isinstance(result, IngestResult)
        else result.created + result.updated + result.unchanged + result.superseded
    )
    if not result.rejected or accepted_any:
        return
    errors = [error.as_dict() for error in result.rejected]
    if all(error.code == "event_too_large" for error in result.rejected):
        raise PayloadTooLarge(
            "Every event in the request is too large.", code="event_too_large", errors=errors
        )
    raise InvalidInput(
        f"Every {noun} in the request is invalid.",
        code=f"invalid_{noun}s",
        attr=None,
        errors=errors,
    )


# --- maintenance ------------------------------------------------------------------------------
def event_partitions_ensure(*, months_ahead: int | None = None) -> int:
    """Create monthly event partitions up to ``months_ahead`` months from now (idempotent)."""
    ahead = (
        months_ahead if months_ahead is not None else settings.CDP_INGEST["PARTITION_MONTHS_AHEAD"]
    )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT cdp_ensure_event_partitions(%s)", [ahead])
        return int(cursor.fetchone()[0])


PRUNE_BATCH = 50_000


def message_ids_prune(*, now: datetime | None = None) -> int:
    """Delete dedupe rows past the window, in bounded batches so no lock is held for long.

    Rows past the window no longer block a resend even before they are pruned (the insert checks
    the window), so pruning only bounds the table's size.
    """
    cutoff = (now or timezone.now()) - settings.CDP_INGEST["DEDUPE_WINDOW"]
    total = 0
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                """
                DELETE FROM ingestion_ingestedmessage WHERE (source_id, message_id) IN (
                    SELECT source_id, message_id FROM ingestion_ingestedmessage
                    WHERE received_at < %s LIMIT %s
                    -- A resend of an expired id holds its row: skip it rather than wait, so
                    -- pruning and ingest never wait on each other (and cannot deadlock).
                    FOR UPDATE SKIP LOCKED
                )
                """,
                [cutoff, PRUNE_BATCH],
            )
            deleted = cursor.rowcount
        total += deleted
        if deleted < PRUNE_BATCH:
            return total
