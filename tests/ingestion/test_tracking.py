"""The Segment-compatible tracking API: /v1/{track,identify,alias,page,screen,group,batch}."""

from __future__ import annotations

import gzip
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import orjson
import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from cdp.ingestion.models import Event, IngestedMessage
from cdp.ingestion.services import (
    SourceWithKey,
    message_ids_prune,
    source_disable,
    source_rotate_write_key,
)
from tests.conftest import basic_auth, post_json, post_raw
from tests.ingestion.conftest import (
    assert_error_contract,
    client_for,
    event_traits_and_context,
    gzipped,
    ingest_settings,
    post_gzip,
    stored_events,
)

pytestmark = pytest.mark.django_db

OK_EMPTY = {"success": True, "accepted": 1, "duplicates": 0, "rejected": []}


def iso(moment: datetime) -> str:
    return moment.isoformat()


# --- every call type ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        (
            "/v1/track",
            {"userId": "u1", "event": "Order Completed", "properties": {"total": 9.5}},
            {
                "type": "track",
                "event_name": "Order Completed",
                "user_id": "u1",
                "properties": {"total": 9.5},
            },
        ),
        (
            "/v1/identify",
            {"userId": "u1", "traits": {"email": "a@example.com"}},
            {
                "type": "identify",
                "event_name": None,
                "user_id": "u1",
                "traits": {"email": "a@example.com"},
            },
        ),
        (
            "/v1/alias",
            {"previousId": "anon-1", "userId": "u1"},
            {"type": "alias", "previous_id": "anon-1", "user_id": "u1"},
        ),
        (
            "/v1/page",
            {"anonymousId": "anon-1", "name": "Pricing", "properties": {"path": "/pricing"}},
            {
                "type": "page",
                "event_name": "Pricing",
                "anonymous_id": "anon-1",
                "user_id": None,
                "properties": {"path": "/pricing"},
            },
        ),
        (
            "/v1/screen",
            {"userId": "u1", "name": "Home"},
            {"type": "screen", "event_name": "Home", "user_id": "u1"},
        ),
        (
            "/v1/group",
            {"userId": "u1", "groupId": "acme", "traits": {"plan": "pro"}},
            {"type": "group", "group_id": "acme", "user_id": "u1", "traits": {"plan": "pro"}},
        ),
    ],
)
def test_each_call_type_is_stored(
    tracking_client: APIClient,
    source: SourceWithKey,
    path: str,
    body: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    response = post_json(tracking_client, path, {**body, "messageId": "m-1"})

    assert response.status_code == 200, response.json()
    assert response.json() == OK_EMPTY
    [event] = stored_events()
    assert event.source_id == source.source.pk
    assert event.message_id == "m-1"
    traits, _ = event_traits_and_context(event)
    for column, value in expected.items():
        stored = traits if column == "traits" else getattr(event, column)
        assert stored == value, column
    assert IngestedMessage.objects.filter(source=source.source, message_id="m-1").count() == 1


def test_single_call_endpoint_fixes_the_type(tracking_client: APIClient) -> None:
    """A body's own ``type`` cannot turn a /v1/track call into another call type."""
    response = post_json(tracking_client, "/v1/track", {"type": "identify", "userId": "u1"})

    assert response.status_code == 400
    assert response.json()["errors"][0]["attr"] == "event"
    assert not Event.objects.exists()


def test_numeric_ids_are_stored_as_text(tracking_client: APIClient) -> None:
    response = post_json(tracking_client, "/v1/identify", {"userId": 42, "messageId": 7})

    assert response.status_code == 200
    [event] = stored_events()
    assert (event.user_id, event.message_id) == ("42", "7")


@pytest.mark.parametrize("path", ["/v1/track", "/v1/identify", "/v1/page", "/v1/screen"])
def test_anonymous_id_alone_identifies_the_caller(tracking_client: APIClient, path: str) -> None:
    response = post_json(tracking_client, path, {"anonymousId": "anon-7", "event": "Clicked"})

    assert response.status_code == 200, response.json()
    [event] = stored_events()
    assert (event.anonymous_id, event.user_id) == ("anon-7", None)


@pytest.mark.parametrize(
    ("path", "body", "attr", "code"),
    [
        ("/v1/track", {"userId": "u1"}, "event", "required"),
        ("/v1/track", {"userId": "u1", "event": ""}, "event", "required"),
        ("/v1/track", {"userId": "u1", "event": 5}, "event", "invalid_string"),
        ("/v1/track", {"event": "Clicked"}, "userId", "required"),
        ("/v1/identify", {"traits": {"a": 1}}, "userId", "required"),
        ("/v1/identify", {"userId": "   "}, "userId", "required"),
        ("/v1/identify", {"userId": {"id": 1}}, "userId", "invalid_id"),
        ("/v1/identify", {"userId": True}, "userId", "invalid_id"),
        ("/v1/identify", {"userId": "x" * 256}, "userId", "too_long"),
        (
            "/v1/identify",
            {"userId": "u1", "traits": ["not", "an", "object"]},
            "traits",
            "not_an_object",
        ),
        ("/v1/page", {"name": "Home"}, "userId", "required"),
        ("/v1/page", {"userId": "u1", "name": 3}, "name", "invalid_string"),
        ("/v1/screen", {"name": "Home"}, "userId", "required"),
        ("/v1/group", {"userId": "u1"}, "groupId", "required"),
        ("/v1/group", {"groupId": "acme"}, "userId", "required"),
        ("/v1/alias", {"userId": "u1"}, "previousId", "required"),
        ("/v1/alias", {"previousId": "anon-1"}, "userId", "required"),
        ("/v1/alias", {"previousId": "anon-1", "anonymousId": "anon-2"}, "userId", "required"),
        (
            "/v1/identify",
            {"userId": "u1", "originalTimestamp": "yesterday"},
            "originalTimestamp",
            "invalid_timestamp",
        ),
        ("/v1/identify", {"userId": "u1", "sentAt": 1700000000}, "sentAt", "invalid_timestamp"),
    ],
)
def test_required_fields_per_call_type(
    tracking_client: APIClient, path: str, body: dict[str, Any], attr: str, code: str
) -> None:
    response = post_json(tracking_client, path, {**body, "messageId": "m-bad"})

    assert response.status_code == 400
    payload = response.json()
    assert_error_contract(payload, with_errors=True)
    assert (payload["type"], payload["code"]) == ("validation_error", "invalid_events")
    assert payload["errors"] == [
        {"index": 0, "messageId": "m-bad", "attr": attr, "code": code, "detail": mock.ANY}
    ]
    assert not Event.objects.exists()
    assert not IngestedMessage.objects.exists(), "a rejected message must not block a fixed resend"


def test_a_rejected_message_can_be_resent_fixed(tracking_client: APIClient) -> None:
    assert (
        post_json(tracking_client, "/v1/track", {"userId": "u1", "messageId": "m"}).status_code
        == 400
    )

    response = post_json(
        tracking_client, "/v1/track", {"userId": "u1", "event": "E", "messageId": "m"}
    )

    assert response.json() == OK_EMPTY
    assert Event.objects.count() == 1


def test_non_object_body_is_rejected(tracking_client: APIClient) -> None:
    response = post_json(tracking_client, "/v1/track", [{"userId": "u1", "event": "E"}])

    assert response.status_code == 400
    assert_error_contract(response.json())
    assert response.json()["code"] == "not_an_object"


def test_get_on_a_tracking_endpoint_is_405(tracking_client: APIClient) -> None:
    response = tracking_client.get("/v1/track")

    assert response.status_code == 405
    assert_error_contract(response.json())
    assert response.json()["code"] == "method_not_allowed"


# --- batch ----------------------------------------------------------------------------------------
def test_batch_stores_every_call_type(tracking_client: APIClient) -> None:
    batch = [
        {"type": "track", "userId": "u1", "event": "Signed Up", "messageId": "b1"},
        {"type": "identify", "userId": "u1", "traits": {"plan": "pro"}, "messageId": "b2"},
        {"type": "alias", "previousId": "anon-1", "userId": "u1", "messageId": "b3"},
        {"type": "page", "anonymousId": "anon-1", "name": "Home", "messageId": "b4"},
        {"type": "screen", "userId": "u1", "name": "Settings", "messageId": "b5"},
        {"type": "group", "userId": "u1", "groupId": "acme", "messageId": "b6"},
    ]

    response = post_json(tracking_client, "/v1/batch", {"batch": batch})

    assert response.status_code == 200
    assert response.json() == {"success": True, "accepted": 6, "duplicates": 0, "rejected": []}
    by_id = {event.message_id: event for event in stored_events()}
    assert {mid: e.type for mid, e in by_id.items()} == {
        "b1": "track",
        "b2": "identify",
        "b3": "alias",
        "b4": "page",
        "b5": "screen",
        "b6": "group",
    }
    assert by_id["b1"].event_name == "Signed Up"
    assert by_id["b3"].previous_id == "anon-1"
    assert by_id["b4"].event_name == "Home"
    assert by_id["b6"].group_id == "acme"


def test_batch_with_mixed_valid_and_invalid_events(tracking_client: APIClient) -> None:
    batch = [
        {"type": "track", "userId": "u1", "event": "Viewed", "messageId": "ok-1"},
        {"type": "track", "userId": "u1", "messageId": "bad-1"},
        {"type": "identify", "anonymousId": "anon-1", "messageId": "ok-2"},
        "not an object",
        {"type": "purchase", "userId": "u1", "messageId": "bad-3"},
        {"userId": "u1", "event": "No type"},
        {"type": "group", "userId": "u1", "messageId": "bad-5"},
        {"type": ["track"], "userId": "u1", "event": "E", "messageId": "bad-6"},
        {"type": {"track": 1}, "userId": "u1", "event": "E"},
    ]

    response = post_json(tracking_client, "/v1/batch", {"batch": batch})

    assert response.status_code == 200
    body = response.json()
    assert (body["success"], body["accepted"], body["duplicates"]) == (True, 2, 0)
    assert [(e["index"], e["messageId"], e["attr"], e["code"]) for e in body["rejected"]] == [
        (1, "bad-1", "event", "required"),
        (3, None, None, "not_an_object"),
        (4, "bad-3", "type", "invalid_type"),
        (5, None, "type", "invalid_type"),
        (6, "bad-5", "groupId", "required"),
        (7, "bad-6", "type", "invalid_type"),
        (8, None, "type", "invalid_type"),
    ]
    assert all(error["detail"] for error in body["rejected"])
    assert sorted(e.message_id for e in stored_events()) == ["ok-1", "ok-2"]


def test_batch_where_every_event_is_invalid_is_400_with_per_event_errors(
    tracking_client: APIClient,
) -> None:
    batch = [
        {"type": "track", "userId": "u1"},
        {"type": "alias", "userId": "u1", "messageId": "a"},
        {"type": "identify"},
    ]

    response = post_json(tracking_client, "/v1/batch", {"batch": batch})

    assert response.status_code == 400
    body = response.json()
    assert_error_contract(body, with_errors=True)
    assert (body["type"], body["code"], body["attr"]) == (
        "validation_error",
        "invalid_events",
        None,
    )
    assert [(e["index"], e["attr"]) for e in body["errors"]] == [
        (0, "event"),
        (1, "previousId"),
        (2, "userId"),
    ]
    assert body["errors"][1]["messageId"] == "a"
    assert not Event.objects.exists()


@pytest.mark.parametrize(
    "body", [{}, {"batch": []}, {"batch": {"type": "track"}}, {"batch": "x"}, {"batch": None}]
)
def test_batch_needs_a_non_empty_list(tracking_client: APIClient, body: dict[str, Any]) -> None:
    response = post_json(tracking_client, "/v1/batch", body)

    assert response.status_code == 400
    assert_error_contract(response.json())
    assert response.json()["attr"] == "batch"


def test_batch_context_is_merged_and_the_event_context_wins(tracking_client: APIClient) -> None:
    body = {
        "context": {"library": {"name": "analytics-python"}, "ip": "10.0.0.1"},
        "batch": [
            {"type": "track", "userId": "u1", "event": "E", "context": {"ip": "10.0.0.2"}},
            {"type": "track", "userId": "u1", "event": "F"},
        ],
    }

    assert post_json(tracking_client, "/v1/batch", body).status_code == 200

    contexts = {e.event_name: event_traits_and_context(e)[1] for e in stored_events()}
    assert contexts["E"] == {"library": {"name": "analytics-python"}, "ip": "10.0.0.2"}
    assert contexts["F"] == {"library": {"name": "analytics-python"}, "ip": "10.0.0.1"}


# --- idempotency ----------------------------------------------------------------------------------
def test_retrying_a_message_stores_it_once(tracking_client: APIClient) -> None:
    body = {"userId": "u1", "event": "Paid", "messageId": "retry-1"}

    first = post_json(tracking_client, "/v1/track", body)
    second = post_json(tracking_client, "/v1/track", body)

    assert first.json() == OK_EMPTY
    assert second.json() == {"success": True, "accepted": 0, "duplicates": 1, "rejected": []}
    assert Event.objects.filter(message_id="retry-1").count() == 1
    assert IngestedMessage.objects.count() == 1


def test_retrying_a_batch_stores_nothing_twice(tracking_client: APIClient) -> None:
    body = {
        "batch": [{"type": "identify", "userId": f"u{i}", "messageId": f"m{i}"} for i in range(5)]
    }

    assert post_json(tracking_client, "/v1/batch", body).json()["accepted"] == 5
    again = post_json(tracking_client, "/v1/batch", body).json()

    assert (again["accepted"], again["duplicates"]) == (0, 5)
    assert Event.objects.count() == 5


def test_partially_new_batch_stores_only_the_new_messages(tracking_client: APIClient) -> None:
    post_json(tracking_client, "/v1/identify", {"userId": "u1", "messageId": "old"})
    body = {
        "batch": [
            {"type": "identify", "userId": "u1", "messageId": "old"},
            {"type": "identify", "userId": "u2", "messageId": "new"},
        ]
    }

    result = post_json(tracking_client, "/v1/batch", body).json()

    assert (result["accepted"], result["duplicates"]) == (1, 1)
    assert sorted(e.message_id for e in stored_events()) == ["new", "old"]


def test_same_message_id_twice_in_one_batch_keeps_the_first(tracking_client: APIClient) -> None:
    body = {
        "batch": [
            {"type": "track", "userId": "u1", "event": "First", "messageId": "dup"},
            {"type": "track", "userId": "u1", "event": "Second", "messageId": "dup"},
        ]
    }

    result = post_json(tracking_client, "/v1/batch", body).json()

    assert (result["accepted"], result["duplicates"], result["rejected"]) == (1, 1, [])
    [event] = stored_events()
    assert event.event_name == "First"


def test_same_message_id_from_two_sources_is_two_events(
    tracking_client: APIClient,
    other_client: APIClient,
    source: SourceWithKey,
    other_source: SourceWithKey,
) -> None:
    body = {"userId": "u1", "event": "E", "messageId": "shared"}

    assert post_json(tracking_client, "/v1/track", body).json() == OK_EMPTY
    assert post_json(other_client, "/v1/track", body).json() == OK_EMPTY

    rows = Event.objects.filter(message_id="shared")
    assert sorted(rows.values_list("source_id", flat=True)) == sorted(
        [source.source.pk, other_source.source.pk]
    )


def test_message_past_the_dedupe_window_is_stored_again(tracking_client: APIClient) -> None:
    body = {"userId": "u1", "event": "E", "messageId": "old-news"}
    post_json(tracking_client, "/v1/track", body)
    IngestedMessage.objects.update(received_at=timezone.now() - timedelta(days=8))

    response = post_json(tracking_client, "/v1/track", body)

    assert response.json() == OK_EMPTY
    assert Event.objects.filter(message_id="old-news").count() == 2
    [seen] = IngestedMessage.objects.all()
    assert timezone.now() - seen.received_at < timedelta(minutes=1), "the window restarts"
    # ...so a retry right after is a duplicate again.
    assert post_json(tracking_client, "/v1/track", body).json()["duplicates"] == 1


def test_message_inside_the_dedupe_window_stays_a_duplicate(tracking_client: APIClient) -> None:
    body = {"userId": "u1", "event": "E", "messageId": "recent"}
    post_json(tracking_client, "/v1/track", body)
    IngestedMessage.objects.update(received_at=timezone.now() - timedelta(days=6))

    assert post_json(tracking_client, "/v1/track", body).json()["duplicates"] == 1
    assert Event.objects.count() == 1


def test_dedupe_window_is_configurable(tracking_client: APIClient) -> None:
    body = {"userId": "u1", "event": "E", "messageId": "m"}
    post_json(tracking_client, "/v1/track", body)
    IngestedMessage.objects.update(received_at=timezone.now() - timedelta(hours=2))

    with ingest_settings(DEDUPE_WINDOW=timedelta(days=7)):
        assert post_json(tracking_client, "/v1/track", body).json()["duplicates"] == 1
    with ingest_settings(DEDUPE_WINDOW=timedelta(hours=1)):
        assert post_json(tracking_client, "/v1/track", body).json()["accepted"] == 1

    assert Event.objects.count() == 2


def test_prune_deletes_only_dedupe_rows_past_the_window(tracking_client: APIClient) -> None:
    for message_id in ("a", "b", "c"):
        post_json(tracking_client, "/v1/identify", {"userId": "u1", "messageId": message_id})
    IngestedMessage.objects.filter(message_id__in=["a", "b"]).update(
        received_at=timezone.now() - timedelta(days=30)
    )

    assert message_ids_prune() == 2

    assert list(IngestedMessage.objects.values_list("message_id", flat=True)) == ["c"]
    assert Event.objects.count() == 3, "pruning touches only the dedupe table"


def test_missing_message_id_gets_a_generated_one(tracking_client: APIClient) -> None:
    body = {"userId": "u1", "event": "No id"}

    assert post_json(tracking_client, "/v1/track", body).json() == OK_EMPTY
    assert post_json(tracking_client, "/v1/track", body).json() == OK_EMPTY

    ids = [event.message_id for event in stored_events()]
    assert len(set(ids)) == 2
    for message_id in ids:
        uuid.UUID(message_id)


def test_blank_message_id_gets_a_generated_one(tracking_client: APIClient) -> None:
    post_json(tracking_client, "/v1/track", {"userId": "u1", "event": "E", "messageId": "  "})

    [event] = stored_events()
    uuid.UUID(event.message_id)


# --- gzip -----------------------------------------------------------------------------------------
def test_gzip_body_is_accepted(tracking_client: APIClient) -> None:
    body = {"batch": [{"type": "track", "userId": "u1", "event": "Zipped", "messageId": "z"}]}

    response = post_gzip(tracking_client, "/v1/batch", gzipped(body))

    assert response.status_code == 200
    assert response.json()["accepted"] == 1
    assert stored_events()[0].event_name == "Zipped"


def test_gzip_body_with_write_key_inside(write_key: str) -> None:
    body = {"writeKey": write_key, "userId": "u1", "event": "Zipped"}

    response = post_gzip(APIClient(), "/v1/track", gzipped(body))

    assert response.status_code == 200
    assert Event.objects.count() == 1


@pytest.mark.parametrize(
    "raw",
    [
        b'{"userId": "u1", "event": "plain"}',
        gzip.compress(b'{"userId": "u1", "event": "cut short"}')[:-12],
        gzip.compress(b'{"userId": "u1"')[:10] + b"garbage" * 5,
    ],
    ids=["not-gzip", "truncated", "corrupt"],
)
def test_bad_gzip_is_400(tracking_client: APIClient, raw: bytes) -> None:
    response = post_gzip(tracking_client, "/v1/track", raw)

    assert response.status_code == 400
    assert_error_contract(response.json())
    assert response.json()["code"] == "parse_error"
    assert not Event.objects.exists()


def test_gzip_bomb_is_413_before_it_is_inflated(tracking_client: APIClient) -> None:
    inflated = b'{"batch": [], "padding": "' + b"a" * (50 * 1024 * 1024) + b'"}'
    bomb = gzip.compress(inflated, compresslevel=9)
    assert len(bomb) < 100 * 1024

    response = post_gzip(tracking_client, "/v1/batch", bomb)

    assert response.status_code == 413
    assert_error_contract(response.json())
    assert response.json()["code"] == "body_too_large"


def test_gzip_limit_applies_to_the_inflated_size(tracking_client: APIClient) -> None:
    body = {"userId": "u1", "event": "E", "properties": {"blob": "a" * 40_000}}
    raw = gzipped(body)
    assert len(raw) < 32 * 1024

    response = post_gzip(tracking_client, "/v1/track", raw)

    assert response.status_code == 413


def test_unsupported_content_encoding_is_415(tracking_client: APIClient) -> None:
    response = post_raw(tracking_client, "/v1/track", b"{}", HTTP_CONTENT_ENCODING="br")

    assert response.status_code == 415
    assert_error_contract(response.json())


# --- clock skew -----------------------------------------------------------------------------------
def test_timestamp_is_corrected_for_client_clock_skew(tracking_client: APIClient) -> None:
    client_now = timezone.now() + timedelta(hours=3)  # the device clock runs 3 hours fast
    body = {
        "userId": "u1",
        "event": "E",
        "originalTimestamp": iso(client_now - timedelta(minutes=10)),
        "sentAt": iso(client_now),
    }

    post_json(tracking_client, "/v1/track", body)

    [event] = stored_events()
    assert event.timestamp == event.received_at - timedelta(minutes=10)
    assert event.original_timestamp == client_now - timedelta(minutes=10)
    assert event.sent_at == client_now
    assert event.clock_skew_clamped is False


def test_batch_level_sent_at_applies_to_events_without_their_own(
    tracking_client: APIClient,
) -> None:
    client_now = timezone.now() - timedelta(days=2)  # the device clock runs 2 days slow
    body = {
        "sentAt": iso(client_now),
        "batch": [
            {
                "type": "track",
                "userId": "u1",
                "event": "Batch sentAt",
                "originalTimestamp": iso(client_now - timedelta(seconds=30)),
            },
            {
                "type": "track",
                "userId": "u1",
                "event": "Own sentAt",
                "originalTimestamp": iso(client_now - timedelta(seconds=30)),
                "sentAt": iso(client_now - timedelta(seconds=20)),
            },
        ],
    }

    post_json(tracking_client, "/v1/batch", body)

    events = {e.event_name: e for e in stored_events()}
    by_batch, own = events["Batch sentAt"], events["Own sentAt"]
    assert by_batch.timestamp == by_batch.received_at - timedelta(seconds=30)
    assert by_batch.sent_at == client_now
    assert own.timestamp == own.received_at - timedelta(seconds=10)


def test_unreadable_batch_sent_at_is_ignored(tracking_client: APIClient) -> None:
    original = timezone.now() - timedelta(hours=1)
    body = {
        "sentAt": "not a time",
        "batch": [
            {"type": "track", "userId": "u1", "event": "E", "originalTimestamp": iso(original)},
        ],
    }

    assert post_json(tracking_client, "/v1/batch", body).json()["accepted"] == 1

    [event] = stored_events()
    assert (event.timestamp, event.sent_at) == (original, None)


def test_timestamp_is_used_when_original_timestamp_is_missing(tracking_client: APIClient) -> None:
    client_now = timezone.now() + timedelta(hours=1)
    body = {
        "userId": "u1",
        "event": "E",
        "timestamp": iso(client_now - timedelta(minutes=5)),
        "sentAt": iso(client_now),
    }

    post_json(tracking_client, "/v1/track", body)

    [event] = stored_events()
    assert event.timestamp == event.received_at - timedelta(minutes=5)


def test_no_timestamp_means_received_at(tracking_client: APIClient) -> None:
    post_json(tracking_client, "/v1/track", {"userId": "u1", "event": "E"})

    [event] = stored_events()
    assert event.timestamp == event.received_at
    assert (event.original_timestamp, event.clock_skew_clamped) == (None, False)


def test_future_timestamp_is_clamped_to_received_at(tracking_client: APIClient) -> None:
    future = timezone.now() + timedelta(days=1)

    post_json(
        tracking_client,
        "/v1/track",
        {"userId": "u1", "event": "E", "originalTimestamp": iso(future)},
    )

    [event] = stored_events()
    assert event.timestamp == event.received_at
    assert event.clock_skew_clamped is True
    assert event.original_timestamp == future, "the client's value is kept for diagnosis"


def test_future_timestamp_within_the_allowed_skew_is_kept(tracking_client: APIClient) -> None:
    soon = timezone.now() + timedelta(seconds=60)

    post_json(
        tracking_client, "/v1/track", {"userId": "u1", "event": "E", "originalTimestamp": iso(soon)}
    )

    [event] = stored_events()
    assert (event.timestamp, event.clock_skew_clamped) == (soon, False)


def test_allowed_future_skew_is_configurable(tracking_client: APIClient) -> None:
    soon = timezone.now() + timedelta(seconds=60)

    with ingest_settings(MAX_FUTURE_SKEW=timedelta(seconds=5)):
        post_json(
            tracking_client,
            "/v1/track",
            {"userId": "u1", "event": "E", "originalTimestamp": iso(soon)},
        )

    [event] = stored_events()
    assert event.clock_skew_clamped is True
    assert event.timestamp == event.received_at


def test_clamped_flag_is_visible_in_the_events_api(
    tracking_client: APIClient, api_client: Any
) -> None:
    future = timezone.now() + timedelta(days=3)
    post_json(
        tracking_client,
        "/v1/track",
        {"userId": "u1", "event": "E", "originalTimestamp": iso(future)},
    )

    [row] = api_client("events:read").get("/v1/events").json()["results"]

    assert row["clockSkewClamped"] is True
    assert row["timestamp"] == row["receivedAt"]


def test_naive_timestamp_is_read_as_utc(tracking_client: APIClient) -> None:
    post_json(
        tracking_client,
        "/v1/track",
        {"userId": "u1", "event": "E", "originalTimestamp": "2024-05-01T12:00:00"},
    )

    [event] = stored_events()
    assert event.timestamp == datetime(2024, 5, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    ["2024-05-01T12:00:00+05:30:15", "2024-05-01T12:00:00.250000-03:00:00.5", "2024-05-01"],
)
def test_client_time_is_stored_to_the_microsecond_whatever_its_offset(
    tracking_client: APIClient, value: str
) -> None:
    post_json(
        tracking_client, "/v1/track", {"userId": "u1", "event": "E", "originalTimestamp": value}
    )

    [event] = stored_events()
    sent = datetime.fromisoformat(value)
    sent = sent if sent.tzinfo else sent.replace(tzinfo=UTC)
    assert event.original_timestamp == sent
    assert event.timestamp == sent


@pytest.mark.parametrize(
    "value",
    ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"],
    ids=["year-0", "year-10000"],
)
def test_timestamp_outside_the_readable_range_is_rejected(
    tracking_client: APIClient, api_client: Any, value: str
) -> None:
    """Such a value converts to year 0 / 10000 in UTC: PostgreSQL would store it, but reading
    the event back (the events API, the workers) would fail."""
    response = post_json(
        tracking_client, "/v1/track", {"userId": "u1", "event": "E", "originalTimestamp": value}
    )

    assert response.status_code == 400
    assert response.json()["errors"][0]["attr"] == "originalTimestamp"
    assert api_client("events:read").get("/v1/events").status_code == 200


# --- size limits ----------------------------------------------------------------------------------
def test_single_call_over_32kb_is_413(tracking_client: APIClient) -> None:
    body = {"userId": "u1", "event": "E", "properties": {"blob": "a" * (33 * 1024)}}

    response = post_json(tracking_client, "/v1/track", body)

    assert response.status_code == 413
    assert_error_contract(response.json())
    assert response.json()["code"] == "body_too_large"
    assert not Event.objects.exists()


def test_single_call_just_under_the_limit_is_accepted(tracking_client: APIClient) -> None:
    body = {"userId": "u1", "event": "E", "properties": {"blob": "a" * (31 * 1024)}}

    assert post_json(tracking_client, "/v1/track", body).status_code == 200


def test_batch_body_over_500kb_is_413(tracking_client: APIClient) -> None:
    batch = [
        {"type": "track", "userId": "u1", "event": "E", "properties": {"blob": "a" * 20_000}}
        for _ in range(30)
    ]

    response = post_json(tracking_client, "/v1/batch", {"batch": batch})

    assert response.status_code == 413
    assert response.json()["code"] == "body_too_large"
    assert not Event.objects.exists()


def test_oversize_event_inside_a_batch_is_rejected_alone(tracking_client: APIClient) -> None:
    batch = [
        {
            "type": "track",
            "userId": "u1",
            "event": "Huge",
            "messageId": "huge",
            "properties": {"blob": "a" * (40 * 1024)},
        },
        {"type": "track", "userId": "u1", "event": "Small", "messageId": "small"},
    ]

    response = post_json(tracking_client, "/v1/batch", {"batch": batch})

    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == 1
    assert [(e["index"], e["messageId"], e["code"]) for e in body["rejected"]] == [
        (0, "huge", "event_too_large")
    ]
    assert [e.message_id for e in stored_events()] == ["small"]


def test_batch_of_only_oversize_events_is_413_with_per_event_errors(
    tracking_client: APIClient,
) -> None:
    batch = [
        {"type": "identify", "userId": "u1", "traits": {"blob": "a" * (40 * 1024)}}
        for _ in range(2)
    ]

    response = post_json(tracking_client, "/v1/batch", {"batch": batch})

    assert response.status_code == 413
    body = response.json()
    assert_error_contract(body, with_errors=True)
    assert body["code"] == "event_too_large"
    assert [e["index"] for e in body["errors"]] == [0, 1]


def test_size_limits_are_configurable(tracking_client: APIClient) -> None:
    small = {"userId": "u1", "event": "E", "properties": {"blob": "a" * 1500}}
    with ingest_settings(MAX_EVENT_BYTES=1024):
        assert post_json(tracking_client, "/v1/track", small).status_code == 413
        batch = {
            "batch": [{"type": "track", **small}, {"type": "track", "userId": "u1", "event": "ok"}]
        }
        result = post_json(tracking_client, "/v1/batch", batch).json()
        assert [e["code"] for e in result["rejected"]] == ["event_too_large"]
    with ingest_settings(MAX_BATCH_BYTES=1024):
        response = post_json(tracking_client, "/v1/batch", {"batch": [{"type": "track", **small}]})
        assert response.status_code == 413
    assert post_json(tracking_client, "/v1/track", small).status_code == 200


# --- authentication -------------------------------------------------------------------------------
def assert_401(response: Any) -> None:
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Basic realm="cdp"'
    assert_error_contract(response.json())
    assert response.json()["type"] == "client_error"


def test_missing_write_key_is_401(db: None) -> None:
    assert_401(post_json(APIClient(), "/v1/track", {"userId": "u1", "event": "E"}))
    assert not Event.objects.exists()


@pytest.mark.parametrize(
    "authorization",
    [
        basic_auth("wk_not-a-real-key"),
        "Basic !!!not-base64!!!",
        "Basic " + "//79".strip(),  # valid base64, not UTF-8
        "Bearer cdp_something",
    ],
)
def test_bad_write_key_is_401(source: SourceWithKey, authorization: str) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=authorization)

    assert_401(post_json(client, "/v1/track", {"userId": "u1", "event": "E"}))
    assert not Event.objects.exists()


