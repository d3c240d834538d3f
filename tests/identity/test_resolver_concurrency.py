"""Two resolver workers on overlapping data at once: no deadlock, no lost edge, one partition."""

from __future__ import annotations

import random
import threading

import pytest
from django.db import connection

from cdp.ingestion.services import source_create
from identity.models import Edge, Identifier
from identity.services.rebuild import identity_rebuild
from identity.services.resolution import ResolveResult, resolve_pending
from tests.identity.resolving import ingest, message, pid

pytestmark = pytest.mark.django_db(transaction=True)

PEOPLE = 40
EVENTS_PER_PERSON = 12


def _history(source_id: int, seed: int) -> None:
    """Each person: a user id, an email and three anonymous ids, linked by identify calls spread
    over the whole queue, so both workers' batches keep touching the same people."""
    rng = random.Random(seed)
    messages = []
    for person in range(PEOPLE):
        for n in range(EVENTS_PER_PERSON):
            anon = f"a{person}-{n % 3}"
            if n % 2:
                messages.append(message("track", at=n, anonymousId=anon))
            else:
                traits = {"email": f"p{person}@x.io"} if n % 4 == 0 else {}
                messages.append(
                    message("identify", at=n, userId=f"u{person}", anonymousId=anon, traits=traits)
                )
    rng.shuffle(messages)
    for start in range(0, len(messages), 100):
        ingest(source_id, *messages[start : start + 100])


@pytest.mark.parametrize("seed", [11, 12])
def test_two_workers_resolve_overlapping_batches_into_one_partition(seed: int) -> None:
    source = source_create(name="web").source.pk
    _history(source, seed)
    results: list[ResolveResult] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(2)

    def work() -> None:
        try:
            barrier.wait(timeout=10)
            result = resolve_pending(batch_size=25)
            with lock:
                results.append(result)
        except BaseException as exc:
            with lock:
                errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a worker hung (deadlock?)"
    assert not errors, errors

    assert sum(r.events for r in results) == PEOPLE * EVENTS_PER_PERSON
    assert all(r.events for r in results), "both workers took part"
    for person in range(PEOPLE):
        profile = pid("user_id", f"u{person}")
        assert pid("email", f"p{person}@x.io") == profile
        assert {pid("anonymous_id", f"a{person}-{n}") for n in range(3)} == {profile}
    assert len({pid("user_id", f"u{p}") for p in range(PEOPLE)}) == PEOPLE
    assert Identifier.objects.filter(profile__isnull=True).count() == 0
    # No edge lost: every identify stated its pairs once, and all were applied.
    identifies = PEOPLE * EVENTS_PER_PERSON // 2
    with_email = PEOPLE * EVENTS_PER_PERSON // 4
    assert Edge.objects.count() == identifies + with_email
    assert not Edge.objects.filter(applied=False).exists()
    # And the partition is the one a single replay of the evidence gives.
    assert identity_rebuild().identifiers_moved == 0
