"""One recompute per segment at a time: a second full recompute skips, an incremental run keeps
its changes queued for the locked segment."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import connection, transaction

from cdp.ingestion.services import SourceWithKey
from segments.metrics import metrics_refresh
from segments.models import RecomputeRun
from segments.services.locks import incremental_lock_release, incremental_lock_try
from segments.services.locks import segment_lock_try as lock_try
from segments.services.recompute import segment_recompute
from tests.identity.resolving import T0, ingest, message, pid, resolve
from tests.segments.computing import changed, members, refresh, segment_make

pytestmark = pytest.mark.django_db
RULE = {"computed": "order_count", "op": "gte", "value": 1}


@contextmanager
def held_elsewhere(segment_id: int) -> Iterator[None]:
    """The segment's lock held by another connection (another worker) while the block runs."""
    taken, release = threading.Event(), threading.Event()
    outcome: list[bool] = []

    def hold() -> None:
        try:
            with transaction.atomic():
                outcome.append(lock_try(segment_id))
                taken.set()
                release.wait(30)
        finally:
            connection.close()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert taken.wait(30) and outcome == [True]
        yield
    finally:
        release.set()
        thread.join(30)


def _buyer(source: SourceWithKey, user: str, at: int = 0) -> int:
    ingest(
        source.source.pk,
        message("track", at=at, userId=user, event="Order Completed", properties={"revenue": 1}),
    )
    resolve()
    profile = pid("user_id", user)
    metrics_refresh(profile_ids=[profile])
    return profile


def test_a_second_recompute_of_a_segment_skips_while_one_runs(
    transactional_db: None, source: SourceWithKey
) -> None:
    ann = _buyer(source, "ann")
    segment = segment_make(RULE)

    with held_elsewhere(segment.pk):
        outcome = segment_recompute(segment_id=segment.pk, now=T0)
        other = segment_make(RULE)  # another segment is not held up
        assert segment_recompute(segment_id=other.pk, now=T0).entered == 1

    assert outcome.skipped and outcome.run_id is None
    assert members(segment.pk) == set()
    assert not RecomputeRun.objects.filter(segment_id=segment.pk).exists()
    assert segment_recompute(segment_id=segment.pk, now=T0).entered == 1
    assert members(segment.pk) == {ann}


def test_incremental_keeps_the_changes_of_a_locked_segment_queued(
    transactional_db: None, source: SourceWithKey
) -> None:
    # Committed transactions: a recompute's lock ends with its transaction, as in production.
    segment = segment_make(RULE)
    segment_recompute(segment_id=segment.pk, now=T0)
    ann = _buyer(source, "ann", at=5)
    assert changed() == {ann}

    with held_elsewhere(segment.pk):
        held = refresh(now=T0)

    assert held.deferred == [segment.pk] and held.consumed == 0
    assert changed() == {ann} and members(segment.pk) == set()
    after = refresh(now=T0)
    assert (after.deferred, after.consumed, after.entered) == ([], 1, 1)
    assert changed() == set() and members(segment.pk) == {ann}


def test_one_incremental_runner_at_a_time(db: None) -> None:
    assert incremental_lock_try()
    try:
        elsewhere: list[bool] = []

        def other_worker() -> None:
            try:
                elsewhere.append(incremental_lock_try())
            finally:
                connection.close()

        thread = threading.Thread(target=other_worker)
        thread.start()
        thread.join(30)
        assert elsewhere == [False]
    finally:
        incremental_lock_release()