def test_bearer_api_token_does_not_open_the_tracking_api(make_token: Any) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_token('events:read')}")

    assert_401(post_json(client, "/v1/track", {"userId": "u1", "event": "E"}))


def test_disabled_source_is_401_even_with_a_warm_key_cache(
    tracking_client: APIClient, source: SourceWithKey, django_capture_on_commit_callbacks: Any
) -> None:
    body = {"userId": "u1", "event": "E"}
    assert post_json(tracking_client, "/v1/track", body).status_code == 200

    with django_capture_on_commit_callbacks(execute=True):  # the cache clears on commit
        source_disable(source=source.source)

    assert_401(post_json(tracking_client, "/v1/track", body))
    assert Event.objects.count() == 1


def test_rotated_write_key_replaces_the_old_one(
    tracking_client: APIClient, source: SourceWithKey, django_capture_on_commit_callbacks: Any
) -> None:
    body = {"userId": "u1", "event": "E"}
    assert post_json(tracking_client, "/v1/track", body).status_code == 200

    with django_capture_on_commit_callbacks(execute=True):  # the cache clears on commit
        rotated = source_rotate_write_key(source=source.source)

    assert_401(post_json(tracking_client, "/v1/track", body))
    assert post_json(client_for(rotated.write_key), "/v1/track", body).status_code == 200


