"""Matcher tasks: thin and idempotent (what is pending is read from the database)."""

from __future__ import annotations

from celery import shared_task

from cdp.jobs.tasks import RecordedTask
from identity.matching.services import matching_full, matching_incremental
from identity.merging import LockRace


@shared_task(base=RecordedTask, autoretry_for=(LockRace,), retry_backoff=True, max_retries=8)
def match_changed_profiles() -> dict[str, int]:
    """Match the profiles changed since the matcher last saw them (beat, every few seconds)."""
    report = matching_incremental()
    return {"profiles": report.profiles, "pairs": report.pairs, "merged": report.merged}


@shared_task(base=RecordedTask, autoretry_for=(LockRace,), retry_backoff=True, max_retries=3)
def match_all_profiles() -> dict[str, int]:
    """A full pass (beat, nightly): also refits the ECM model on all candidate pairs."""
    report = matching_full()
    return {"profiles": report.profiles, "pairs": report.pairs, "merged": report.merged}
