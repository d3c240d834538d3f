"""Two workers creating overlapping identifier sets at once, each in its own transaction: one
row per value, both get that row, no error (no deadlock, no unique violation)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from django.db import connection

from cdp.crypto.models import DataKey
from identity.models import Identifier
from identity.selectors import identifier_value
from identity.services import identifiers_get_or_create

pytestmark = pytest.mark.django_db(transaction=True)

ROUNDS = 8
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_overlapping_batches_end_with_one_row_per_value() -> None:
    errors: list[BaseException] = []
    results: list[dict[tuple[str, str], int]] = []
    lock = threading.Lock()

    for round_ in range(ROUNDS):
        values = [("email", f"person{round_}.{n}@shop.io") for n in range(40)]
        values += [("user_id", f"r{round_}-u{n}") for n in range(40)]
        barrier = threading.Barrier(2)

        def work(items: list[tuple[str, str]], barrier: threading.Barrier = barrier) -> None:
            try:
                barrier.wait(timeout=10)
                found = identifiers_get_or_create(items=items, seen_at=T0)
                with lock:
                    results.append({pair: row.pk for pair, row in found.items()})
            except BaseException as exc:
                with lock:
                    errors.append(exc)
            finally:
                connection.close()  # each thread has its own connection

        # Overlapping halves, in opposite orders: the shape that deadlocks unsorted inserts.
        batches = [values[:60], values[20:][::-1]]
        threads = [threading.Thread(target=work, args=(batch,)) for batch in batches]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, errors

    assert len(results) == 2 * ROUNDS
    assert Identifier.objects.count() == ROUNDS * 80
    # Both workers got the same row for every value they shared.
    seen: dict[tuple[str, str], int] = {}
    for result in results:
        for pair, pk in result.items():
            assert seen.setdefault(pair, pk) == pk
    assert len(seen) == ROUNDS * 80
    # Every live data key belongs to exactly one identifier; the losers' keys are destroyed.
    live = set(DataKey.objects.filter(destroyed_at__isnull=True).values_list("pk", flat=True))
    assert live == set(Identifier.objects.values_list("data_key_id", flat=True))
    rows = Identifier.objects.filter(pk__in=[seen[("email", "person0.30@shop.io")]])
    assert [identifier_value(row) for row in rows] == ["person0.30@shop.io"]