def test_write_key_in_the_body_is_accepted(write_key: str, source: SourceWithKey) -> None:
    client = APIClient()

    single = post_json(client, "/v1/track", {"writeKey": write_key, "userId": "u1", "event": "E"})
    batch = post_json(
        client,
        "/v1/batch",
        {
            "writeKey": write_key,
            "batch": [{"type": "identify", "userId": "u2"}],
        },
    )

    assert (single.status_code, batch.status_code) == (200, 200)
    assert set(Event.objects.values_list("source_id", flat=True)) == {source.source.pk}
    assert Event.objects.count() == 2


def test_wrong_write_key_in_the_body_is_401(source: SourceWithKey) -> None:
    assert_401(
        post_json(APIClient(), "/v1/track", {"writeKey": "wk_nope", "userId": "u1", "event": "E"})
    )


# --- content type, malformed JSON, NUL ------------------------------------------------------------
@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"]
)
def test_non_json_content_type_is_415(tracking_client: APIClient, content_type: str) -> None:
    response = post_raw(
        tracking_client, "/v1/track", b'{"userId": "u1", "event": "E"}', content_type=content_type
    )

    assert response.status_code == 415
    assert_error_contract(response.json())
    assert response.json()["code"] == "unsupported_media_type"
    assert not Event.objects.exists()


