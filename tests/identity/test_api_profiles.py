"""The profile read API over data ingested through the real services and resolved: lookup,
profile, identifiers and events; scopes, PII reveal, merged ids and query counts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from cdp.crypto.key_cache import data_key_cache
from cdp.ingestion.services import SourceWithKey, source_create
from identity.models import Profile
from tests.identity.resolving import ingest, message, pid, resolve, upsert

pytestmark = pytest.mark.django_db

READ = "profiles:read"
PII = "pii:read"
EVENTS = "events:read"
REDACTED = "[redacted]"
EMAIL = "ada@example.com"
PHONE = "+14155552671"


@dataclass(frozen=True)
class People:
    ada: int  # the visitor's profile, which survived the merge with the user's
    merged: int  # the user's profile, merged into ada's
    bob: int


@pytest.fixture
def web(source: SourceWithKey) -> int:
    return source.source.pk


@pytest.fixture
def people(web: int) -> People:
    """Ada browses anonymously, logs in on another device, then identifies on the first one
    (two profiles merge, the visitor's survives); her CRM record joins by email. Bob is apart."""
    crm = source_create(name="crm").source.pk
    ingest(web, message("page", anonymousId="anon-1", name="Home"))
    resolve()
    ingest(web, message("track", at=1, userId="u1", event="Signed In"))
    resolve()
    ingest(
        web,
        message(
            "identify",
            at=2,
            userId="u1",
            anonymousId="anon-1",
            traits={"email": " Ada@Example.COM ", "phone": "(415) 555-2671", "plan": "pro"},
        ),
        message("track", at=3, userId="u1", event="Order Completed"),
        message("identify", at=4, userId="bob", traits={"plan": "free"}),
    )
    upsert(crm, {"external_id": "C-1", "email": EMAIL, "first_name": "Ada"})
    resolve()
    ada = pid("user_id", "u1")
    merged = Profile.objects.get(merged_into_id=ada).pk
    return People(ada=ada, merged=merged, bob=pid("user_id", "bob"))


def get(client: APIClient, path: str, **params: Any) -> Any:
    return client.get(path, params)


# --- lookup -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "who"),
    [
        ({"email": " Ada@Example.COM "}, "ada"),
        ({"email": EMAIL}, "ada"),
        ({"phone": "+1 415-555-2671"}, "ada"),
        ({"phone": "(415) 555 2671"}, "ada"),
        ({"user_id": " u1 "}, "ada"),
        ({"anonymous_id": "anon-1"}, "ada"),
        ({"external_id": "C-1", "source": "crm"}, "ada"),
        ({"external_id": " C-1 ", "source": "crm"}, "ada"),
        ({"user_id": "bob"}, "bob"),
    ],
)
def test_lookup_by_each_kind_normalizes_and_answers_with_the_profile(
    people: People, api_client: Callable[..., APIClient], params: dict[str, str], who: str
) -> None:
    response = get(api_client(READ), "/v1/profiles/lookup", **params)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["id"] == getattr(people, who)
    assert body == api_client(READ).get(f"/v1/profiles/{body['id']}").json()


def test_lookup_by_body_keeps_the_value_out_of_the_url(
    people: People, api_client: Callable[..., APIClient]
) -> None:
    client = api_client(READ)
    by_body = client.post("/v1/profiles/lookup", {"email": " Ada@Example.COM "}, format="json")
    assert by_body.status_code == 200, by_body.content
    assert by_body.json() == get(client, "/v1/profiles/lookup", email=EMAIL).json()
    assert client.post("/v1/profiles/lookup", {}, format="json").status_code == 400
    missing = client.post("/v1/profiles/lookup", {"user_id": "nobody"}, format="json")
    assert missing.status_code == 404
    other = api_client("events:read").post("/v1/profiles/lookup", {"user_id": "u1"})
    assert other.status_code == 403


