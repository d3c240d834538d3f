"""Data for the activation tests: people stored through the real ingestion and resolution path,
segments and memberships inserted as rows (the compute engine is not under test here), consent
recorded through the consent service."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from cdp.audit.models import AuditAction
from consent.models import ConsentChannel
from consent.services import ChoiceInput, consent_record
from identity.selectors import identifier_find
from segments.models import Membership, Segment
from tests.identity.resolving import T0, ingest, message, pid, resolve


def people_create(source_id: int, specs: Sequence[dict[str, Any]]) -> list[int]:
    """One person per spec: ``{"user": "u1", "traits": {...}, "emails": [...]}``; each email
    is identified with the user id (so it is one of their identifiers); profile ids back."""
    messages = []
    for spec in specs:
        messages.append(message("identify", userId=spec["user"], traits=spec.get("traits", {})))
        for offset, email in enumerate(spec.get("emails", []), start=1):
            messages.append(
                message("identify", at=offset, userId=spec["user"], traits={"email": email})
            )
    ingest(source_id, *messages)
    resolve()
    return [pid("user_id", spec["user"]) for spec in specs]


def consent_set(
    kind: str, raw: str, purpose: str, status: str, *, address_bound: bool = False
) -> None:
    identifier = identifier_find(kind=kind, raw_value=raw)
    assert identifier is not None
    consent_record(
        identifier_id=identifier.pk,
        choices=[
            ChoiceInput(
                purpose=purpose,
                status=status,
                channel=ConsentChannel.API,
                address_bound=address_bound,
            )
        ],
        actor="test",
        audit_action=AuditAction.CONSENT_RECORDED,
    )


def segment_with_members(
    name: str,
    profile_ids: Sequence[int],
    *,
    purpose: str = "analytics",
    too_small: bool = False,
    fallback: Segment | None = None,
) -> Segment:
    segment = Segment.objects.create(
        name=name,
        purpose=purpose,
        min_size=0,
        definition={"consent": purpose},
        member_count=len(profile_ids),
        too_small=too_small,
        fallback=fallback,
    )
    Membership.objects.bulk_create(
        Membership(segment=segment, profile_id=profile_id, entered_at=T0 + timedelta(hours=i))
        for i, profile_id in enumerate(profile_ids)
    )
    return segment


def activation_settings(settings: Any, **values: Any) -> None:
    settings.CDP_SEGMENTS = {**(getattr(settings, "CDP_SEGMENTS", None) or {}), **values}