def test_json_with_charset_is_accepted(tracking_client: APIClient) -> None:
    response = post_raw(
        tracking_client,
        "/v1/track",
        b'{"userId": "u1", "event": "E"}',
        content_type="application/json; charset=utf-8",
    )

    assert response.status_code == 200


@pytest.mark.parametrize(
    "raw",
    [b'{"userId": "u1", "event": ', b"{'userId': 'u1'}", b'{"a": NaN}', b'"\\ud800"', b"\xff\xfe"],
)
def test_malformed_json_is_400(tracking_client: APIClient, raw: bytes) -> None:
    response = post_raw(tracking_client, "/v1/track", raw)

    assert response.status_code == 400
    body = response.json()
    assert_error_contract(body)
    assert (body["type"], body["code"]) == ("client_error", "parse_error")
    assert "Malformed JSON" in body["detail"]


def test_malformed_json_without_basic_auth_is_still_an_error_not_a_500(db: None) -> None:
    response = post_raw(APIClient(), "/v1/track", b"{oops")

    assert response.status_code == 400
    assert_error_contract(response.json())
    assert response.json()["code"] == "parse_error"


@pytest.mark.parametrize(
    ("body", "attr"),
    [
        ({"userId": "u1", "event": "E", "properties": {"note": "a\x00b"}}, "properties"),
        ({"userId": "u1", "event": "E", "properties": {"k\x00": 1}}, "properties"),
        ({"userId": "u1", "event": "E", "context": {"nested": [{"x": "\x00"}]}}, "context"),
        ({"userId": "u\x001", "event": "E"}, "userId"),
        ({"userId": "u1", "event": "E\x00"}, "event"),
        ({"userId": "u1", "event": "E", "messageId": "m\x00"}, "messageId"),
    ],
)
def test_nul_characters_are_rejected_not_a_500(
    tracking_client: APIClient, body: dict[str, Any], attr: str
) -> None:
    response = post_json(tracking_client, "/v1/track", body)

    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert (error["attr"], error["code"]) == (attr, "null_character")
    assert not Event.objects.exists()


