"""``manage.py recompute_segments [--segment ID|NAME ...] [--all] [--metrics] [--rfm]``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cdp.ops.progress import progress_bar
from segments.metrics import metrics_rebuild, metrics_rfm_recompute
from segments.models import Segment
from segments.services.recompute import (
    RecomputeOutcome,
    segment_recompute,
    segments_in_dependency_order,
)


class Command(BaseCommand):
    help = (
        "Recompute segment memberships fully (in dependency order) and print what changed per "
        "segment. A segment another worker is recomputing right now is skipped. --metrics "
        "rebuilds every profile's computed traits first, --rfm the RFM scores."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--segment",
            action="append",
            default=[],
            metavar="ID|NAME",
            help="A segment to recompute (repeatable).",
        )
        parser.add_argument("--all", action="store_true", help="Every live segment.")
        parser.add_argument("--metrics", action="store_true", help="Rebuild computed traits first.")
        parser.add_argument("--rfm", action="store_true", help="Recompute RFM scores first.")

    def handle(self, *args: Any, **options: Any) -> None:
        if bool(options["segment"]) == options["all"]:
            raise CommandError("name segments with --segment, or use --all (not both)")
        segments = self._segments(options["segment"]) if options["segment"] else None
        if options["metrics"]:
            result = metrics_rebuild()
            self.stdout.write(f"computed traits: {result.upserted:,} rows written")
        if options["rfm"] or options["metrics"]:
            self.stdout.write(f"RFM scores: {metrics_rfm_recompute():,} rows changed")
        if segments is None:
            segments = list(Segment.objects.filter(deleted_at__isnull=True))
        ordered = segments_in_dependency_order(segments)
        quiet = options["verbosity"] == 0
        bar = progress_bar(
            stderr=self.stderr, total=len(ordered), quiet=quiet, desc="segments", unit="segment"
        )
        outcomes: list[tuple[Segment, RecomputeOutcome]] = []
        failed = 0
        for segment in ordered:
            bar.set_postfix_str(f"#{segment.pk}")
            try:
                outcome = segment_recompute(segment_id=segment.pk)
            except Exception as exc:  # recorded as the segment's failed RecomputeRun
                failed += 1
                outcome = RecomputeOutcome(
                    segment_id=segment.pk, kind="full", error=type(exc).__name__
                )
            outcomes.append((segment, outcome))
            bar.update(1)
        bar.close()
        self._print(outcomes)
        if failed:
            raise CommandError(f"{failed} segment(s) failed; see their recompute runs")

    def _segments(self, names: list[str]) -> list[Segment]:
        found = []
        for raw in names:
            query = Segment.objects.filter(pk=int(raw)) if raw.isdigit() else None
            segment = (query.first() if query is not None else None) or Segment.objects.filter(
                name=raw
            ).first()
            if segment is None:
                raise CommandError(f"no segment {raw!r}")
            found.append(segment)
        return found

    def _print(self, outcomes: list[tuple[Segment, RecomputeOutcome]]) -> None:
        out = self.stdout
        out.write(f"{'segment':<40} {'entered':>9} {'exited':>9} {'members':>10} {'seconds':>8}")
        for segment, o in outcomes:
            label = f"#{segment.pk} {segment.name}"[:40]
            if o.skipped:
                out.write(f"{label:<40} skipped: another recompute holds it")
            elif o.error:
                out.write(f"{label:<40} failed: {o.error}")
            else:
                out.write(
                    f"{label:<40} {o.entered:>9,} {o.exited:>9,} {o.member_count:>10,} "
                    f"{o.seconds:>8.2f}"
                )
        done = [o for _s, o in outcomes if not (o.skipped or o.error)]
        out.write(
            f"{len(done)} recomputed, {sum(o.skipped for _s, o in outcomes)} skipped: "
            f"{sum(o.entered for o in done):,} entered, {sum(o.exited for o in done):,} exited "
            f"in {sum(o.seconds for o in done):.2f}s"
        )