@pytest.mark.parametrize(
    "params",
    [
        {"email": "nobody@example.com"},
        {"email": "not an email"},  # unusable: not a value any identifier can have
        {"user_id": "undefined"},  # blocked
        {"external_id": "C-1", "source": "other-crm"},
        {"anonymous_id": "never-seen"},
    ],
)
def test_lookup_of_an_unknown_identifier_is_404_without_the_value(
    people: People, api_client: Callable[..., APIClient], params: dict[str, str]
) -> None:
    response = get(api_client(READ), "/v1/profiles/lookup", **params)
    assert response.status_code == 404
    body = response.json()
    assert body["code"] == "profile_not_found"
    assert set(body) == {"type", "code", "detail", "attr"}
    for value in params.values():
        assert value not in response.content.decode()


@pytest.mark.parametrize(
    ("params", "code", "attr"),
    [
        ({}, "lookup_identifier", None),
        ({"email": EMAIL, "user_id": "u1"}, "lookup_identifier", None),
        ({"external_id": "C-1"}, "required", "source"),
        ({"user_id": "u1", "source": "crm"}, "invalid", "source"),
        ({"external_id": "C-1", "source": "bad:source"}, "invalid", "source"),
    ],
)
def test_lookup_needs_exactly_one_identifier(
    people: People,
    api_client: Callable[..., APIClient],
    params: dict[str, str],
    code: str,
    attr: str | None,
) -> None:
    response = get(api_client(READ), "/v1/profiles/lookup", **params)
    assert response.status_code == 400
    body = response.json()
    assert (body["type"], body["code"], body["attr"]) == ("validation_error", code, attr)
    assert EMAIL not in body["detail"]


def test_an_unresolved_identifier_has_no_profile(
    web: int, api_client: Callable[..., APIClient]
) -> None:
    # Ingest creates the anchor node (to encrypt the PII under its key); the resolver has not run.
    ingest(web, message("identify", userId="later", traits={"email": "x@example.com"}))
    response = get(api_client(READ), "/v1/profiles/lookup", user_id="later")
    assert response.status_code == 404


# --- one profile ------------------------------------------------------------------------------
def test_a_profile_shows_counters_traits_with_provenance_and_identifier_counts(
    people: People, api_client: Callable[..., APIClient]
) -> None:
    response = api_client(READ).get(f"/v1/profiles/{people.ada}")
    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["requested_id"], body["merged_into"]) == (people.ada, people.ada, None)
    assert body["event_count"] == 4
    assert body["first_seen_at"] < body["last_seen_at"]
    assert body["identifier_counts"] == {
        "anonymous_id": 1,
        "email": 1,
        "external": 1,
        "phone": 1,
        "user_id": 1,
    }
    plan = body["traits"]["plan"]
    assert (plan["value"], plan["pii"], plan["source"], plan["origin"]) == (
        "pro",
        False,
        "web",
        "event",
    )
    assert plan["observations"] == 1 and plan["rule"]
    first_name = body["traits"]["first_name"]
    assert (first_name["origin"], first_name["source"]) == ("record", "crm")


def test_pii_traits_are_redacted_without_pii_read_and_decrypted_with_it(
    people: People, api_client: Callable[..., APIClient]
) -> None:
    hidden = api_client(READ).get(f"/v1/profiles/{people.ada}")
    assert hidden.json()["traits"]["email"]["value"] == REDACTED
    assert hidden.json()["traits"]["first_name"]["value"] == REDACTED
    assert hidden.json()["traits"]["email"]["pii"] is True
    content = hidden.content.decode()
    for secret in ("Ada@Example", EMAIL, "Ada", "555"):
        assert secret not in content

    shown = api_client(READ, PII).get(f"/v1/profiles/{people.ada}").json()
    assert shown["traits"]["first_name"]["value"] == "Ada"
    assert shown["traits"]["email"]["value"] in (" Ada@Example.COM ", EMAIL)  # as each stated it
    assert shown["traits"]["phone"]["value"] == "(415) 555-2671"
    assert shown["traits"]["plan"]["value"] == "pro"


