"""People for the segments API tests, stored through the real ingestion, resolution and consent
services; segments through ``segment_create``. Memberships are written as rows (the data a
recompute leaves), with the segment's computed fields to match."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.utils import timezone

from cdp.audit.models import AuditAction
from consent.models import ConsentChannel
from consent.services import ChoiceInput, consent_record
from identity.selectors import identifier_find
from segments.models import Membership, Segment
from segments.services.definitions import segment_create
from tests.identity.resolving import T0, ingest, message, pid, resolve

PLAN_PRO = {"trait": "plan", "op": "eq", "value": "pro"}


def people_ingest(source_id: int, count: int, *, prefix: str = "u") -> list[int]:
    """``count`` people identified as ``<prefix><i>`` with an email (PII), a plan (pro for even
    i) and a number ``n`` = i; their profile ids in order."""
    messages = [
        message(
            "identify",
            at=i,
            userId=f"{prefix}{i}",
            traits={
                "email": f"{prefix}{i}@example.com",
                "plan": "pro" if i % 2 == 0 else "free",
                "n": i,
            },
        )
        for i in range(count)
    ]
    for start in range(0, len(messages), 200):
        ingest(source_id, *messages[start : start + 200])
        resolve()
    return [pid("user_id", f"{prefix}{i}") for i in range(count)]


def consent_set(user_id: str, purpose: str, status: str) -> None:
    identifier = identifier_find(kind="user_id", raw_value=user_id)
    assert identifier is not None
    consent_record(
        identifier_id=identifier.pk,
        choices=[ChoiceInput(purpose=purpose, status=status, channel=ConsentChannel.API)],
        actor="test",
        audit_action=AuditAction.CONSENT_RECORDED,
    )


def segment_with(
    members: Sequence[int],
    *,
    name: str = "pro",
    purpose: str = "analytics",
    min_size: int = 1,
    definition: Any = None,
    entered_at: datetime = T0,
    fallback_id: int | None = None,
) -> Segment:
    """A segment (through the service) whose open stays are ``members`` as a recompute would
    have left them."""
    segment = segment_create(
        name=name,
        purpose=purpose,
        min_size=min_size,
        definition=definition or PLAN_PRO,
        fallback_id=fallback_id,
        actor="test",
    )
    Membership.objects.bulk_create(
        Membership(segment=segment, profile_id=profile_id, entered_at=entered_at)
        for profile_id in members
    )
    Segment.objects.filter(pk=segment.pk).update(
        member_count=len(members),
        too_small=len(members) < min_size,
        computed_at=timezone.now(),
        computed_version=segment.version,
    )
    segment.refresh_from_db()
    return segment
