"""Property tests of the pure validation functions (no database)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from cdp.ingestion.records import RecordError, RecordRow, validate_record
from cdp.ingestion.validation import (
    CALL_TYPES,
    MAX_ID_LENGTH,
    EventError,
    EventRow,
    Limits,
    batch_sent_at,
    corrected_timestamp,
    has_nul,
    validate_event,
)

LIMITS = Limits(max_event_bytes=32 * 1024, max_future_skew=timedelta(minutes=5))
RECEIVED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FIELDS = (
    "type",
    "messageId",
    "userId",
    "anonymousId",
    "previousId",
    "groupId",
    "event",
    "name",
    "properties",
    "traits",
    "context",
    "integrations",
    "timestamp",
    "originalTimestamp",
    "sentAt",
)

# What orjson.loads can produce: 64-bit integers (bigger ones arrive as floats), finite floats,
# text without lone surrogates.
json_integers = st.integers(min_value=-(2**63), max_value=2**64 - 1)
scalars = (
    st.none()
    | st.booleans()
    | json_integers
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
aware_times = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)
iso_times = st.one_of(
    aware_times.map(datetime.isoformat),
    st.datetimes().map(datetime.isoformat),  # naive
    st.text(max_size=30),
)
ids = st.one_of(
    st.text(max_size=300),
    json_integers,
    st.floats(allow_nan=False, allow_infinity=False),
    json_values,
)


@st.composite
def messages(draw: st.DrawFn) -> Any:
    """Objects that look like Segment messages, with any value in any known field."""
    message: dict[str, Any] = draw(st.dictionaries(st.text(max_size=8), json_values, max_size=3))
    for name in draw(st.sets(st.sampled_from(FIELDS))):
        if name == "type":
            value: Any = draw(st.sampled_from(sorted(CALL_TYPES)) | json_values)
        elif name in {"timestamp", "originalTimestamp", "sentAt"}:
            value = draw(iso_times | json_values)
        elif name in {"properties", "traits", "context", "integrations"}:
            value = draw(
                st.dictionaries(st.text(max_size=8), json_values, max_size=4) | json_values
            )
        else:
            value = draw(ids)
        message[name] = value
    return message


def roundtrip(value: Any) -> Any:
    """What the parser would hand over: the value as JSON, read back."""
    return orjson.loads(orjson.dumps(value))


@settings(max_examples=400, deadline=None)
@given(
    raw=messages() | json_values,
    call_type=st.none() | st.sampled_from(sorted(CALL_TYPES)),
    index=st.integers(min_value=0, max_value=10_000),
)
@example(
    raw={"type": "track", "userId": "u", "event": "e", "properties": {"a": "\x00"}},
    call_type=None,
    index=0,
)
@example(
    raw={"userId": "u", "originalTimestamp": "0001-01-01T00:00:00+05:00"},
    call_type="identify",
    index=0,
)
def test_validate_event_never_raises(raw: Any, call_type: str | None, index: int) -> None:
    raw = roundtrip(raw)

    outcome = validate_event(
        raw, index=index, call_type=call_type, received_at=RECEIVED, limits=LIMITS
    )

    if isinstance(outcome, EventError):
        assert outcome.index == index
        assert outcome.code
        assert outcome.detail
        assert set(outcome.as_dict()) == {"index", "messageId", "attr", "code", "detail"}
        return
    assert isinstance(outcome, EventRow)
    assert outcome.type in CALL_TYPES
    assert outcome.type == (call_type or raw["type"])
    assert 0 < len(outcome.message_id) <= MAX_ID_LENGTH
    assert outcome.user_id is not None or outcome.anonymous_id is not None
    for column in (outcome.properties, outcome.traits, outcome.context, outcome.integrations):
        assert isinstance(orjson.loads(column), dict)
        assert "\\u0000" not in column
    for text in (
        outcome.user_id,
        outcome.anonymous_id,
        outcome.event_name,
        outcome.group_id,
        outcome.previous_id,
        outcome.message_id,
    ):
        assert text is None or ("\x00" not in text and len(text) <= MAX_ID_LENGTH)
    # Every stored time can be read back by Python (and so by the events API and workers).
    for moment in (outcome.timestamp, outcome.original_timestamp, outcome.sent_at):
        if moment is not None:
            assert moment.utcoffset() == timedelta(0)
    assert outcome.timestamp <= RECEIVED + LIMITS.max_future_skew


@settings(max_examples=300, deadline=None)
@given(
    original=st.none() | aware_times,
    sent_at=st.none() | aware_times,
    skew_seconds=st.integers(min_value=0, max_value=86_400),
)
def test_corrected_timestamp_is_never_later_than_received_plus_skew(
    original: datetime | None, sent_at: datetime | None, skew_seconds: int
) -> None:
    limits = Limits(max_event_bytes=1, max_future_skew=timedelta(seconds=skew_seconds))
    try:
        timestamp, clamped = corrected_timestamp(
            original=original, sent_at=sent_at, received_at=RECEIVED, limits=limits
        )
    except OverflowError:
        assume(False)  # validate_event turns this into an invalid_timestamp error
        return

    assert timestamp <= RECEIVED + limits.max_future_skew
    if clamped or original is None:
        assert timestamp == RECEIVED
    elif sent_at is None:
        assert timestamp == original
    else:
        # The delay the client measured between event and send is preserved exactly.
        assert RECEIVED - timestamp == sent_at - original


@given(
    delay=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30)),
    clock_offset=st.timedeltas(min_value=timedelta(days=-365), max_value=timedelta(days=365)),
)
def test_any_client_clock_offset_is_cancelled_out(
    delay: timedelta, clock_offset: timedelta
) -> None:
    """A device clock that is off by any amount still gives the true event time."""
    sent_at = RECEIVED + clock_offset
    raw = {
        "type": "track",
        "userId": "u",
        "event": "e",
        "originalTimestamp": (sent_at - delay).isoformat(),
        "sentAt": sent_at.isoformat(),
    }

    row = validate_event(raw, index=0, call_type=None, received_at=RECEIVED, limits=LIMITS)

    assert isinstance(row, EventRow)
    assert row.timestamp == RECEIVED - delay
    assert row.clock_skew_clamped is False


@given(
    ahead=st.timedeltas(
        min_value=timedelta(minutes=5, microseconds=1), max_value=timedelta(days=3650)
    )
)
def test_future_time_without_sent_at_is_clamped(ahead: timedelta) -> None:
    raw = {"type": "identify", "userId": "u", "originalTimestamp": (RECEIVED + ahead).isoformat()}

    row = validate_event(raw, index=0, call_type=None, received_at=RECEIVED, limits=LIMITS)

    assert isinstance(row, EventRow)
    assert (row.timestamp, row.clock_skew_clamped) == (RECEIVED, True)


@given(text=st.text(alphabet=st.sampled_from('\\u0\x00a"'), max_size=24) | st.text())
@example(text="\\u0000")
@example(text="\\\x00")
def test_has_nul_is_exactly_a_nul_in_the_text(text: str) -> None:
    assert has_nul(orjson.dumps({text: text})) == ("\x00" in text)


@given(value=st.text(max_size=40) | json_values)
def test_batch_sent_at_never_raises(value: Any) -> None:
    parsed = batch_sent_at(roundtrip(value))

    assert parsed is None or parsed.tzinfo is not None


@given(
    user_id=st.text(min_size=1, max_size=MAX_ID_LENGTH).filter(
        lambda s: s.strip() and "\x00" not in s
    ),
    event=st.text(min_size=1, max_size=MAX_ID_LENGTH).filter(lambda s: "\x00" not in s),
)
def test_valid_track_keeps_its_identifiers(user_id: str, event: str) -> None:
    raw = {"type": "track", "userId": user_id, "event": event}

    row = validate_event(raw, index=0, call_type=None, received_at=RECEIVED, limits=LIMITS)

    assert isinstance(row, EventRow)
    assert (row.user_id, row.event_name) == (user_id.strip(), event)
    uuid.UUID(row.message_id)


@given(size=st.integers(min_value=0, max_value=3000))
def test_event_size_limit_is_exact(size: int) -> None:
    limits = Limits(max_event_bytes=1000, max_future_skew=timedelta(0))
    properties = {"p": "a" * size}
    encoded = sum(len(orjson.dumps(part)) for part in (properties, {}, {}, {}))

    outcome = validate_event(
        {"type": "track", "userId": "u", "event": "e", "properties": properties},
        index=3,
        call_type=None,
        received_at=RECEIVED,
        limits=limits,
    )

    if encoded > 1000:
        assert isinstance(outcome, EventError)
        assert (outcome.index, outcome.code) == (3, "event_too_large")
    else:
        assert isinstance(outcome, EventRow)


# --- CRM records ----------------------------------------------------------------------------------
RECORD_FIELDS = (
    "external_id",
    "email",
    "phone",
    "first_name",
    "last_name",
    "street",
    "city",
    "postcode",
    "country",
    "birth_date",
    "attributes",
    "address",
)


@st.composite
def records(draw: st.DrawFn) -> Any:
    record: dict[str, Any] = {}
    for name in draw(st.sets(st.sampled_from(RECORD_FIELDS))):
        if name == "birth_date":
            record[name] = draw(st.dates().map(date_text) | st.text(max_size=12) | json_values)
        elif name == "email":
            record[name] = draw(st.emails() | json_values)
        elif name == "address":
            record[name] = draw(
                st.fixed_dictionaries(
                    {},
                    optional={k: json_values for k in ("street", "city", "postal_code", "country")},
                )
                | json_values
            )
        else:
            record[name] = draw(json_values)
    if draw(st.booleans()):
        record[draw(st.text(max_size=6))] = draw(json_values)
    return record


def date_text(value: Any) -> str:
    return str(value.isoformat())


@settings(max_examples=400, deadline=None)
@given(raw=records() | json_values, extra=st.booleans(), index=st.integers(0, 999))
def test_validate_record_never_raises(raw: Any, extra: bool, index: int) -> None:
    raw = roundtrip(raw)

    outcome = validate_record(raw, index=index, extra_as_attributes=extra)

    if isinstance(outcome, RecordError):
        assert outcome.index == index
        assert outcome.code
        assert set(outcome.as_dict()) == {"index", "external_id", "attr", "code", "detail"}
        return
    assert isinstance(outcome, RecordRow)
    assert outcome.external_id and outcome.external_id == outcome.external_id.strip()
    assert isinstance(orjson.loads(outcome.attributes), dict)
    assert len(outcome.content_digest) == 64
    assert not outcome.email or "@" in outcome.email


@given(
    attributes=st.dictionaries(st.text(max_size=8), json_values, min_size=2, max_size=6),
    email=st.emails(),
)
def test_record_digest_ignores_key_order_and_whitespace(
    attributes: dict[str, Any], email: str
) -> None:
    reversed_attributes = dict(reversed(list(attributes.items())))
    first = validate_record(
        roundtrip({"external_id": "x", "email": email, "attributes": attributes}), index=0
    )
    second = validate_record(
        roundtrip(
            {"external_id": " x ", "email": f" {email}\n", "attributes": reversed_attributes}
        ),
        index=0,
    )

    if isinstance(first, RecordError):  # e.g. a NUL in an attribute: both must agree
        assert isinstance(second, RecordError)
        return
    assert isinstance(second, RecordRow)
    assert first.content_digest == second.content_digest


@given(
    field=st.sampled_from(
        [
            "email",
            "phone",
            "first_name",
            "last_name",
            "street",
            "city",
            "postcode",
            "country",
            "birth_date",
        ]
    ),
)
def test_record_digest_changes_with_every_field(field: str) -> None:
    base = {
        "external_id": "x",
        "email": "a@b.co",
        "phone": "+1 555 0100",
        "first_name": "A",
        "last_name": "B",
        "street": "1 St",
        "city": "C",
        "postcode": "123",
        "country": "GB",
        "birth_date": "1990-01-01",
    }
    changed = {
        **base,
        field: "1991-01-01"
        if field == "birth_date"
        else ("+1 555 0199" if field == "phone" else f"z{base[field]}"),
    }

    before = validate_record(base, index=0)
    after = validate_record(changed, index=0)

    assert isinstance(before, RecordRow)
    assert isinstance(after, RecordRow)
    assert before.content_digest != after.content_digest


@given(value=st.text(max_size=20).filter(lambda s: s.strip()))
def test_field_shifted_between_columns_changes_the_digest(value: str) -> None:
    """["a", "b"] and ["ab", ""] must not collide: values are hashed as a JSON list."""
    assume("\x00" not in value and "@" not in value)
    one = validate_record({"external_id": "x", "first_name": value, "last_name": "q"}, index=0)
    two = validate_record({"external_id": "x", "first_name": value + "q", "last_name": ""}, index=0)

    assert isinstance(one, RecordRow)
    assert isinstance(two, RecordRow)
    assert one.content_digest != two.content_digest


def test_unknown_fields_become_attributes_only_when_asked() -> None:
    raw = {"external_id": "x", "Favourite Colour": "blue", "attributes": {"tier": "gold"}}

    strict = validate_record(raw, index=0)
    lenient = validate_record(raw, index=0, extra_as_attributes=True)

    assert isinstance(strict, RecordError)
    assert (strict.attr, strict.code) == ("Favourite Colour", "unknown_field")
    assert isinstance(lenient, RecordRow)
    assert orjson.loads(lenient.attributes) == {"Favourite Colour": "blue", "tier": "gold"}
