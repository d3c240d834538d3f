"""A real Celery worker process, on the real broker, working on the test database.

The broker is the one the settings name: ``CELERY_BROKER_URL`` when set (Redis in CI), otherwise
kombu's filesystem transport under ``CDP_BROKER_DIR``. Each run consumes its own queue, so it never
takes tasks meant for another worker on the same broker, and no other worker takes its tasks.
The worker is told to use the test database through ``DATABASE_URL``; the tests enqueue tasks as
production code does and wait, bounded, for their effect and their ``JobRun`` row.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.utils import timezone
from kombu import Exchange, Queue

from cdp.celery import app as celery_app
from cdp.ingestion.models import Event, IngestedMessage
from cdp.ingestion.services import SourceWithKey, events_ingest
from cdp.ingestion.tasks import ensure_event_partitions, prune_message_ids
from cdp.jobs.models import JobRun, JobStatus
from identity.selectors import identifier_find, profile_current
from identity.tasks import SCHEDULED_KEY
from tests.live.processes import process_env

pytestmark = [pytest.mark.live]

WAIT_SECONDS = 60.0
STOP_SECONDS = 30.0
T = TypeVar("T")


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    queue: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, check: Callable[[], T | None], what: str) -> T:
        """Poll ``check`` until it returns something, failing (with the worker's log) when the
        worker dies or ``WAIT_SECONDS`` pass."""
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            found = check()
            if found is not None:
                return found
            if self.process.poll() is not None:
                pytest.fail(
                    f"the worker exited ({self.process.returncode}) before {what}\n{self.log()}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} after {WAIT_SECONDS:.0f}s\n{self.log()}")
            time.sleep(0.1)

    def finished_run(self, task_id: str) -> JobRun:
        def finished() -> JobRun | None:
            return JobRun.objects.filter(
                task_id=task_id, status__in=[JobStatus.SUCCEEDED, JobStatus.FAILED]
            ).first()

        return self.wait_for(finished, f"finished JobRun for task {task_id}")


@pytest.fixture(scope="module")
def worker(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    run = uuid.uuid4().hex[:12]
    queue = f"cdp-live-{run}"  # no dots: the filesystem transport splits file names on them
    log_path = tmp_path_factory.mktemp("celery") / "worker.log"
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
        f"live-{run}@%h",
        "--loglevel=INFO",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=settings.BASE_DIR, env=process_env(), stdout=log, stderr=subprocess.STDOUT
        )
    started = Worker(process=process, queue=queue, log_path=log_path)
    try:
        yield started
    finally:
        _stop(process)
        _delete_queue(queue)
        print(f"--- celery worker log ({log_path}) ---\n{started.log()}")  # shown on failure


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Warm shutdown (finish the current task), then kill if it does not stop in time."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_SECONDS)


def _delete_queue(queue: str) -> None:
    """Remove the run's queue and its routing (Redis keeps bindings until told otherwise)."""
    with celery_app.connection_for_write() as conn:
        channel = conn.default_channel
        Queue(queue, Exchange(queue), routing_key=queue)(channel).declare()
        channel.queue_delete(queue)  # type: ignore[attr-defined]  # kombu's virtual Channel
        channel.exchange_delete(queue)  # type: ignore[attr-defined]


def _partition_names(months_ahead: int) -> list[str]:
    """Names of the monthly event partitions from this month to ``months_ahead`` ahead,
    computed the way ``cdp_ensure_event_partitions`` does (UTC months)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT to_char(date_trunc('month', now() AT TIME ZONE 'UTC')
                           + make_interval(months => i), '"ingestion_event_y"YYYY"m"MM')
            FROM generate_series(0, %s) AS i ORDER BY i
            """,
            [months_ahead],
        )
        return [row[0] for row in cursor.fetchall()]


def _attached_partitions() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT inhrelid::regclass::text FROM pg_inherits"
            " WHERE inhparent = 'ingestion_event'::regclass"
        )
        return {row[0] for row in cursor.fetchall()}


@pytest.fixture
def partitions_made_here(transactional_db: None) -> Iterator[list[str]]:
    """Partitions a test expects to be created; dropped afterwards, so the database is as
    before (the test database may be reused)."""
    made: list[str] = []
    yield made
    with connection.cursor() as cursor:
        for name in made:
            cursor.execute(f'DROP TABLE IF EXISTS "{name}"')


