"""Validation and normalisation of Segment-spec messages: pure functions, no database.

This is the hot path of ingestion, so it is hand-written rather than a serializer per event: each
message is checked against the fields its call type needs, its JSON parts are serialised once
(which also gives its size), and its time is corrected for client clock skew the way Segment
does it: ``timestamp = receivedAt - (sentAt - originalTimestamp)``.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from cdp.ingestion.models import EventType
from cdp.ingestion.pii import event_pii_part, event_pii_take

CALL_TYPES = frozenset(EventType.values)
MAX_ID_LENGTH = 255
_JSON_PARTS = ("properties", "traits", "context", "integrations")


@dataclass(frozen=True, slots=True)
class Limits:
    max_event_bytes: int
    max_future_skew: timedelta


@dataclass(frozen=True, slots=True)
class ItemError:
    """Why one item (a message, a record) of a request was rejected."""

    index: int
    attr: str | None
    code: str
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "attr": self.attr, "code": self.code, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class EventError(ItemError):
    message_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"messageId": self.message_id, **ItemError.as_dict(self)}


class Invalid(Exception):
    """Raised inside a validator for the first field of an item that fails."""

    def __init__(self, attr: str | None, code: str, detail: str) -> None:
        self.attr, self.code, self.detail = attr, code, detail


@dataclass(frozen=True, slots=True)
class EventRow:
    """One validated event, in the column order of the insert."""

    message_id: str
    type: str
    event_name: str | None
    user_id: str | None
    anonymous_id: str | None
    previous_id: str | None
    group_id: str | None
    timestamp: datetime
    original_timestamp: datetime | None
    sent_at: datetime | None
    clock_skew_clamped: bool
    properties: str
    traits: str
    context: str
    integrations: str
    # The PII taken out of traits and context (``cdp.ingestion.pii``), as JSON text
    # ``{path: value}``; None when there was none. Ingestion encrypts it before storing.
    pii: str | None = None


def validate_event(
    raw: Any,
    *,
    index: int,
    call_type: str | None,
    received_at: datetime,
    limits: Limits,
    batch_sent_at: datetime | None = None,
    batch_context: dict[str, Any] | None = None,
    pii_keys: frozenset[str] = frozenset(),
) -> EventRow | EventError:
    """Validate one message; ``call_type`` is fixed by the endpoint, or read from ``type``.
    The values of ``pii_keys`` are taken out of its traits and context into ``EventRow.pii``."""
    message_id = raw.get("messageId") if isinstance(raw, dict) else None
    try:
        return _validate(
            raw,
            call_type=call_type,
            received_at=received_at,
            limits=limits,
            batch_sent_at=batch_sent_at,
            batch_context=batch_context,
            pii_keys=pii_keys,
        )
    except Invalid as exc:
        return EventError(
            index=index,
            attr=exc.attr,
            code=exc.code,
            detail=exc.detail,
            message_id=message_id if isinstance(message_id, str) else None,
        )


def _validate(
    raw: Any,
    *,
    call_type: str | None,
    received_at: datetime,
    limits: Limits,
    batch_sent_at: datetime | None,
    batch_context: dict[str, Any] | None,
    pii_keys: frozenset[str],
) -> EventRow:
    if not isinstance(raw, dict):
        raise Invalid(None, "not_an_object", "Each event must be a JSON object.")
    kind = call_type or raw.get("type")
    if not isinstance(kind, str) or kind not in CALL_TYPES:  # a list or dict is unhashable
        raise Invalid(
            "type", "invalid_type", f"type must be one of {', '.join(sorted(CALL_TYPES))}."
        )

    user_id = _optional_id(raw, "userId")
    anonymous_id = _optional_id(raw, "anonymousId")
    previous_id = _optional_id(raw, "previousId")
    group_id = _optional_id(raw, "groupId")
    if kind == EventType.ALIAS:
        if previous_id is None:
            raise Invalid("previousId", "required", "alias needs previousId.")
        if user_id is None:
            raise Invalid("userId", "required", "alias needs userId.")
    elif user_id is None and anonymous_id is None:
        raise Invalid("userId", "required", "userId or anonymousId is required.")
    if kind == EventType.GROUP and group_id is None:
        raise Invalid("groupId", "required", "group needs groupId.")

    event_name: str | None = None
    if kind == EventType.TRACK:
        event_name = _optional_string(raw, "event")
        if not event_name:
            raise Invalid("event", "required", "track needs a non-empty event name.")
    elif kind in (EventType.PAGE, EventType.SCREEN):
        event_name = _optional_string(raw, "name")

    parts = {name: _object(raw, name) for name in _JSON_PARTS}
    if batch_context:
        parts["context"] = {**batch_context, **parts["context"]}
    _keep_top_level_fields(raw, kind, parts)
    pii = event_pii_take(parts, pii_keys)
    encoded = {name: orjson.dumps(value) for name, value in parts.items()}
    encoded_pii = orjson.dumps(pii) if pii else b""
    size = sum(len(value) for value in encoded.values()) + len(encoded_pii)
    if size > limits.max_event_bytes:
        raise Invalid(
            None, "event_too_large", f"Event is larger than {limits.max_event_bytes} bytes."
        )
    nul_in_pii = _parts_with_nul(pii) if has_nul(encoded_pii) else set()
    for name, value in encoded.items():
        if name in nul_in_pii or has_nul(value):
            raise Invalid(name, "null_character", "Text may not contain the NUL character.")

    original = _optional_time(raw, "originalTimestamp") or _optional_time(raw, "timestamp")
    sent_at = _optional_time(raw, "sentAt") or batch_sent_at
    try:
        timestamp, clamped = corrected_timestamp(
            original=original, sent_at=sent_at, received_at=received_at, limits=limits
        )
    except OverflowError:
        raise Invalid("timestamp", "invalid_timestamp", "timestamp is out of range.") from None
    message_id = _optional_id(raw, "messageId") or str(uuid.uuid4())
    return EventRow(
        message_id=message_id,
        type=kind,
        event_name=event_name,
        user_id=user_id,
        anonymous_id=anonymous_id,
        previous_id=previous_id,
        group_id=group_id,
        timestamp=timestamp,
        original_timestamp=original,
        sent_at=sent_at,
        clock_skew_clamped=clamped,
        properties=encoded["properties"].decode(),
        traits=encoded["traits"].decode(),
        context=encoded["context"].decode(),
        integrations=encoded["integrations"].decode(),
        pii=encoded_pii.decode() if pii else None,
    )


def _parts_with_nul(pii: dict[str, Any]) -> set[str]:
    """The parts (traits, context) whose PII holds a NUL, so the error names where it was."""
    return {event_pii_part(path) for path, value in pii.items() if has_nul(orjson.dumps(value))}


# A NUL is written ``\u0000`` by orjson; text that merely shows that escape has its backslash
# escaped (``\\u0000``) and is fine.
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def has_nul(encoded: bytes) -> bool:
    """Whether orjson output holds a NUL character (PostgreSQL text and jsonb refuse it)."""
    return b"\\u0000" in encoded and _NUL_ESCAPE.search(encoded) is not None


def _keep_top_level_fields(raw: dict[str, Any], kind: str, parts: dict[str, Any]) -> None:
    """Spec fields without a column of their own are kept where the spec's readers look:
    Segment's page/screen ``category`` in properties, RudderStack's ``channel`` in context.
    A value the message already carries there wins."""
    category = raw.get("category")
    if kind in (EventType.PAGE, EventType.SCREEN) and isinstance(category, str) and category:
        parts["properties"] = {"category": category, **parts["properties"]}
    channel = raw.get("channel")
    if isinstance(channel, str) and channel:
        parts["context"] = {"channel": channel, **parts["context"]}


def corrected_timestamp(
    *,
    original: datetime | None,
    sent_at: datetime | None,
    received_at: datetime,
    limits: Limits,
) -> tuple[datetime, bool]:
    """The event time on the server's clock, and whether it had to be clamped."""
    if original is None:
        return received_at, False
    timestamp = received_at - (sent_at - original) if sent_at is not None else original
    if timestamp - received_at > limits.max_future_skew:
        return received_at, True
    return timestamp, False


