"""GET /v1/events: the stored events, filtered and cursor-paginated, for tokens with events:read."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import pytest
from rest_framework.test import APIClient

from cdp.api.pagination import IdCursorPagination
from cdp.api.services import api_token_create, api_token_revoke
from cdp.ingestion.models import Event
from cdp.ingestion.services import SourceWithKey, events_ingest
from tests.ingestion.conftest import assert_error_contract

pytestmark = pytest.mark.django_db

ApiClientFactory = Callable[..., APIClient]


def ingest(source: SourceWithKey, *messages: dict[str, Any]) -> None:
    result = events_ingest(source_id=source.source.pk, messages=list(messages))
    assert result.accepted == len(messages), result.rejected


@pytest.fixture
def reader(api_client: ApiClientFactory) -> APIClient:
    return api_client("events:read")


@pytest.fixture
def mixed_events(source: SourceWithKey, other_source: SourceWithKey) -> None:
    ingest(
        source,
        {"type": "track", "userId": "u1", "event": "Signed Up", "messageId": "web-1"},
        {"type": "track", "userId": "u2", "event": "Signed Up", "messageId": "web-2"},
        {"type": "track", "anonymousId": "a1", "event": "Clicked", "messageId": "web-3"},
        {"type": "identify", "userId": "u1", "anonymousId": "a1", "messageId": "web-4"},
        {"type": "page", "anonymousId": "a1", "name": "Home", "messageId": "web-5"},
    )
    ingest(
        other_source,
        {"type": "track", "userId": "u1", "event": "Signed Up", "messageId": "app-1"},
        {"type": "screen", "userId": "u1", "name": "Home", "messageId": "app-2"},
    )


def message_ids(response: Any) -> set[str]:
    assert response.status_code == 200, response.json()
    return {row["messageId"] for row in response.json()["results"]}


def test_without_a_token_is_401(db: None) -> None:
    response = APIClient().get("/v1/events")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="cdp"'
    assert_error_contract(response.json())
    assert response.json()["code"] == "not_authenticated"


def test_write_key_does_not_open_the_events_api(tracking_client: APIClient) -> None:
    assert tracking_client.get("/v1/events").status_code == 401


def test_wrong_scope_is_403(api_client: ApiClientFactory) -> None:
    response = api_client("profiles:read", "segments:read").get("/v1/events")

    assert response.status_code == 403
    body = response.json()
    assert_error_contract(body)
    assert body["code"] == "permission_denied"
    assert "events:read" in body["detail"]


def test_revoked_token_is_401(db: None) -> None:
    issued = api_token_create(name="old", scopes=["events:read"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.plaintext}")
    assert client.get("/v1/events").status_code == 200

    api_token_revoke(token=issued.token)

    response = client.get("/v1/events")
    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"


def test_lists_events_newest_first_with_their_fields(
    reader: APIClient, source: SourceWithKey
) -> None:
    ingest(
        source,
        {
            "type": "track",
            "userId": "u1",
            "event": "First",
            "messageId": "m1",
            "properties": {"n": 1},
            "context": {"ip": "10.0.0.1"},
        },
    )
    ingest(source, {"type": "alias", "userId": "u1", "previousId": "a1", "messageId": "m2"})

    body = reader.get("/v1/events").json()

    assert [row["messageId"] for row in body["results"]] == ["m2", "m1"]
    first = body["results"][1]
    assert set(first) == {
        "id",
        "source",
        "messageId",
        "type",
        "event",
        "userId",
        "anonymousId",
        "previousId",
        "groupId",
        "timestamp",
        "originalTimestamp",
        "sentAt",
        "receivedAt",
        "clockSkewClamped",
        "properties",
        "traits",
        "context",
        "integrations",
    }
    assert (first["source"], first["type"], first["event"], first["userId"]) == (
        "web",
        "track",
        "First",
        "u1",
    )
    assert first["properties"] == {"n": 1}
    assert first["context"] == {"ip": "[redacted]"}  # a PII value; the token lacks pii:read
    assert body["results"][0]["previousId"] == "a1"


@pytest.mark.usefixtures("mixed_events")
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", {"web-1", "web-2", "web-3", "web-4", "web-5", "app-1", "app-2"}),
        ("source=app", {"app-1", "app-2"}),
        ("source=web", {"web-1", "web-2", "web-3", "web-4", "web-5"}),
        ("source=nope", set()),
        ("user_id=u1", {"web-1", "web-4", "app-1", "app-2"}),
        ("anonymous_id=a1", {"web-3", "web-4", "web-5"}),
        ("type=track", {"web-1", "web-2", "web-3", "app-1"}),
        ("type=screen", {"app-2"}),
        ("event=Signed Up", {"web-1", "web-2", "app-1"}),
        ("event=Home", {"web-5", "app-2"}),
        ("source=web&user_id=u1&type=track", {"web-1"}),
        ("user_id=u1&anonymous_id=a1", {"web-4"}),
        ("user_id=nobody", set()),
    ],
)
def test_filters(reader: APIClient, query: str, expected: set[str]) -> None:
    assert message_ids(reader.get(f"/v1/events?{query}")) == expected


@pytest.mark.parametrize(
    ("query", "attr"),
    [
        ("type=purchase", "type"),
        ("source=not a slug!", "source"),
        ("user_id=" + "x" * 256, "user_id"),
        ("anonymous_id=%00", "anonymous_id"),
    ],
)
def test_bad_filter_is_400(reader: APIClient, query: str, attr: str) -> None:
    response = reader.get(f"/v1/events?{query}")

    assert response.status_code == 400
    body = response.json()
    assert_error_contract(body)
    assert (body["type"], body["attr"]) == ("validation_error", attr)


def test_several_bad_filters_list_every_error(reader: APIClient) -> None:
    response = reader.get("/v1/events?type=purchase&source=not a slug!")

    assert response.status_code == 400
    body = response.json()
    assert_error_contract(body, with_errors=True)
    assert {error["attr"] for error in body["errors"]} == {"type", "source"}


def test_bad_cursor_is_an_error_body(reader: APIClient) -> None:
    response = reader.get("/v1/events?cursor=garbage")

    assert response.status_code == 400
    assert_error_contract(response.json())
    assert response.json()["code"] == "invalid_cursor"
    assert response.json()["attr"] == "cursor"


def walk(client: APIClient, url: str) -> tuple[list[int], int]:
    ids: list[int] = []
    pages = 0
    while url:
        response = client.get(url)
        assert response.status_code == 200
        body = response.json()
        ids.extend(row["id"] for row in body["results"])
        pages += 1
        next_url = body["next"]
        url = urlsplit(next_url)._replace(scheme="", netloc="").geturl() if next_url else ""
    return ids, pages


def test_cursor_pagination_walks_every_row_exactly_once(
    reader: APIClient, source: SourceWithKey
) -> None:
    ingest(source, *({"type": "identify", "userId": f"u{i}"} for i in range(23)))
    expected = sorted(Event.objects.values_list("id", flat=True), reverse=True)

    ids, pages = walk(reader, "/v1/events?limit=5")

    assert ids == expected
    assert pages == 5


def test_pagination_is_stable_under_concurrent_inserts(
    reader: APIClient, source: SourceWithKey
) -> None:
    ingest(source, *({"type": "identify", "userId": f"u{i}"} for i in range(10)))
    expected = sorted(Event.objects.values_list("id", flat=True), reverse=True)
    first_page = reader.get("/v1/events?limit=4").json()
    ingest(source, *({"type": "identify", "userId": f"late{i}"} for i in range(5)))

    rest, _ = walk(reader, urlsplit(first_page["next"])._replace(scheme="", netloc="").geturl())

    seen = [row["id"] for row in first_page["results"]] + rest
    assert seen == expected, "new rows neither repeat nor shift the pages already walked"


def test_pagination_respects_filters(reader: APIClient, source: SourceWithKey) -> None:
    ingest(source, *({"type": "identify", "userId": f"u{i % 2}"} for i in range(9)))
    expected = sorted(Event.objects.filter(user_id="u0").values_list("id", flat=True), reverse=True)

    ids, _ = walk(reader, "/v1/events?user_id=u0&limit=2")

    assert ids == expected


def test_limit_is_capped(reader: APIClient, source: SourceWithKey) -> None:
    ingest(source, *({"type": "identify", "userId": f"u{i}"} for i in range(5)))

    assert len(reader.get("/v1/events?limit=2").json()["results"]) == 2
    assert len(reader.get("/v1/events?limit=100000").json()["results"]) == 5
    with mock.patch.object(IdCursorPagination, "max_page_size", 3):
        assert len(reader.get("/v1/events?limit=100000").json()["results"]) == 3
    assert IdCursorPagination.max_page_size == 1000


@pytest.mark.parametrize("page_size", [1, 10, 60])
def test_query_count_is_flat_whatever_the_page_size(
    reader: APIClient,
    source: SourceWithKey,
    other_source: SourceWithKey,
    django_assert_num_queries: Any,
    page_size: int,
) -> None:
    ingest(source, *({"type": "track", "userId": f"u{i}", "event": "E"} for i in range(30)))
    ingest(other_source, *({"type": "identify", "userId": f"u{i}"} for i in range(30)))
    reader.get("/v1/events?limit=1")  # the first use of a token records last_used_at

    # One query finds the token, one reads the page with its sources.
    with django_assert_num_queries(2):
        response = reader.get(f"/v1/events?limit={page_size}")

    rows = response.json()["results"]
    assert len(rows) == page_size
    assert {row["source"] for row in rows} <= {"web", "app"}
