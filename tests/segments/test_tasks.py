"""The recompute tasks run eagerly in this process (tests/segments/test_live_worker.py runs a
real worker): what they return, their JobRun, the enqueue after a resolver batch."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection

from cdp.ingestion.services import SourceWithKey
from cdp.jobs.models import JobRun, JobStatus
from identity.tasks import resolve_pending_events
from segments.services.locks import incremental_lock_release, incremental_lock_try
from segments.tasks import (
    segment_recompute_enqueue,
    segments_recompute_scheduled_run,
    segments_refresh_changed_run,
)
from tests.identity.resolving import ingest, message, pid
from tests.segments.computing import changed, members, segment_make

pytestmark = pytest.mark.django_db
SPENDER = {"computed": "total_spend", "op": "gt", "value": 50}


@pytest.fixture
def eager(eager_tasks: None) -> None:
    """Tasks run in this process (tests/conftest.py)."""


def _order(source: SourceWithKey, user: str) -> None:
    ingest(
        source.source.pk,
        message("track", userId=user, event="Order Completed", properties={"revenue": 80}),
    )


def test_a_resolver_batch_enqueues_the_segments_run(
    source: SourceWithKey, eager: None, settings: Any
) -> None:
    segment = segment_make(SPENDER)
    segment_recompute_enqueue(segment.pk)  # eager: computed at version 1, no members
    _order(source, "ann")

    resolve_pending_events.delay()  # the resolver's task, as beat or ingestion runs it

    ann = pid("user_id", "ann")
    assert members(segment.pk) == {ann} and changed() == set()
    runs = JobRun.objects.filter(task_name="segments.tasks.segments_refresh_changed_run")
    assert [(r.status, (r.result or {})["consumed"]) for r in runs] == [(JobStatus.SUCCEEDED, 1)]
    full = JobRun.objects.get(task_name="segments.tasks.segment_recompute_full")
    assert full.result == {
        "segment_id": segment.pk,
        "skipped": False,
        "entered": 0,
        "exited": 0,
        "member_count": 0,
        "error": "",
    }


def test_no_enqueue_when_turned_off(source: SourceWithKey, eager: None, settings: Any) -> None:
    settings.CDP_SEGMENTS = {**settings.CDP_SEGMENTS, "ENQUEUE_ON_RESOLVE": False}
    _order(source, "ann")
    resolve_pending_events.delay()
    assert changed() == {pid("user_id", "ann")}  # left for beat's periodic run
    assert not JobRun.objects.filter(task_name="segments.tasks.segments_refresh_changed_run")


def test_a_second_incremental_run_returns_while_one_works(source: SourceWithKey) -> None:
    _order(source, "ann")
    taken, release = threading.Event(), threading.Event()

    def runner_elsewhere() -> None:
        try:
            assert incremental_lock_try()
            taken.set()
            release.wait(30)
            incremental_lock_release()
        finally:
            connection.close()

    thread = threading.Thread(target=runner_elsewhere)
    thread.start()
    try:
        assert taken.wait(30)
        assert segments_refresh_changed_run.apply().get() == {"skipped": 1}
    finally:
        release.set()
        thread.join(30)
    assert "skipped" not in segments_refresh_changed_run.apply().get()


def test_the_scheduled_run_reports_what_it_did(source: SourceWithKey) -> None:
    segment = segment_make({"event": "Order Completed", "within": "7d"})
    result = segments_recompute_scheduled_run.apply().get()
    assert result == {"segments": 1, "skipped": 0, "failed": [], "entered": 0, "exited": 0}
    segment.refresh_from_db()
    assert segment.computed_version == 1
