"""What the segments app adds to a person's access (DSAR) export: every stay of their profiles
in every segment (``segment_memberships``), registered from ``SegmentsConfig.ready``.

Erasure deletes memberships and computed traits with the person's profiles (they reference
the profile by foreign key: memberships of erased people are deleted, not closed); the export
job files of their segments are destroyed by the ``segment_exports`` hook.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Q
from django.utils import timezone

from cdp.crypto.services import data_keys_destroy
from consent.privacy.access import ExportSection, ExportSubject, access_sections_register
from consent.privacy.shredding import Scope, erasure_hook_register
from segments.activation.models import SegmentExport, SegmentExportPart
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


def segment_exports_shred(scope: Scope) -> int:
    """Erasure: an export job file of a segment the person was ever in may hold their row,
    encrypted under the job's own key, which crypto-shredding the person's keys does not reach:
    destroy those files' keys and parts. Runs before the person's memberships are deleted."""
    segments = Membership.objects.filter(profile_id__in=list(scope.profiles)).values("segment_id")
    files = list(
        SegmentExport.objects.filter(
            Q(segment_id__in=segments) | Q(served_segment_id__in=segments),
            data_key__isnull=False,
            data_key__destroyed_at__isnull=True,
        )
        .select_for_update(of=("self",))
        .order_by("pk")
        .values_list("pk", "data_key_id")
    )
    if not files:
        return 0
    data_keys_destroy(ids=[key_id for _, key_id in files])
    SegmentExportPart.objects.filter(export_id__in=[pk for pk, _ in files]).delete()
    SegmentExport.objects.filter(pk__in=[pk for pk, _ in files]).update(expires_at=timezone.now())
    return len(files)


def erasure_hook_register_exports() -> None:
    erasure_hook_register("segment_exports", segment_exports_shred)