def test_a_merged_id_answers_with_the_survivor(
    people: People, api_client: Callable[..., APIClient]
) -> None:
    body = api_client(READ).get(f"/v1/profiles/{people.merged}").json()
    assert (body["id"], body["requested_id"], body["merged_into"]) == (
        people.ada,
        people.merged,
        people.ada,
    )
    survivor = api_client(READ).get(f"/v1/profiles/{people.ada}").json()
    assert {k: v for k, v in body.items() if k != "requested_id" and k != "merged_into"} == {
        k: v for k, v in survivor.items() if k != "requested_id" and k != "merged_into"
    }
    identifiers = api_client(READ).get(f"/v1/profiles/{people.merged}/identifiers").json()
    assert len(identifiers["results"]) == 5


def test_unknown_profiles_are_404(people: People, api_client: Callable[..., APIClient]) -> None:
    client = api_client(READ, EVENTS)
    for path in ("", "/identifiers", "/events", "/graph", "/merges"):
        response = client.get(f"/v1/profiles/999999{path}")
        assert response.status_code == 404, path
        assert response.json()["code"] == "profile_not_found"


@pytest.mark.parametrize(
    ("path", "scopes"),
    [
        ("/v1/profiles/lookup?user_id=u1", ("events:read", PII)),
        ("/v1/profiles/{ada}", (PII,)),
        ("/v1/profiles/{ada}/identifiers", ("segments:read",)),
        ("/v1/profiles/{ada}/events", (READ,)),
        ("/v1/profiles/{ada}/events", (EVENTS,)),
        ("/v1/profiles/{ada}/graph", ("profiles:write",)),
        ("/v1/profiles/{ada}/merges", (EVENTS,)),
    ],
)
def test_reads_need_their_scopes_and_a_token(
    people: People, api_client: Callable[..., APIClient], path: str, scopes: tuple[str, ...]
) -> None:
    url = path.format(ada=people.ada)
    forbidden = api_client(*scopes).get(url)
    assert forbidden.status_code == 403
    assert forbidden.json()["code"] == "permission_denied"
    anonymous = APIClient().get(url)
    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == "not_authenticated"


# --- identifiers ------------------------------------------------------------------------------
def test_identifiers_are_listed_redacted_without_pii_read(
    people: People, api_client: Callable[..., APIClient]
) -> None:
    response = api_client(READ).get(f"/v1/profiles/{people.ada}/identifiers")
    assert response.status_code == 200
    results = response.json()["results"]
    assert sorted(row["kind"] for row in results) == [
        "anonymous_id",
        "email",
        "external",
        "phone",
        "user_id",
    ]
    assert [row["id"] for row in results] == sorted((row["id"] for row in results), reverse=True)
    assert {row["value"] for row in results} == {REDACTED}
    user = next(row for row in results if row["kind"] == "user_id")
    assert user["event_count"] == 3  # signed in, identify, order completed
    assert user["first_seen_at"] and user["last_seen_at"]


def test_identifier_values_are_shown_with_pii_read(
    people: People, api_client: Callable[..., APIClient]
) -> None:
    results = api_client(READ, PII).get(f"/v1/profiles/{people.ada}/identifiers").json()["results"]
    assert {row["kind"]: row["value"] for row in results} == {
        "anonymous_id": "anon-1",
        "email": EMAIL,
        "external": "crm:C-1",
        "phone": PHONE,
        "user_id": "u1",
    }


def test_identifiers_are_cursor_paginated(
    people: People, api_client: Callable[..., APIClient]
) -> None:
    client = api_client(READ)
    first = client.get(f"/v1/profiles/{people.ada}/identifiers", {"limit": 2}).json()
    assert len(first["results"]) == 2 and first["next"]
    seen = [row["id"] for row in first["results"]]
    page = first
    while page["next"]:
        page = client.get(page["next"]).json()
        seen += [row["id"] for row in page["results"]]
    assert len(seen) == len(set(seen)) == 5
    bad = client.get(f"/v1/profiles/{people.ada}/identifiers", {"cursor": "nope"})
    assert (bad.status_code, bad.json()["code"]) == (400, "invalid_cursor")


