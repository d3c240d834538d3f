"""Helpers for resolver tests: ingest through the real services, resolve, read profiles back."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from cdp.ingestion.services import events_ingest, records_upsert
from identity.models import Profile
from identity.selectors import identifier_find, profile_current
from identity.services.resolution import ResolveResult, resolve_pending

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def message(call_type: str, *, at: int = 0, **fields: Any) -> dict[str, Any]:
    """A Segment message of ``call_type``; ``at`` is seconds after T0."""
    body: dict[str, Any] = {
        "type": call_type,
        "messageId": uuid.uuid4().hex,
        "timestamp": (T0 + timedelta(seconds=at)).isoformat(),
    }
    if call_type == "track":
        body["event"] = fields.pop("event", "Viewed")
    body.update(fields)
    return body


def ingest(source_id: int, *messages: dict[str, Any]) -> None:
    result = events_ingest(source_id=source_id, messages=list(messages), received_at=T0)
    assert not result.rejected, result.rejected
    assert result.accepted == len(messages)


def upsert(source_id: int, *records: dict[str, Any]) -> None:
    result = records_upsert(source_id=source_id, records=list(records))
    assert not result.rejected, result.rejected


def resolve() -> ResolveResult:
    return resolve_pending(batch_size=50)


def profile_of(kind: str, raw: object) -> Profile | None:
    identifier = identifier_find(kind=kind, raw_value=raw)
    if identifier is None or identifier.profile_id is None:
        return None
    return profile_current(identifier.profile_id)


def pid(kind: str, raw: object) -> int:
    profile = profile_of(kind, raw)
    assert profile is not None, f"no profile for a {kind}"
    return profile.pk
