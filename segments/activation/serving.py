"""Which segment activation serves, and to whom.

A too-small segment (``Segment.too_small``, set by each recompute) is never handed out: its
fallback is served instead when it has one (following fallbacks while they are too small too),
else ``Conflict`` (409 ``segment_too_small``). The people served are the served segment's current
members (open stays, profiles not merged away) allowed for the requested segment's purpose, and
for the fallback's purpose too when that differs: a fallback never widens consent.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q, QuerySet

from cdp.api.errors import Conflict, NotFound
from consent.selectors import allowed_q
from segments.models import Membership, Segment

MAX_FALLBACK_HOPS = 8


@dataclass(frozen=True)
class Served:
    requested: Segment
    segment: Segment  # the requested segment, or the fallback served in its place
    purposes: tuple[str, ...]

    @property
    def is_fallback(self) -> bool:
        return self.segment.pk != self.requested.pk


def segment_get_live(segment_id: int) -> Segment:
    segment = Segment.objects.filter(pk=segment_id, deleted_at__isnull=True).first()
    if segment is None:
        raise NotFound("No such segment.", code="segment_not_found")
    return segment


def segment_served(segment: Segment) -> Served:
    """The segment to serve in ``segment``'s place (itself when big enough)."""
    current = segment
    seen = {segment.pk}
    for _ in range(MAX_FALLBACK_HOPS):
        if not current.too_small:
            purposes = tuple(dict.fromkeys((segment.purpose, current.purpose)))
            return Served(requested=segment, segment=current, purposes=purposes)
        if current.fallback_id is None or current.fallback_id in seen:
            break
        seen.add(current.fallback_id)
        found = Segment.objects.filter(pk=current.fallback_id, deleted_at__isnull=True).first()
        if found is None:
            break
        current = found
    raise Conflict(
        "The segment is too small to activate and has no usable fallback.",
        code="segment_too_small",
    )


def served_members(served: Served) -> QuerySet[Membership]:
    """The served segment's current, consented memberships in profile order."""
    gate = Q()
    for purpose in served.purposes:
        gate &= allowed_q(purpose, profile_field="profile_id")
    return (
        Membership.objects.filter(
            segment_id=served.segment.pk,
            exited_at__isnull=True,
            profile__merged_into__isnull=True,
        )
        .filter(gate)
        .order_by("profile_id")
    )
