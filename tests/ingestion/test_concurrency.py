"""Concurrent requests with overlapping messageIds, through the autocommit path production
uses: each message is stored exactly once, and the requests never deadlock."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.db import connection

from cdp.ingestion.models import Event
from cdp.ingestion.services import IngestResult, events_ingest, source_create

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
