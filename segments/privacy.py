"""What the segments app adds to a person's access (DSAR) export: every stay of their profiles
in every segment (``segment_memberships``), registered from ``SegmentsConfig.ready``.

Erasure needs nothing here: memberships and computed traits reference the profile by foreign
key, so ``consent.privacy.shredding`` deletes them with the person's profiles (memberships of
erased people are deleted, not closed).
"""

from __future__ import annotations

from collections.abc import Iterator

from consent.privacy.access import ExportSection, ExportSubject, access_sections_register
from segments.models import Membership

SECTION_NAME = "segment_memberships"
BATCH_SIZE = 2000


def segment_membership_rows(subject: ExportSubject) -> Iterator[dict[str, object]]:
    """One row per stay, in time order; a merged-away profile's stays are the person's too."""
    stays = (
        Membership.objects.filter(profile_id__in=subject.profile_ids)
        .select_related("segment")
        .order_by("entered_at", "pk")
    )
    for stay in stays.iterator(chunk_size=BATCH_SIZE):
        yield {
            "segment_id": stay.segment_id,
            "segment_name": stay.segment.name,
            "profile_id": stay.profile_id,
            "entered_at": stay.entered_at,
            "exited_at": stay.exited_at,
            "exit_reason": stay.exit_reason or None,
        }


def access_section_register() -> None:
    access_sections_register(
        ExportSection(
            name=SECTION_NAME,
            description="Segment memberships of the person's profiles: one row per stay "
            "(segment, entered_at, exited_at, exit_reason).",
            rows=segment_membership_rows,
        )
    )
