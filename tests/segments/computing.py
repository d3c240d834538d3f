"""Helpers for recompute tests: segments stored as the API stores them, stays read back."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

from django.db.models import F, Q

from identity.models import ProfileChange
from segments.dsl import definition_parse
from segments.models import Membership, Segment, SegmentVersion
from segments.services.incremental import IncrementalResult, segments_refresh_changed

_names = itertools.count(1)
PURPOSE = "analytics"


def segment_make(definition: dict[str, Any], *, min_size: int = 1, name: str = "") -> Segment:
    parsed = definition_parse(definition)
    segment = Segment.objects.create(
        name=name or f"segment {next(_names)}",
        purpose=PURPOSE,
        min_size=min_size,
        definition=parsed.doc,
        time_dependent=parsed.time_dependent,
    )
    SegmentVersion.objects.create(
        segment=segment, version=1, definition=parsed.doc, created_by="test"
    )
    return segment


def segment_redefine(segment: Segment, definition: dict[str, Any]) -> None:
    """A new version, as the definitions service writes it (without enqueueing)."""
    parsed = definition_parse(definition)
    segment.version += 1
    segment.definition = parsed.doc
    segment.time_dependent = parsed.time_dependent
    segment.save(update_fields=["version", "definition", "time_dependent"])
    SegmentVersion.objects.create(
        segment=segment, version=segment.version, definition=parsed.doc, created_by="test"
    )


def members(segment_id: int) -> set[int]:
    return set(
        Membership.objects.filter(segment_id=segment_id, exited_at__isnull=True).values_list(
            "profile_id", flat=True
        )
    )


def members_at(segment_id: int, at: datetime) -> set[int]:
    """Who was in the segment at ``at``, from the intervals alone."""
    return set(
        Membership.objects.filter(segment_id=segment_id, entered_at__lte=at)
        .filter(Q(exited_at__isnull=True) | Q(exited_at__gt=at))
        .values_list("profile_id", flat=True)
    )


def stays(segment_id: int) -> list[tuple[int, datetime, datetime | None, str]]:
    return list(
        Membership.objects.filter(segment_id=segment_id)
        .order_by("profile_id", "entered_at", "pk")
        .values_list("profile_id", "entered_at", "exited_at", "exit_reason")
    )


def refresh(*, now: datetime, batch_size: int = 1000) -> IncrementalResult:
    """Drain the change queue as the incremental task does."""
    total = IncrementalResult()
    position = None
    while True:
        result = segments_refresh_changed(batch_size=batch_size, now=now, after=position)
        if not result.profiles:
            return total
        position = result.position
        total.profiles += result.profiles
        total.consumed += result.consumed
        total.entered += result.entered
        total.exited += result.exited
        total.deferred += result.deferred
        total.failed += result.failed


def changed() -> set[int]:
    """Profiles whose latest change segments has not evaluated."""
    pending = ProfileChange.objects.filter(
        Q(segments_seen_at__isnull=True) | ~Q(segments_seen_at=F("changed_at"))
    )
    return set(pending.values_list("profile_id", flat=True))
