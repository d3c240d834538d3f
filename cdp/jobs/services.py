"""Writes for job bookkeeping; called from the Celery task base class only."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from cdp.jobs.models import JobRun, JobStatus


@transaction.atomic
def job_run_start(
    *, task_name: str, task_id: str, args: list[Any], kwargs: dict[str, Any]
) -> JobRun:
    run, created = JobRun.objects.select_for_update().get_or_create(
        task_id=task_id,
        defaults={
            "task_name": task_name,
            "args": args,
            "kwargs": kwargs,
            "status": JobStatus.RUNNING,
            "started_at": timezone.now(),
        },
    )
    if not created:
        run.attempts += 1
        run.status = JobStatus.RUNNING
        run.save(update_fields=["attempts", "status"])
    return run


@transaction.atomic
def job_run_finish(*, task_id: str, status: JobStatus, result: Any = None, error: str = "") -> None:
    JobRun.objects.filter(task_id=task_id).update(
        status=status, result=result, error=error[:2000], finished_at=timezone.now()
    )
