"""Writes of the audit log: append only."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from cdp.audit.models import ACTOR_MAX_LENGTH, AuditAction, AuditEntry
from cdp.ops.bulk import rows_insert


@dataclass(frozen=True)
class AuditEvent:
    action: AuditAction
    target_type: str = ""
    target_id: object = ""
    details: Mapping[str, Any] | None = None


def audit_record(
    *,
    actor: str,
    action: AuditAction,
    target_type: str = "",
    target_id: object = "",
    details: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry. Runs in the caller's transaction: the entry commits with the action it
    describes, or not at all."""
    return AuditEntry.objects.create(
        actor=actor[:ACTOR_MAX_LENGTH],
        action=action,
        target_type=target_type,
        target_id=str(target_id),
        details=dict(details or {}),
    )


def audit_record_many(*, actor: str, events: Iterable[AuditEvent]) -> int:
    """Append several entries by one actor in one statement; returns how many."""
    rows = list(events)
    if not rows:
        return 0
    now = timezone.now()
    rows_insert(
        AuditEntry._meta.db_table,
        {
            "at": ("timestamptz[]", [now] * len(rows)),
            "actor": ("varchar[]", [actor[:ACTOR_MAX_LENGTH]] * len(rows)),
            "action": ("varchar[]", [str(row.action) for row in rows]),
            "target_type": ("varchar[]", [row.target_type for row in rows]),
            "target_id": ("varchar[]", [str(row.target_id) for row in rows]),
            "details": ("jsonb[]", [dict(row.details or {}) for row in rows]),
        },
    )
    return len(rows)
