from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from cdp.embedded_db import state_dir
from cdp.ingestion.demo.seeding import (
    DEMO_CRM_SOURCE,
    DEMO_WEB_SOURCE,
    demo_access_ensure,
    demo_dataset,
    demo_dataset_load,
    demo_password,
)
from cdp.ops.progress import progress_bar
from identity.selectors import events_pending_count
from identity.services.resolution import ResolveResult, resolve_batch
from segments.demo import demo_segments_compute

ADMIN_URL = "http://127.0.0.1:8000/admin/"
MAX_PEOPLE = 100_000


class Command(BaseCommand):
    help = (
        "Create the demo admin login, sources and API token, and load deterministic demo events "
        "and CRM records. Safe to re-run: the same seed stores no new events."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--people", type=int, default=2_000)
        parser.add_argument("--days", type=int, default=30)
        parser.add_argument("--seed", type=int, default=1)

    def _resolve(self, *, quiet: bool) -> ResolveResult:
        """Resolve what was loaded now, in this process, so the demo starts with its people."""
        total = ResolveResult()
        pending = events_pending_count()
        with progress_bar(
            stderr=self.stderr, total=pending, quiet=quiet, unit=" events", desc="resolving"
        ) as progress:
            while not (batch := resolve_batch(batch_size=2000)).empty:
                total.add(batch)
                progress.update(batch.events)
        return total

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.PRODUCTION:
            # It resets the admin password, mints an all-scope token and rotates a write key.
            raise CommandError("seed_demo is for local demos and refuses to run in production.")
        people, days, seed = options["people"], options["days"], options["seed"]
        if not 0 <= people <= MAX_PEOPLE:
            raise CommandError(f"--people must be between 0 and {MAX_PEOPLE}.")
        if not 1 <= days <= 3650:
            raise CommandError("--days must be between 1 and 3650.")
        started = time.monotonic()
        password, origin = demo_password(state_dir=state_dir(settings.BASE_DIR))
        access = demo_access_ensure(password=password, password_origin=origin)
        dataset = demo_dataset(people=people, days=days, seed=seed, now=timezone.now())
        with progress_bar(
            stderr=self.stderr,
            total=len(dataset.events) + len(dataset.records),
            quiet=options["verbosity"] == 0,
            unit=" items",
            desc="demo data",
        ) as progress:
            counts = demo_dataset_load(
                dataset=dataset,
                web_source_id=access.web.source.pk,
                crm_source_id=access.crm.pk,
                on_progress=progress.update,
            )
        resolved = self._resolve(quiet=options["verbosity"] == 0)
        segments = demo_segments_compute()
        elapsed = time.monotonic() - started
        self.stdout.write(
            f"Demo data (seed {seed}, {counts.people} people, {days} days) in {elapsed:.1f} s\n"
            f"  events ({DEMO_WEB_SOURCE}):  stored={counts.events_stored} "
            f"duplicate={counts.events_duplicate} rejected={counts.events_rejected}\n"
            f"  records ({DEMO_CRM_SOURCE}): created={counts.records_created} "
            f"updated={counts.records_updated} unchanged={counts.records_unchanged} "
            f"rejected={counts.records_rejected}\n"
            f"  identity:   {resolved.events} events and {resolved.records} records resolved, "
            f"{resolved.profiles_created} profiles, {resolved.merges} merges, "
            f"{resolved.conflicts} conflicts kept apart\n"
            f"  segments:   "
            + ", ".join(f"{segment.name} {outcome.member_count}" for segment, outcome in segments)
            + "\n"
            f"\n"
            f"  Admin:      {ADMIN_URL}\n"
            f"  Username:   {access.username}\n"
            f"  Password:   {access.password}   ({access.password_origin})\n"
            f"  Write key:  {access.web.write_key}   (source {DEMO_WEB_SOURCE}; new on every run)\n"
            f"  API token:  {access.api_token}   (all scopes; new on every run)"
        )
