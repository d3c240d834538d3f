"""Unmodified Segment and RudderStack Python SDKs against a live server.

Each SDK runs as it would in production: its background consumer batches the calls into
``POST /v1/batch`` (RudderStack gzips the body), and errors reach the ``on_error`` callback. The
requests on the wire are recorded with a ``requests`` response hook on the SDK's own session, so
the tests can assert what was sent (batch-level ``sentAt``, no per-message ``sentAt``) as well as
what was stored, which they read back through ``GET /v1/events``.
"""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import rudderstack.analytics
import rudderstack.analytics.request
import segment.analytics
import segment.analytics.request

pytestmark = [pytest.mark.live]


@dataclass
class Sent:
    """One HTTP exchange made by an SDK."""

    path: str
    status: int
    content_encoding: str | None
    body: dict[str, Any]
    response: Any


@dataclass(frozen=True)
class Flavour:
    name: str
    module: ModuleType  # the SDK's package, holding ``Client``
    request_module: ModuleType  # holds the module-level ``requests`` session the SDK posts with
    gzips: bool
    library_name: str
    # RudderStack's identify() sends the traits as context.traits, not as top-level traits.
    identify_traits_in_context: bool


@dataclass
class SDK:
    flavour: Flavour
    client: Any
    errors: list[tuple[Exception, list[dict[str, Any]]]] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.flavour.name

    def flush(self) -> None:
        self.client.flush()


SEGMENT = Flavour(
    "segment",
    segment.analytics,
    segment.analytics.request,
    gzips=False,
    library_name="analytics-python",
    identify_traits_in_context=False,
)
RUDDER = Flavour(
    "rudderstack",
    rudderstack.analytics,
    rudderstack.analytics.request,
    gzips=True,
    library_name="analytics-python",
    identify_traits_in_context=True,
)