# --- events -----------------------------------------------------------------------------------
def test_a_profiles_events_are_those_of_its_identifiers_newest_first(
    people: People, api_client: Callable[..., APIClient]
) -> None:
    response = api_client(READ, EVENTS).get(f"/v1/profiles/{people.ada}/events")
    assert response.status_code == 200
    events = response.json()["results"]
    assert [(e["type"], e["event"]) for e in events] == [
        ("track", "Order Completed"),
        ("identify", None),
        ("track", "Signed In"),
        ("page", "Home"),
    ]
    assert [e["id"] for e in events] == sorted((e["id"] for e in events), reverse=True)
    # The same body as GET /v1/events.
    listed = api_client(EVENTS).get("/v1/events", {"user_id": "u1"}).json()["results"]
    assert {e["messageId"] for e in listed} <= {e["messageId"] for e in events}
    bob = api_client(READ, EVENTS).get(f"/v1/profiles/{people.bob}/events").json()["results"]
    assert [e["userId"] for e in bob] == ["bob"]


def test_event_pii_is_redacted_unless_pii_read(
    people: People, api_client: Callable[..., APIClient]
) -> None:
    url = f"/v1/profiles/{people.ada}/events"
    hidden = api_client(READ, EVENTS).get(url).json()["results"]
    identify = next(e for e in hidden if e["type"] == "identify")
    assert identify["traits"] == {"email": REDACTED, "phone": REDACTED, "plan": "pro"}
    shown = api_client(READ, EVENTS, PII).get(url).json()["results"]
    identify = next(e for e in shown if e["type"] == "identify")
    assert identify["traits"] == {
        "email": " Ada@Example.COM ",
        "phone": "(415) 555-2671",
        "plan": "pro",
    }


# --- query counts -----------------------------------------------------------------------------
def _query_count(client: APIClient, url: str) -> int:
    client.get(url)  # the token's last use is recorded once, not on every request
    data_key_cache.clear()
    with CaptureQueriesContext(connection) as context:
        response = client.get(url)
    assert response.status_code == 200, response.content
    return len(context.captured_queries)


@pytest.fixture
def busy(web: int) -> int:
    """A profile with many identifiers and events, all carrying PII."""
    ingest(
        web,
        *(
            message(
                "identify",
                at=i,
                userId="busy",
                anonymousId=f"busy-anon-{i}",
                traits={"email": f"busy{i % 4}@example.com", "name": f"B {i}"},
                context={"device": {"id": f"device-{i}"}},
            )
            for i in range(12)
        ),
    )
    resolve()
    return pid("user_id", "busy")


@pytest.mark.parametrize(
    ("path", "scopes", "bound"),
    [
        # pii:read adds the audit entry of the reveal.
        ("", (READ, PII), 6),
        ("/identifiers", (READ, PII), 5),
        ("/events", (READ, EVENTS, PII), 6),
        ("/graph", (READ, PII), 6),
        ("/merges", (READ,), 3),
    ],
)
def test_query_counts_do_not_grow_with_the_data(
    people: People,
    busy: int,
    api_client: Callable[..., APIClient],
    path: str,
    scopes: tuple[str, ...],
    bound: int,
) -> None:
    client = api_client(*scopes)
    small = _query_count(client, f"/v1/profiles/{people.bob}{path}?limit=1000")
    large = _query_count(client, f"/v1/profiles/{busy}{path}?limit=1000")
    ada = _query_count(client, f"/v1/profiles/{people.merged}{path}?limit=1000")
    # The token, the profile, then per endpoint its rows and their data keys (one query).
    assert max(small, large, ada) <= bound
    assert large == ada