def test_ensure_event_partitions_creates_the_months_asked_for(
    worker: Worker, partitions_made_here: list[str]
) -> None:
    attached = _attached_partitions()
    configured = settings.CDP_INGEST["PARTITION_MONTHS_AHEAD"]
    # The first month past the configured horizon that has no partition yet.
    months_ahead = next(
        n
        for n in range(configured + 1, configured + 120)
        if _partition_names(n)[-1] not in attached
    )
    wanted = _partition_names(months_ahead)
    missing = [name for name in wanted if name not in attached]
    partitions_made_here.extend(missing)

    sent = ensure_event_partitions.apply_async(args=(months_ahead,), queue=worker.queue)
    run = worker.finished_run(sent.id)

    assert run.status == JobStatus.SUCCEEDED, f"{run.error}\n{worker.log()}"
    assert (run.task_name, run.args, run.result, run.attempts) == (
        "cdp.ingestion.tasks.ensure_event_partitions",
        [months_ahead],
        len(missing),
        1,
    )
    assert run.finished_at is not None and run.finished_at >= run.started_at
    assert set(wanted) <= _attached_partitions()


def _track(event: str, message_id: str) -> dict[str, str]:
    return {"type": "track", "event": event, "userId": "u1", "messageId": message_id}


def test_prune_message_ids_forgets_only_ids_past_the_window(
    worker: Worker, transactional_db: None, source: SourceWithKey
) -> None:
    now = timezone.now()
    past_window = now - settings.CDP_INGEST["DEDUPE_WINDOW"] - timedelta(hours=1)
    old = [_track("Old", f"old-{i}") for i in range(3)]
    fresh = [_track("New", f"new-{i}") for i in range(2)]
    source_id = source.source.id
    assert events_ingest(source_id=source_id, messages=old, received_at=past_window).accepted == 3
    assert events_ingest(source_id=source_id, messages=fresh, received_at=now).accepted == 2

    sent = prune_message_ids.apply_async(queue=worker.queue)
    run = worker.finished_run(sent.id)

    assert run.status == JobStatus.SUCCEEDED, f"{run.error}\n{worker.log()}"
    assert (run.result, run.attempts) == (3, 1)
    remembered = IngestedMessage.objects.filter(source_id=source_id)
    assert sorted(remembered.values_list("message_id", flat=True)) == ["new-0", "new-1"]
    assert Event.objects.filter(source_id=source_id).count() == 5  # events themselves stay


@pytest.fixture
def partition_function_missing(transactional_db: None) -> Iterator[None]:
    """The database as after a deployment that skipped the migration defining the function."""
    with connection.cursor() as cursor:
        cursor.execute(
            "ALTER FUNCTION cdp_ensure_event_partitions(integer)"
            " RENAME TO cdp_ensure_event_partitions_hidden"
        )
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(
                "ALTER FUNCTION cdp_ensure_event_partitions_hidden(integer)"
                " RENAME TO cdp_ensure_event_partitions"
            )


def test_a_failing_task_is_recorded_as_failed_with_its_error(
    worker: Worker, partition_function_missing: None
) -> None:
    sent = ensure_event_partitions.apply_async(args=(1,), queue=worker.queue)
    run = worker.finished_run(sent.id)

    assert run.status == JobStatus.FAILED, worker.log()
    assert run.error.startswith("ProgrammingError: function cdp_ensure_event_partitions(")
    assert "does not exist" in run.error
    # Not a transient error, so it is not retried.
    assert (run.attempts, run.result) == (1, None)
    assert run.finished_at is not None


def test_ingestion_enqueues_the_resolver_and_the_worker_resolves(
    worker: Worker, transactional_db: None, source: SourceWithKey, settings: Any
) -> None:
    """The path production takes: an ingest commit enqueues a resolver run on the broker; the
    worker process claims the events and builds the profile."""
    settings.CDP_RESOLVER = {
        **settings.CDP_RESOLVER,
        "ENQUEUE_ON_INGEST": True,
        "QUEUE": worker.queue,
    }
    cache.delete(SCHEDULED_KEY)
    messages = [
        {"type": "page", "anonymousId": "live-anon", "name": "Home", "messageId": "live-1"},
        {
            "type": "identify",
            "userId": "live-user",
            "anonymousId": "live-anon",
            "traits": {"plan": "pro", "email": "live@example.com"},
            "messageId": "live-2",
        },
    ]
    assert events_ingest(source_id=source.source.id, messages=messages).accepted == 2

    def resolved() -> int | None:
        identifier = identifier_find(kind="user_id", raw_value="live-user")
        return identifier.profile_id if identifier and identifier.profile_id else None

    profile_id = worker.wait_for(resolved, "the resolver run enqueued by ingestion")
    profile = profile_current(profile_id)
    assert profile is not None and profile.event_count == 2
    assert profile.traits["plan"]["value"] == "pro"
    anon = identifier_find(kind="anonymous_id", raw_value="live-anon")
    assert anon is not None and anon.profile_id == profile.pk
    # The profile is visible once the batch commits; the task finishes (and records its run)
    # after it, enqueueing what follows (segments).
    run = worker.wait_for(
        lambda: (
            JobRun.objects.filter(
                task_name="identity.tasks.resolve_pending_events", status=JobStatus.SUCCEEDED
            )
            .order_by("started_at")
            .first()
        ),
        "the resolver task's run recorded as succeeded",
    )
    assert isinstance(run.result, dict)
    assert run.result["events"] == 2