def _json_or_text(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def _decoded_body(request: requests.PreparedRequest) -> dict[str, Any]:
    body_sent = request.body or b""
    raw = body_sent.encode() if isinstance(body_sent, str) else bytes(body_sent)  # type: ignore[arg-type]
    if request.headers.get("Content-Encoding") == "gzip":
        raw = gzip.decompress(raw)
    body: dict[str, Any] = json.loads(raw)
    return body


@pytest.fixture(params=[SEGMENT, RUDDER], ids=lambda flavour: flavour.name)
def sdk(request: pytest.FixtureRequest, live_server: Any, write_key: str) -> Iterator[SDK]:
    yield from _make_sdk(request.param, live_server.url, write_key)


@pytest.fixture(params=[SEGMENT, RUDDER], ids=lambda flavour: flavour.name)
def sdk_with_bad_key(request: pytest.FixtureRequest, live_server: Any, db: None) -> Iterator[SDK]:
    yield from _make_sdk(request.param, live_server.url, "wk_not-a-real-key")


def _make_sdk(flavour: Flavour, host: str, write_key: str) -> Iterator[SDK]:
    made = SDK(flavour=flavour, client=None)

    def record(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        made.sent.append(
            Sent(
                path=urlsplit(response.request.url or "").path,
                status=response.status_code,
                content_encoding=str(response.request.headers.get("Content-Encoding") or "")
                or None,
                body=_decoded_body(response.request),
                response=_json_or_text(response),
            )
        )

    def on_error(error: Exception, batch: list[dict[str, Any]]) -> None:
        made.errors.append((error, batch))

    session = flavour.request_module._session
    session.hooks["response"].append(record)
    # One retry at most, so a broken server fails the test quickly instead of backing off.
    made.client = flavour.module.Client(
        write_key, host=host, on_error=on_error, max_retries=1, timeout=10
    )
    try:
        yield made
    finally:
        made.client.shutdown()
        session.hooks["response"].remove(record)
        _close_connections(session)


def _close_connections(session: requests.Session) -> None:
    """Close the SDK's keep-alive connections now.

    The live server's handler thread, and the database connection it holds, lives as long as its
    HTTP connection; one left open makes dropping the test database fail. ``Session.close()`` is
    not enough: urllib3 2.x only forgets its pools there, and a response kept alive (an SDK
    error holds one) keeps the socket open.
    """
    for adapter in session.adapters.values():
        pools = adapter.poolmanager.pools  # type: ignore[attr-defined]
        for key in pools.keys():  # noqa: SIM118 (the container refuses iteration)
            pool = pools.get(key)
            if pool is not None:
                pool.close()
    session.close()


@pytest.fixture
def read_events(
    live_server: Any, make_token: Callable[..., str]
) -> Callable[..., list[dict[str, Any]]]:
    """``read_events(user_id=...)`` -> the stored events, through the management API (with
    ``pii:read``: the PII traits are compared as sent, not redacted)."""
    token = make_token("events:read", "pii:read")

    def read(**filters: str) -> list[dict[str, Any]]:
        response = requests.get(
            f"{live_server.url}/v1/events",
            params={**filters, "limit": "1000"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        results: list[dict[str, Any]] = response.json()["results"]
        return results

    return read


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_every_call_type_arrives_with_its_fields(
    sdk: SDK, read_events: Callable[..., list[dict[str, Any]]]
) -> None:
    run = uuid.uuid4().hex[:8]
    user_id, anonymous_id = f"user-{run}", f"anon-{run}"
    # The client's clock says the calls happened a while ago, to the millisecond (Segment's SDK
    # sends milliseconds, RudderStack's microseconds).
    happened = (datetime.now(UTC) - timedelta(minutes=5)).replace(microsecond=250_000)
    kinds = ("identify", "track", "page", "screen", "group", "alias")
    ids = {kind: f"{sdk.name}-{kind}-{run}" for kind in kinds}

    before = datetime.now(UTC)
    sdk.client.identify(
        user_id,
        {"email": "ada@example.com", "plan": "pro"},
        timestamp=happened,
        anonymous_id=anonymous_id,
        message_id=ids["identify"],
    )
    sdk.client.track(
        user_id,
        "Order Completed",
        {"revenue": 42.5, "currency": "EUR", "items": [{"sku": "A1"}]},
        timestamp=happened,
        message_id=ids["track"],
    )
    sdk.client.page(
        user_id,
        name="Pricing",
        properties={"path": "/pricing"},
        timestamp=happened,
        message_id=ids["page"],
    )
    sdk.client.screen(
        anonymous_id=anonymous_id,
        name="Home",
        properties={"tab": "feed"},
        timestamp=happened,
        message_id=ids["screen"],
    )
    sdk.client.group(
        user_id,
        "acme",
        {"name": "Acme", "employees": 12},
        timestamp=happened,
        message_id=ids["group"],
    )
    sdk.client.alias(anonymous_id, user_id, timestamp=happened, message_id=ids["alias"])
    sdk.flush()
    after = datetime.now(UTC)

    assert sdk.errors == []
    flavour = sdk.flavour
    assert sdk.sent, "the SDK made no request"
    for sent in sdk.sent:
        assert (sent.path, sent.status) == ("/v1/batch", 200), sent.response
        assert sent.content_encoding == ("gzip" if flavour.gzips else None)
        assert sent.response["rejected"] == []
        # The SDKs stamp sentAt on the batch only, never on the messages in it.
        assert "sentAt" in sent.body
        assert all("sentAt" not in message for message in sent.body["batch"])
    assert sum(sent.response["accepted"] for sent in sdk.sent) == 6
    batch_sent_at = {
        message["messageId"]: _time(sent.body["sentAt"])
        for sent in sdk.sent
        for message in sent.body["batch"]
    }

    stored = {e["messageId"]: e for e in read_events() if e["messageId"] in set(ids.values())}
    assert set(stored) == set(ids.values())
    for message_id, event in stored.items():
        assert event["source"] == "web"
        assert _time(event["originalTimestamp"]) == happened
        sent_at, received_at = _time(event["sentAt"]), _time(event["receivedAt"])
        assert sent_at == batch_sent_at[message_id]
        assert before <= sent_at <= received_at <= after
        # The event time is corrected for client clock skew with the batch's sentAt.
        assert _time(event["timestamp"]) == received_at - (sent_at - happened)
        assert event["clockSkewClamped"] is False
        assert event["context"]["library"]["name"] == flavour.library_name

    identify = stored[ids["identify"]]
    assert (identify["type"], identify["userId"], identify["anonymousId"]) == (
        "identify",
        user_id,
        anonymous_id,
    )
    traits = {"email": "ada@example.com", "plan": "pro"}
    if flavour.identify_traits_in_context:
        assert (identify["traits"], identify["context"]["traits"]) == ({}, traits)
    else:
        assert identify["traits"] == traits

    track = stored[ids["track"]]
    assert (track["type"], track["userId"], track["event"]) == ("track", user_id, "Order Completed")
    assert track["properties"] == {"revenue": 42.5, "currency": "EUR", "items": [{"sku": "A1"}]}

    page = stored[ids["page"]]
    assert (page["type"], page["userId"], page["event"]) == ("page", user_id, "Pricing")
    assert page["properties"] == {"path": "/pricing"}

    screen = stored[ids["screen"]]
    assert (screen["type"], screen["userId"], screen["anonymousId"], screen["event"]) == (
        "screen",
        None,
        anonymous_id,
        "Home",
    )
    assert screen["properties"] == {"tab": "feed"}

    group = stored[ids["group"]]
    assert (group["type"], group["userId"], group["groupId"]) == ("group", user_id, "acme")
    assert group["traits"] == {"name": "Acme", "employees": 12}

    alias = stored[ids["alias"]]
    assert (alias["type"], alias["userId"], alias["previousId"]) == ("alias", user_id, anonymous_id)

    if flavour is RUDDER:
        assert track["integrations"] == {"All": True}  # RudderStack's default, kept as sent


def test_a_resent_message_is_stored_once(
    sdk: SDK, read_events: Callable[..., list[dict[str, Any]]]
) -> None:
    """An SDK retry resends the same messageId in a new request; it must not add a row."""
    run = uuid.uuid4().hex[:8]
    user_id, message_id = f"user-{run}", f"{sdk.name}-retry-{run}"

    for _ in range(2):
        sdk.client.track(user_id, "Signed Up", {"plan": "free"}, message_id=message_id)
        sdk.flush()  # one request each

    assert sdk.errors == []
    assert [(s.status, s.response["accepted"], s.response["duplicates"]) for s in sdk.sent] == [
        (200, 1, 0),
        (200, 0, 1),
    ]
    stored = read_events(user_id=user_id)
    assert [(e["messageId"], e["event"]) for e in stored] == [(message_id, "Signed Up")]


def test_a_rejected_batch_reaches_on_error(
    sdk_with_bad_key: SDK, read_events: Callable[..., list[dict[str, Any]]]
) -> None:
    """The error channel the tests above rely on works: a bad write key is reported, not lost."""
    sdk = sdk_with_bad_key
    message_id = f"{sdk.name}-bad-key-{uuid.uuid4().hex[:8]}"

    sdk.client.track("user-x", "Ignored", message_id=message_id)
    sdk.flush()

    assert len(sdk.errors) == 1
    error, batch = sdk.errors[0]
    assert [m["messageId"] for m in batch] == [message_id]
    # Both SDKs read `code` and `message` from the error body: they report the 401 as an API
    # error with our text, and treat it as final (one request, no retries).
    assert getattr(error, "status", None) == 401, repr(error)
    assert getattr(error, "code", None) == "authentication_failed"
    assert getattr(error, "message", None) == "Invalid write key."
    assert [s.status for s in sdk.sent] == [401]
    assert [e for e in read_events() if e["messageId"] == message_id] == []


def test_an_identified_user_can_be_looked_up_after_resolution(
    live_server: Any, write_key: str, make_token: Callable[..., str]
) -> None:
    """The whole path: an unmodified SDK's identify call, the resolver, the profile lookup API."""
    # Imported here: the resolver is the test process's, like a worker's would be.
    from identity.services.resolution import resolve_pending

    run = uuid.uuid4().hex[:8]
    user_id = f"user-{run}"
    for made in _make_sdk(SEGMENT, live_server.url, write_key):
        made.client.identify(
            user_id, {"email": f"Ada.{run}@Example.com", "plan": "pro"}, anonymous_id=f"a-{run}"
        )
        made.flush()
        assert made.errors == []
        assert [sent.status for sent in made.sent] == [200]

    resolve_pending()

    token = make_token("profiles:read", "pii:read")
    response = requests.get(
        f"{live_server.url}/v1/profiles/lookup",
        params={"user_id": user_id},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    profile = response.json()
    assert profile["event_count"] == 1
    assert profile["identifier_counts"] == {"anonymous_id": 1, "email": 1, "user_id": 1}
    traits = profile["traits"]
    assert (traits["plan"]["value"], traits["plan"]["source"]) == ("pro", "web")
    assert (traits["email"]["value"], traits["email"]["pii"]) == (f"Ada.{run}@Example.com", True)
    by_email = requests.get(
        f"{live_server.url}/v1/profiles/lookup",
        params={"email": f" ada.{run}@example.COM "},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert by_email.json()["id"] == profile["id"]