def parse_time(value: Any, attr: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise Invalid(attr, "invalid_timestamp", f"{attr} must be an ISO-8601 string.")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise Invalid(attr, "invalid_timestamp", f"{attr} is not an ISO-8601 date-time.") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        # In UTC, so every serialiser writes the same instant (orjson drops offset seconds), and
        # 0001-01-01T00:00+05:00 (year 0 in UTC: PostgreSQL stores it, Python cannot read it
        # back) is refused here.
        return parsed.astimezone(UTC)
    except OverflowError:
        raise Invalid(attr, "invalid_timestamp", f"{attr} is out of range.") from None


def batch_sent_at(value: Any) -> datetime | None:
    """The batch-level sentAt; an unreadable one is ignored (each event may carry its own)."""
    try:
        return parse_time(value, "sentAt")
    except Invalid:
        return None


def _optional_time(raw: dict[str, Any], attr: str) -> datetime | None:
    return parse_time(raw.get(attr), attr)


def _optional_id(raw: dict[str, Any], attr: str) -> str | None:
    value = raw.get(attr)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise Invalid(attr, "invalid_id", f"{attr} must be a string or a number.")
    text = str(value).strip() if isinstance(value, str) else str(value)
    return bounded_text(text, attr=attr, limit=MAX_ID_LENGTH) or None


def bounded_text(text: str, *, attr: str, limit: int) -> str:
    """``text`` if it fits the column: at most ``limit`` characters and no NUL (which
    PostgreSQL text cannot hold)."""
    if len(text) > limit:
        raise Invalid(attr, "too_long", f"{attr} is longer than {limit} characters.")
    if "\x00" in text:
        raise Invalid(attr, "null_character", "Text may not contain the NUL character.")
    return text


def _optional_string(raw: dict[str, Any], attr: str) -> str | None:
    value = raw.get(attr)
    if value is None:
        return None
    if not isinstance(value, str):
        raise Invalid(attr, "invalid_string", f"{attr} must be a string.")
    return bounded_text(value, attr=attr, limit=MAX_ID_LENGTH) or None


def _object(raw: dict[str, Any], attr: str) -> dict[str, Any]:
    value = raw.get(attr)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Invalid(attr, "not_an_object", f"{attr} must be a JSON object.")
    return value