def test_text_showing_the_nul_escape_is_not_a_nul(tracking_client: APIClient) -> None:
    """A backslash followed by u0000 (a regex, a code sample) is ordinary text."""
    properties = {"pattern": "\\u0000", "path": "C:\\\\u0000x", "k\\u0000": 1}

    response = post_json(
        tracking_client, "/v1/track", {"userId": "u1", "event": "E", "properties": properties}
    )

    assert response.json() == OK_EMPTY
    assert stored_events()[0].properties == properties


def test_nul_in_one_batch_event_rejects_only_that_event(tracking_client: APIClient) -> None:
    body = {
        "batch": [
            {"type": "identify", "userId": "u1", "traits": {"name": "\x00"}},
            {"type": "identify", "userId": "u2"},
        ]
    }

    result = post_json(tracking_client, "/v1/batch", body).json()

    assert result["accepted"] == 1
    assert [(e["index"], e["attr"], e["code"]) for e in result["rejected"]] == [
        (0, "traits", "null_character")
    ]


def test_unicode_survives_the_round_trip(tracking_client: APIClient) -> None:
    properties = {"name": "Zoë 🚀 北京", "emoji_key_😀": ["ü", {"ß": None}], "big": 2**63 - 1}

    post_json(
        tracking_client, "/v1/track", {"userId": "ü-1", "event": "Kauf ✓", "properties": properties}
    )

    [event] = stored_events()
    assert (event.user_id, event.event_name, event.properties) == ("ü-1", "Kauf ✓", properties)


