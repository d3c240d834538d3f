"""Concurrent requests with overlapping messageIds, through the autocommit path production
uses: each message is stored exactly once, the requests never deadlock, and ingest never waits on
the identifier row locks resolution holds."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from cdp.ingestion.models import Event
from cdp.ingestion.pii import events_pii
from cdp.ingestion.services import IngestResult, events_ingest, source_create
from identity.models import Identifier
from identity.services.identifiers import identifiers_get_or_create

pytestmark = pytest.mark.django_db(transaction=True)

ROUNDS = 10
THREADS = 4


def _messages(ids: list[str]) -> list[dict[str, str]]:
    return [{"type": "track", "userId": "u", "event": "E", "messageId": i} for i in ids]


def test_overlapping_batches_store_each_message_once() -> None:
    source_id = source_create(name="race").source.pk
    results: list[IngestResult] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    for round_ in range(ROUNDS):
        ids = [f"r{round_}-m{n}" for n in range(40)]
        barrier = threading.Barrier(THREADS)

        def send(order: list[str], barrier: threading.Barrier = barrier) -> None:
            try:
                barrier.wait(timeout=10)
                outcome = events_ingest(source_id=source_id, messages=_messages(order))
                with lock:
                    results.append(outcome)
            except BaseException as exc:
                with lock:
                    errors.append(exc)
            finally:
                connection.close()  # each thread has its own connection

        # The same ids in opposite orders and overlapping halves: the classic deadlock shape.
        orders = [ids, ids[::-1], ids[:30], ids[10:][::-1]]
        threads = [threading.Thread(target=send, args=(order,)) for order in orders]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, errors

    stored = Counter(Event.objects.filter(source_id=source_id).values_list("message_id", flat=True))
    assert len(stored) == ROUNDS * 40
    assert set(stored.values()) == {1}
    assert sum(r.accepted for r in results) == ROUNDS * 40
    sent_per_round = 40 + 40 + 30 + 30
    assert sum(r.accepted + r.duplicates for r in results) == ROUNDS * sent_per_round


def test_ingest_never_waits_on_identifier_row_locks() -> None:
    """A resolver transaction holds its identifiers' rows locked (merging.py); ingesting PII
    anchored on one of them must go through meanwhile, not queue behind it."""
    source_id = source_create(name="locks").source.pk
    earlier = timezone.now() - timedelta(days=1)
    [node] = identifiers_get_or_create(items=[("user_id", "u-locked")], seen_at=earlier).values()
    locked, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def resolver() -> None:
        try:
            with transaction.atomic():
                Identifier.objects.select_for_update().get(pk=node.pk)
                locked.set()
                release.wait(timeout=30)
        except BaseException as exc:
            errors.append(exc)
            locked.set()
        finally:
            connection.close()

    holder = threading.Thread(target=resolver)
    holder.start()
    try:
        assert locked.wait(timeout=10)
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '2s'")  # waiting on the row would fail here
        message = {"userId": "u-locked", "traits": {"email": "l@example.com"}, "messageId": "l1"}
        result = events_ingest(source_id=source_id, call_type="identify", messages=[message])
    finally:
        release.set()
        holder.join(timeout=30)
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")
    assert not errors, errors
    assert (result.accepted, result.pii_dropped) == (1, 0)
    stored = Event.objects.get(message_id="l1")
    assert events_pii([(stored.pii, source_id, "l1")]) == [{"traits.email": "l@example.com"}]
