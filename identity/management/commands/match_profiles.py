"""``manage.py match_profiles [--dry-run]``: a full probabilistic matching pass."""

from __future__ import annotations

from typing import Any

import numpy as np
from django.core.management.base import BaseCommand, CommandParser

from cdp.ops.progress import progress_bar
from identity.matching.services import MatchReport, matching_full

BINS = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 0.95, 0.99, 1.0000001)
SHOWN_MERGES = 50


class Command(BaseCommand):
    help = (
        "Match every profile against its candidate pairs (blocking + sorted neighbourhood): "
        "auto-merge above CDP_MATCH_UPPER, queue for review above CDP_MATCH_LOWER. With "
        "--dry-run nothing is written: prints what would merge and the score distribution."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Write nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        quiet = options["verbosity"] == 0
        bar = progress_bar(stderr=self.stderr, total=4, quiet=quiet, desc="matching", unit="step")

        def progress(stage: str, count: int) -> None:
            bar.set_postfix_str(f"{stage} {count:,}")
            if stage in {"read", "pairs", "compared"}:
                bar.update(1)

        report = matching_full(dry_run=options["dry_run"], progress=progress)
        bar.update(4 - bar.n)
        bar.close()
        self._print(report, dry_run=options["dry_run"])

    def _print(self, report: MatchReport, *, dry_run: bool) -> None:
        out = self.stdout
        out.write(
            f"profiles {report.profiles:,}, candidate pairs {report.pairs:,} "
            f"({report.skipped:,} already decided), model {report.model}"
        )
        for status, count in sorted(report.routes.items()):
            out.write(f"  {status}: {count:,}")
        out.write("score distribution:")
        counts, edges = np.histogram(report.scores, bins=BINS)
        for count, low, high in zip(counts, edges, edges[1:], strict=False):
            out.write(f"  [{low:.2f}, {min(high, 1.0):.2f}{']' if high > 1 else ')'}: {count:,}")
        verb = "would merge" if dry_run else "merged"
        out.write(f"{verb}: {len(report.merges):,} pairs")
        for score, a, b in sorted(report.merges, reverse=True)[:SHOWN_MERGES]:
            out.write(f"  profile {a} + profile {b}  score {score:.4f}")
        if len(report.merges) > SHOWN_MERGES:
            out.write(f"  ... and {len(report.merges) - SHOWN_MERGES:,} more")