# --- rate limit -----------------------------------------------------------------------------------
class _FrozenClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


def test_rate_limit_is_429_with_retry_after(
    tracking_client: APIClient, other_client: APIClient
) -> None:
    body = {"userId": "u1", "event": "E"}
    clock = _FrozenClock(1_700_000_000.25)
    with ingest_settings(RATE_LIMIT_PER_SOURCE=2), mock.patch("cdp.api.throttling.time", clock):
        statuses = [post_json(tracking_client, "/v1/track", body).status_code for _ in range(2)]
        limited = post_json(tracking_client, "/v1/track", body)
        other = post_json(other_client, "/v1/track", body)
        clock.now += 1
        next_second = post_json(tracking_client, "/v1/track", body)

    assert statuses == [200, 200]
    assert limited.status_code == 429
    assert limited["Retry-After"] == "1"
    assert_error_contract(limited.json())
    assert limited.json()["code"] == "throttled"
    assert other.status_code == 200, "limits are per source"
    assert next_second.status_code == 200, "a new window starts every second"
    assert Event.objects.count() == 4


def test_rate_limit_zero_disables_it(tracking_client: APIClient) -> None:
    clock = _FrozenClock(1_700_000_000.0)
    with ingest_settings(RATE_LIMIT_PER_SOURCE=0), mock.patch("cdp.api.throttling.time", clock):
        statuses = {
            post_json(tracking_client, "/v1/identify", {"userId": "u1"}).status_code
            for _ in range(5)
        }

    assert statuses == {200}


