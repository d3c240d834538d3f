"""``RecordedTask``: the base class of every cdp task.

Each run is recorded in ``JobRun`` (start, attempts, outcome); a failure keeps the exception
type and message, which by convention never carry PII (domain errors speak of ids, not values).
"""

from __future__ import annotations

from typing import Any

from celery import Task

from cdp.jobs.models import JobStatus
from cdp.jobs.services import job_run_finish, job_run_start


class RecordedTask(Task):
    abstract = True

    def before_start(self, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        job_run_start(task_name=self.name, task_id=task_id, args=list(args), kwargs=dict(kwargs))

    def on_success(
        self, retval: Any, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        job_run_finish(task_id=task_id, status=JobStatus.SUCCEEDED, result=_jsonable(retval))

    def on_retry(
        self,
        exc: BaseException,
        task_id: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        einfo: Any,
    ) -> None:
        job_run_finish(task_id=task_id, status=JobStatus.RETRYING, error=_describe(exc))

    def on_failure(
        self,
        exc: BaseException,
        task_id: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        einfo: Any,
    ) -> None:
        job_run_finish(task_id=task_id, status=JobStatus.FAILED, error=_describe(exc))


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str, list, dict)):
        return value
    return str(value)
