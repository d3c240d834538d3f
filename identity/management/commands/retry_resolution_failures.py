from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from identity.models import ResolutionFailure
from identity.services.resolution import failures_retry


class Command(BaseCommand):
    help = (
        "Put events and records the resolver set aside (see the Resolution failures admin) back "
        "in its queue, e.g. after a fix was deployed. A row that fails again is set aside again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("ids", nargs="*", type=int, help="failure ids (default: all)")

    def handle(self, *args: Any, **options: Any) -> None:
        pending = ResolutionFailure.objects.count()
        retried = failures_retry(ids=options["ids"] or None)
        self.stdout.write(f"Requeued {retried} of {pending} set-aside rows for resolution.")
