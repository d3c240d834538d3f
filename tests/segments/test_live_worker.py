"""A real Celery worker on the real broker: ingest -> resolve -> segment membership, with no
service called by hand. Ingestion enqueues the resolver; the resolver's batch enqueues the
segments' incremental run (debounced); the worker runs both."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import cache

from cdp.ingestion.services import SourceWithKey, events_ingest
from cdp.jobs.models import JobRun, JobStatus
from identity.selectors import identifier_find
from identity.tasks import SCHEDULED_KEY
from segments.models import Membership, Segment
from segments.tasks import REFRESH_SCHEDULED_KEY, segment_recompute_full
from tests.live.processes import process_env
from tests.live.test_celery_worker import Worker, _delete_queue, _stop
from tests.segments.computing import segment_make

pytestmark = [pytest.mark.live]


@pytest.fixture(scope="module")
def segments_worker(
    django_db_setup: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    """A worker consuming its own queue, where the resolver and segments runs it enqueues
    itself go too (``CDP_RESOLVER_QUEUE`` / ``CDP_SEGMENTS_QUEUE``)."""
    run = uuid.uuid4().hex[:12]
    queue = f"cdp-live-seg-{run}"
    log_path = tmp_path_factory.mktemp("celery") / "worker.log"
    env = {**process_env(), "CDP_RESOLVER_QUEUE": queue, "CDP_SEGMENTS_QUEUE": queue}
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "cdp",
        "worker",
        "--pool=solo",
        "--concurrency=1",
        "-Q",
        queue,
        "-n",
        f"live-seg-{run}@%h",
        "--loglevel=INFO",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    started = Worker(process=process, queue=queue, log_path=log_path)
    try:
        yield started
    finally:
        _stop(process)
        _delete_queue(queue)
        print(f"--- celery worker log ({log_path}) ---\n{started.log()}")


def test_an_order_makes_its_buyer_a_member_through_the_worker(
    segments_worker: Worker, transactional_db: None, source: SourceWithKey, settings: Any
) -> None:
    worker = segments_worker
    segment = segment_make({"computed": "total_spend", "op": "gt", "value": 50}, min_size=1)
    sent = segment_recompute_full.apply_async(args=(segment.pk,), queue=worker.queue)
    assert worker.finished_run(sent.id).status == JobStatus.SUCCEEDED, worker.log()
    settings.CDP_RESOLVER = {
        **settings.CDP_RESOLVER,
        "ENQUEUE_ON_INGEST": True,
        "QUEUE": worker.queue,
    }
    cache.delete(SCHEDULED_KEY)
    cache.delete(REFRESH_SCHEDULED_KEY)

    order = {
        "type": "track",
        "userId": "live-buyer",
        "event": "Order Completed",
        "properties": {"revenue": 120},
        "messageId": "live-order-1",
    }
    assert events_ingest(source_id=source.source.id, messages=[order]).accepted == 1

    def member() -> int | None:
        return (
            Membership.objects.filter(segment_id=segment.pk, exited_at__isnull=True)
            .values_list("profile_id", flat=True)
            .first()
        )

    profile_id = worker.wait_for(member, "the buyer's membership")
    identifier = identifier_find(kind="user_id", raw_value="live-buyer")
    assert identifier is not None and identifier.profile_id == profile_id
    segment.refresh_from_db()
    assert (segment.member_count, segment.too_small) == (1, False)
    runs = JobRun.objects.filter(task_name="segments.tasks.segments_refresh_changed_run")
    assert runs.filter(status=JobStatus.SUCCEEDED).exists(), worker.log()
    assert Segment.objects.get(pk=segment.pk).computed_version == 1