def test_rate_limit_counts_batch_requests_too(tracking_client: APIClient) -> None:
    body = {"batch": [{"type": "identify", "userId": "u1"}]}
    clock = _FrozenClock(1_700_000_000.5)
    with ingest_settings(RATE_LIMIT_PER_SOURCE=1), mock.patch("cdp.api.throttling.time", clock):
        first = post_json(tracking_client, "/v1/batch", body)
        second = post_json(tracking_client, "/v1/batch", body)

    assert (first.status_code, second.status_code) == (200, 429)
    assert Event.objects.count() == 1


def test_stored_event_json_parts_round_trip(tracking_client: APIClient) -> None:
    """What an SDK sends is what a worker reads: the raw JSON parts are stored as jsonb."""
    body = {
        "userId": "u1",
        "event": "E",
        "properties": {"a": [1, 2.5, None, True, {"b": "c"}]},
        "context": {"library": {"name": "analytics.js", "version": "2.1"}},
        "integrations": {"All": False, "Mixpanel": True},
    }
    post_json(tracking_client, "/v1/track", body)

    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT properties::text, context::text, integrations::text FROM ingestion_event"
        )
        [(properties, context, integrations)] = cursor.fetchall()
    assert orjson.loads(properties) == body["properties"]
    assert orjson.loads(context) == body["context"]
    assert orjson.loads(integrations) == body["integrations"]


def test_page_category_and_channel_are_kept(tracking_client: APIClient) -> None:
    body = {
        "batch": [
            {
                "type": "page",
                "userId": "u1",
                "name": "Pricing",
                "category": "Docs",
                "channel": "web",
                "messageId": "cat-1",
            },
            {
                "type": "screen",
                "userId": "u1",
                "category": "Top",
                "messageId": "cat-2",
                "properties": {"category": "Own"},
                "context": {"channel": "mobile"},
                "channel": "server",
            },
            {
                "type": "track",
                "userId": "u1",
                "event": "E",
                "category": "ignored",
                "messageId": "cat-3",
            },
        ]
    }
    assert post_json(tracking_client, "/v1/batch", body).json()["accepted"] == 3

    page, screen, track = (Event.objects.get(message_id=f"cat-{n}") for n in (1, 2, 3))
    assert (page.properties, page.context) == ({"category": "Docs"}, {"channel": "web"})
    assert (screen.properties, screen.context) == ({"category": "Own"}, {"channel": "mobile"})
    assert track.properties == {}
