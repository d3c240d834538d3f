"""Set up a demo installation: an admin login, the demo sources and an API token, then demo data
loaded through the real ingestion services (the same validation, dedupe and upsert as the API).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction

from cdp.api.models import ApiToken, Scope
from cdp.api.services import api_token_create, api_token_revoke
from cdp.ingestion.demo.generator import (
    demo_start_end,
    person_events,
    person_make,
    person_records,
)
from cdp.ingestion.models import Source
from cdp.ingestion.selectors import source_by_name
from cdp.ingestion.services import (
    SourceWithKey,
    events_ingest,
    records_upsert,
    source_create,
    source_rotate_write_key,
)

DEMO_USERNAME = "admin"
DEMO_WEB_SOURCE = "demo-web"
DEMO_CRM_SOURCE = "demo-crm"
DEMO_TOKEN_NAME = "demo"  # noqa: S105 - a name, not a secret
PASSWORD_ENV = "CDP_DEMO_PASSWORD"  # noqa: S105 - the variable's name
CREDENTIALS_FILE = "demo_credentials.json"
EVENT_BATCH = 500
RECORD_BATCH = 500


@dataclass(frozen=True)
class DemoAccess:
    username: str
    password: str
    password_origin: str  # where the password comes from, to tell the operator
    web: SourceWithKey
    crm: Source
    api_token: str


@dataclass(frozen=True)
class DemoDataset:
    people: int
    events: list[dict[str, Any]]  # Segment messages in time order
    records: list[dict[str, Any]]


@dataclass
class DemoCounts:
    people: int = 0
    events_stored: int = 0
    events_duplicate: int = 0
    events_rejected: int = 0
    records_created: int = 0
    records_updated: int = 0
    records_unchanged: int = 0
    records_rejected: int = 0


def demo_password(*, state_dir: Path) -> tuple[str, str]:
    """The admin password: from the environment, else the one generated on the first run and
    kept (owner-readable only) under the state directory. Returns (password, where from)."""
    from_env = os.environ.get(PASSWORD_ENV, "")
    if from_env:
        return from_env, f"from ${PASSWORD_ENV}"
    path = state_dir / CREDENTIALS_FILE
    try:
        stored = json.loads(path.read_text())
        if isinstance(stored, dict) and isinstance(stored.get("password"), str):
            return stored["password"], f"kept in {path}"
    except (FileNotFoundError, ValueError):
        pass  # first run, or a damaged file: issue a new password
    password = secrets.token_urlsafe(18)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # also when the file existed with a wider mode
    with os.fdopen(descriptor, "w") as handle:
        json.dump({"username": DEMO_USERNAME, "password": password}, handle)
    return password, f"generated, kept in {path}"


@transaction.atomic
def demo_access_ensure(*, password: str, password_origin: str) -> DemoAccess:
    """Make ``admin`` a superuser with ``password``; create the demo sources (``demo-web`` gets a
    new write key if it exists: only digests are stored); replace the demo API token."""
    user_model = get_user_model()
    user = user_model.objects.filter(username=DEMO_USERNAME).first()
    if user is None:
        user_model.objects.create_superuser(
            username=DEMO_USERNAME, email="admin@example.com", password=password
        )
    elif not (user.is_superuser and user.is_staff and user.is_active) or not user.check_password(
        password
    ):
        user.is_superuser = user.is_staff = user.is_active = True
        user.set_password(password)
        user.save()

    web_source = source_by_name(DEMO_WEB_SOURCE)
    web = (
        source_rotate_write_key(source=web_source)
        if web_source
        else source_create(name=DEMO_WEB_SOURCE)
    )
    crm = source_by_name(DEMO_CRM_SOURCE)
    if crm is None:
        crm = source_create(name=DEMO_CRM_SOURCE).source

    for previous in ApiToken.objects.filter(name=DEMO_TOKEN_NAME, revoked_at__isnull=True):
        api_token_revoke(token=previous)
    token = api_token_create(name=DEMO_TOKEN_NAME, scopes=Scope.values)
    return DemoAccess(
        username=DEMO_USERNAME,
        password=password,
        password_origin=password_origin,
        web=web,
        crm=crm,
        api_token=token.plaintext,
    )


def demo_dataset(*, people: int, days: int, seed: int, now: datetime) -> DemoDataset:
    """Generate ``people`` demo people's events over ``days`` days up to ``now``, and their CRM
    records. Deterministic for a given seed (times move with ``now``; messageIds do not)."""
    start, end = demo_start_end(now=now, days=days)
    timed: list[tuple[datetime, dict[str, Any]]] = []
    records: list[dict[str, Any]] = []
    for index in range(people):
        person = person_make(seed=seed, index=index)
        timed.extend(person_events(person, seed=seed, start=start, end=end))
        records.extend(person_records(person, seed=seed))
    timed.sort(key=lambda item: (item[0], item[1]["messageId"]))
    return DemoDataset(people=people, events=[message for _, message in timed], records=records)


def demo_dataset_load(
    *,
    dataset: DemoDataset,
    web_source_id: int,
    crm_source_id: int,
    on_progress: Callable[[int], object] | None = None,
) -> DemoCounts:
    """Send the events through ``events_ingest`` and the records through ``records_upsert``, in
    batches (each its own transaction); ``on_progress`` gets the number of items sent."""
    counts = DemoCounts(people=dataset.people)
    for batch in _batches(dataset.events, EVENT_BATCH):
        ingested = events_ingest(source_id=web_source_id, messages=batch)
        counts.events_stored += ingested.accepted
        counts.events_duplicate += ingested.duplicates
        counts.events_rejected += len(ingested.rejected)
        if on_progress is not None:
            on_progress(len(batch))
    for batch in _batches(dataset.records, RECORD_BATCH):
        upserted = records_upsert(source_id=crm_source_id, records=batch)
        counts.records_created += upserted.created
        counts.records_updated += upserted.updated
        counts.records_unchanged += upserted.unchanged
        counts.records_rejected += len(upserted.rejected)
        if on_progress is not None:
            on_progress(len(batch))
    return counts


def _batches(items: Sequence[dict[str, Any]], size: int) -> list[Sequence[dict[str, Any]]]:
    return [items[start : start + size] for start in range(0, len(items), size)]
