"""Erasure measurements for ``benchmarks.privacy`` (listed in its ``MEASUREMENTS``; they run in
its child process, with Django set up on ``cdp_bench_privacy``).

- ``erasure_one_person``: two people with ``BENCH_ERASURE_EVENTS`` (10,000) events each (every
  one carrying PII in ``context.ip``, an identify with email and phone every 20th) and a CRM
  record, loaded through ``events_ingest`` / ``records_upsert`` and resolved. The first is
  erased by ``erasure_run`` (the whole worker run: claim, lock, suppress, shred, delete,
  complete, audit); the second by the baseline: the same rows deleted by id with plain
  ``DELETE`` statements (ids collected beforehand, not timed) and the keys wiped with one
  ``UPDATE``, in one transaction.
- ``erasure_batch``: ``2 x BENCH_ERASURE_PEOPLE`` (1,000) people with
  ``BENCH_ERASURE_PERSON_EVENTS`` (15) events and a CRM record each; the requests of the
  first half are created (``privacy_request_create``, timed apart) and erased in one
  ``erasures_run`` batch, the second half by the baseline.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from benchmarks import Result, env_int

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
INGEST_BATCH = 500


def _log(message: str) -> None:
    print(f"[privacy {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _timed(call: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = call()
    return time.perf_counter() - started, value


def _messages(user_id: str, events: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(events):
        body: dict[str, Any] = {
            "messageId": uuid.uuid4().hex,
            "userId": user_id,
            "anonymousId": f"{user_id}-anon",
            "timestamp": (T0 + timedelta(seconds=30 * i)).isoformat(),
            "context": {"ip": f"198.51.100.{i % 250}"},
        }
        if i % 20 == 0:
            body |= {
                "type": "identify",
                "traits": {"email": f"{user_id}@example.com", "phone": "+1 415 555 0100"},
            }
        else:
            body |= {"type": "track", "event": "Viewed", "properties": {"n": i}}
        out.append(body)
    return out


def _load(user_ids: Sequence[str], events: int) -> None:
    from cdp.ingestion.selectors import source_by_name
    from cdp.ingestion.services import events_ingest, records_upsert, source_create
    from identity.services.resolution import resolve_pending

    web = source_by_name("web") or source_create(name="web").source
    crm = source_by_name("crm") or source_create(name="crm").source
    messages = [m for user_id in user_ids for m in _messages(user_id, events)]
    for start in range(0, len(messages), INGEST_BATCH):
        events_ingest(
            source_id=web.pk, messages=messages[start : start + INGEST_BATCH], received_at=T0
        )
    records = [{"external_id": f"C-{u}", "email": f"{u}@example.com"} for u in user_ids]
    for start in range(0, len(records), 1000):
        records_upsert(source_id=crm.pk, records=records[start : start + 1000])
    resolve_pending(batch_size=1000)


def _requests(user_ids: Sequence[str]) -> list[uuid.UUID]:
    from consent.models import PrivacyRequestKind
    from consent.privacy.requests import privacy_request_create

    return [
        privacy_request_create(
            kind=PrivacyRequestKind.ERASURE, subject=("user_id", u), requested_by="bench"
        ).pk
        for u in user_ids
    ]


def _baseline_rows(user_ids: Sequence[str]) -> dict[str, list[int]]:
    """The ids the baseline deletes: what erasure deletes for these people."""
    from django.db.models import Q

    from cdp.ingestion.models import Event, Record
    from identity.models import Edge, Identifier, Profile, TraitObservation

    profiles = list(
        Identifier.objects.filter(kind="user_id", blind_index__in=_indexes(user_ids)).values_list(
            "profile_id", flat=True
        )
    )
    identifiers = list(Identifier.objects.filter(profile_id__in=profiles))
    ids = [i.pk for i in identifiers]
    return {
        "events": list(Event.objects.filter(identifier_id__in=ids).values_list("pk", flat=True)),
        "records": list(
            Record.objects.filter(external_id__in=[f"C-{u}" for u in user_ids]).values_list(
                "pk", flat=True
            )
        ),
        "observations": list(
            TraitObservation.objects.filter(identifier_id__in=ids).values_list("pk", flat=True)
        ),
        "edges": list(
            Edge.objects.filter(Q(a_id__in=ids) | Q(b_id__in=ids)).values_list("pk", flat=True)
        ),
        "identifiers": ids,
        "keys": [i.data_key_id for i in identifiers],
        "profiles": profiles
        + list(Profile.objects.filter(merged_into_id__in=profiles).values_list("pk", flat=True)),
    }


def _indexes(user_ids: Sequence[str]) -> list[bytes]:
    from cdp.crypto.blind_index import blind_index

    return [blind_index("user_id", u) for u in user_ids]


_BASELINE = [
    "DELETE FROM ingestion_event WHERE id = ANY(%(events)s::bigint[])",
    "DELETE FROM identity_traitobservation WHERE id = ANY(%(observations)s::bigint[])",
    "DELETE FROM consent_consentstate WHERE profile_id = ANY(%(profiles)s::bigint[])",
    "DELETE FROM consent_consententry WHERE identifier_id = ANY(%(identifiers)s::bigint[])",
    "DELETE FROM identity_mergeledgerentry WHERE profile_id = ANY(%(profiles)s::bigint[]) "
    "OR edge_id = ANY(%(edges)s::bigint[])",
    "DELETE FROM identity_profilechange WHERE profile_id = ANY(%(profiles)s::bigint[])",
    "DELETE FROM identity_edge WHERE id = ANY(%(edges)s::bigint[])",
    "DELETE FROM ingestion_record WHERE id = ANY(%(records)s::bigint[])",
    "DELETE FROM identity_identifier WHERE id = ANY(%(identifiers)s::bigint[])",
    "DELETE FROM identity_profile WHERE id = ANY(%(profiles)s::bigint[])",
    "UPDATE crypto_datakey SET wrapped_key = NULL, destroyed_at = now() "
    "WHERE id = ANY(%(keys)s::bigint[])",
]


def _baseline(rows: dict[str, list[int]]) -> None:
    from django.db import transaction

    from cdp.ops.bulk import bound_cursor

    with transaction.atomic(), bound_cursor() as cursor:
        for statement in _BASELINE:
            cursor.execute(statement, rows)


def erasure_one_person() -> list[Result]:
    from consent.models import PrivacyRequest
    from consent.privacy.erasure import erasure_run

    events = env_int("BENCH_ERASURE_EVENTS", 10_000)
    people = ["bench-erase-1", "bench-erase-2"]
    _log(f"loading 2 people with {events:,} events each")
    load_s, _ = _timed(lambda: _load(people, events))
    (request_id,) = _requests(people[:1])
    seconds, done = _timed(lambda: erasure_run(request_id))
    assert done
    summary = PrivacyRequest.objects.get(pk=request_id).summary
    assert summary["events"] == events, summary
    rows = _baseline_rows(people[1:])
    assert len(rows["events"]) == events, len(rows["events"])
    baseline_s, _ = _timed(lambda: _baseline(rows))
    note = f"{events:,} events, {summary['identifiers']} identifiers, 1 CRM record"
    return [
        Result(
            "erasure: one person (erasure_run)", seconds * 1000, "ms", "< 60 s", seconds < 60, note
        ),
        Result(
            "erasure: one person, baseline plain DELETEs by id", baseline_s * 1000, "ms", note=note
        ),
        Result("erasure: one person vs baseline", seconds / baseline_s, "x", note=note),
        Result("erasure: load + resolve of the 2 people", load_s, "s", note="setup, not erasure"),
    ]


def erasure_batch() -> list[Result]:
    from consent.models import PrivacyRequest
    from consent.privacy.erasure import erasures_run

    people = env_int("BENCH_ERASURE_PEOPLE", 1_000)
    events = env_int("BENCH_ERASURE_PERSON_EVENTS", 15)
    users = [f"bench-batch-{n}" for n in range(2 * people)]
    _log(f"loading {2 * people:,} people with {events} events each")
    load_s, _ = _timed(lambda: _load(users, events))
    create_s, ids = _timed(lambda: _requests(users[:people]))
    seconds, done = _timed(lambda: erasures_run(batch_size=people))
    assert len(done) == people, len(done)
    erased = sum(r.summary["events"] for r in PrivacyRequest.objects.filter(pk__in=ids))
    assert erased == people * events, erased
    rows = _baseline_rows(users[people:])
    baseline_s, _ = _timed(lambda: _baseline(rows))
    note = f"{people:,} people x {events} events + 1 CRM record each"
    return [
        Result(
            f"erasure: {people:,} people in one batch (erasures_run)",
            seconds * 1000,
            "ms",
            "< 300 s",
            seconds < 300,
            note,
        ),
        Result(
            f"erasure: {people:,} people, baseline plain DELETEs",
            baseline_s * 1000,
            "ms",
            note=note,
        ),
        Result("erasure: batch vs baseline", seconds / baseline_s, "x", note=note),
        Result(
            f"erasure: creating {people:,} requests (privacy_request_create)",
            create_s,
            "s",
            note="one call each: lookup, insert, audit",
        ),
        Result("erasure: load + resolve of the batch people", load_s, "s", note="setup"),
    ]


MEASUREMENTS: list[Callable[[], list[Result]]] = [erasure_one_person, erasure_batch]
