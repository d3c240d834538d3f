from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from tqdm import tqdm

from cdp.ops.progress import progress_bar
from identity.services.rebuild import RebuildResult, identity_rebuild


class Command(BaseCommand):
    help = (
        "Rebuild the identity graph from the raw data: restore missing evidence from resolved "
        "events and CRM records, recompute every component under the merge rules (the same "
        "algorithm and order as incremental resolution), and write only what differs. Resolver "
        "batches wait while it runs; reads do not."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Compute the partition and report what would change; write nothing.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        bars: dict[str, tqdm[Any]] = {}

        def progress(step: str, done: int, total: int) -> None:
            bar = bars.get(step)
            if bar is None:
                bar = bars[step] = progress_bar(
                    stderr=self.stderr,
                    total=total,
                    quiet=options["verbosity"] == 0,
                    desc=step,
                    unit="row",
                )
            bar.total = max(bar.total or 0, total)
            bar.update(done - bar.n)

        try:
            result = identity_rebuild(progress=progress, dry_run=options["dry_run"])
        finally:
            for bar in bars.values():
                bar.close()
        self.stdout.write(self._summary(result, dry_run=options["dry_run"]))

    @staticmethod
    def _summary(result: RebuildResult, *, dry_run: bool) -> str:
        verb = "would move" if dry_run else "moved"
        timings = ", ".join(f"{step} {seconds:.2f}s" for step, seconds in result.seconds.items())
        return (
            f"{result.identifiers} identifiers, {result.edges} valid edges "
            f"({result.edges_added} restored from raw data), {result.components} profiles; "
            f"{verb} {result.identifiers_moved} identifiers, {result.edges_flipped} edge "
            f"decisions changed, {result.profiles_created} profiles created, "
            f"{result.profiles_retired} retired. Timings: {timings}."
        )
