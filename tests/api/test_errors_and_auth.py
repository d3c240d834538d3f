"""The error contract, bearer tokens, probes, public schema/docs and the operator commands."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from unittest import mock

import orjson
import pytest
from django.core.management import CommandError, call_command
from django.db.utils import DatabaseError
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from cdp.api.models import ApiToken
from cdp.api.services import api_token_create, api_token_revoke
from cdp.ingestion.models import Event, Source
from tests.conftest import basic_auth, post_json

pytestmark = pytest.mark.django_db

ERROR_KEYS = {"type", "code", "detail", "attr"}


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def writer(write_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=basic_auth(write_key))
    return client


# --- one error body everywhere --------------------------------------------------------------------
def _unauthenticated_track(ctx: dict[str, Any]) -> Any:
    return post_json(APIClient(), "/v1/track", {"userId": "u1", "event": "E"})


def _unauthenticated_events(ctx: dict[str, Any]) -> Any:
    return APIClient().get("/v1/events")


def _wrong_scope(ctx: dict[str, Any]) -> Any:
    return bearer(ctx["make_token"]("segments:read")).get("/v1/events")


def _unknown_route(ctx: dict[str, Any]) -> Any:
    return APIClient().get("/v1/nope")


def _unknown_route_post(ctx: dict[str, Any]) -> Any:
    return post_json(ctx["tracking_client"], "/v1/trackk", {})


def _not_json(ctx: dict[str, Any]) -> Any:
    return ctx["tracking_client"].generic("POST", "/v1/track", b"x", content_type="text/plain")


def _malformed(ctx: dict[str, Any]) -> Any:
    return ctx["tracking_client"].generic(
        "POST", "/v1/track", b"{", content_type="application/json"
    )


def _too_large(ctx: dict[str, Any]) -> Any:
    body = {"userId": "u1", "event": "E", "properties": {"x": "a" * 40_000}}
    return post_json(ctx["tracking_client"], "/v1/track", body)


def _method(ctx: dict[str, Any]) -> Any:
    return ctx["tracking_client"].delete("/v1/batch")


def _bad_filter(ctx: dict[str, Any]) -> Any:
    return bearer(ctx["make_token"]("events:read")).get("/v1/events?type=nope")


def _batch_not_list(ctx: dict[str, Any]) -> Any:
    return post_json(ctx["tracking_client"], "/v1/batch", {"batch": 1})


TRACKING_PATHS = tuple(
    f"/v1/{call}"
    for call in ("track", "identify", "alias", "page", "screen", "group", "batch", "records")
)


CASES: list[tuple[str, Callable[[dict[str, Any]], Any], int, str, str]] = [
    ("no-write-key", _unauthenticated_track, 401, "client_error", "authentication_failed"),
    ("no-token", _unauthenticated_events, 401, "client_error", "not_authenticated"),
    ("wrong-scope", _wrong_scope, 403, "client_error", "permission_denied"),
    ("unknown-route", _unknown_route, 404, "client_error", "not_found"),
    ("unknown-route-post", _unknown_route_post, 404, "client_error", "not_found"),
    ("not-json", _not_json, 415, "client_error", "unsupported_media_type"),
    ("malformed", _malformed, 400, "client_error", "parse_error"),
    ("too-large", _too_large, 413, "client_error", "body_too_large"),
    ("method", _method, 405, "client_error", "method_not_allowed"),
    ("bad-filter", _bad_filter, 400, "validation_error", "invalid_choice"),
    ("batch-not-list", _batch_not_list, 400, "validation_error", "invalid"),
]


@pytest.mark.parametrize(
    ("call", "status", "type_", "code"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_every_error_body_has_exactly_the_contract_keys(
    tracking_client: APIClient,
    make_token: Callable[..., str],
    call: Callable[[dict[str, Any]], Any],
    status: int,
    type_: str,
    code: str,
) -> None:
    response = call({"tracking_client": tracking_client, "make_token": make_token})

    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    body = orjson.loads(response.content)
    tracking_call = response.wsgi_request.path in TRACKING_PATHS
    # Tracking endpoints repeat `detail` as `message`, the field Segment/RudderStack SDKs read.
    assert set(body) == (ERROR_KEYS | {"message"} if tracking_call else ERROR_KEYS), body
    if tracking_call:
        assert body["message"] == body["detail"]
    assert (body["type"], body["code"]) == (type_, code)
    assert isinstance(body["detail"], str)
    assert body["detail"]
    assert body["attr"] is None or isinstance(body["attr"], str)


def test_per_item_errors_extend_the_contract_with_errors_only(tracking_client: APIClient) -> None:
    response = post_json(tracking_client, "/v1/batch", {"batch": [{"type": "track"}]})

    assert response.status_code == 400
    body = response.json()
    assert set(body) == ERROR_KEYS | {"errors", "message"}
    assert set(body["errors"][0]) == {"index", "messageId", "attr", "code", "detail"}


def test_unexpected_failure_is_a_500_with_the_contract(tracking_client: APIClient) -> None:
    with mock.patch("cdp.ingestion.services.events_ingest", side_effect=RuntimeError("boom")):
        client = tracking_client
        client.raise_request_exception = False
        response = post_json(client, "/v1/track", {"userId": "u1", "event": "E"})

    assert response.status_code == 500
    body = orjson.loads(response.content)
    assert body == {
        "type": "server_error",
        "code": "error",
        "detail": "Internal server error.",
        "attr": None,
    }
    assert b"boom" not in response.content


def test_database_fault_is_a_500_not_a_silent_success(tracking_client: APIClient) -> None:
    with mock.patch(
        "cdp.ingestion.services._insert_events", side_effect=DatabaseError("disk full")
    ):
        tracking_client.raise_request_exception = False
        response = post_json(tracking_client, "/v1/track", {"userId": "u1", "event": "E"})

    assert response.status_code >= 500
    assert set(orjson.loads(response.content)) == ERROR_KEYS


# --- bearer tokens --------------------------------------------------------------------------------
def test_valid_token_reads_and_is_marked_used(make_token: Callable[..., str]) -> None:
    token = make_token("events:read")
    assert ApiToken.objects.get().last_used_at is None

    assert bearer(token).get("/v1/events").status_code == 200

    assert ApiToken.objects.get().last_used_at is not None


def test_last_used_at_is_written_at_most_once_a_minute(make_token: Callable[..., str]) -> None:
    client = bearer(make_token("events:read"))
    client.get("/v1/events")
    first = ApiToken.objects.get().last_used_at
    assert first is not None
    client.get("/v1/events")
    assert ApiToken.objects.get().last_used_at == first

    ApiToken.objects.update(last_used_at=timezone.now() - timedelta(minutes=5))
    client.get("/v1/events")
    touched = ApiToken.objects.get().last_used_at
    assert touched is not None
    assert touched > first - timedelta(seconds=1)


def test_revoked_token_is_401(db: None) -> None:
    issued = api_token_create(name="ops", scopes=["events:read"])
    api_token_revoke(token=issued.token)

    response = bearer(issued.plaintext).get("/v1/events")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="cdp"'
    assert response.json()["code"] == "authentication_failed"


@pytest.mark.parametrize(
    "authorization",
    ["Bearer", "Bearer a b", "Bearer cdp_unknown", "Bearer tökén", "bearer   "],
)
def test_bad_bearer_headers_are_401(db: None, authorization: str) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=authorization)

    response = client.get("/v1/events")

    assert response.status_code == 401
    assert set(response.json()) == ERROR_KEYS


def test_write_key_is_not_a_bearer_token(write_key: str) -> None:
    assert bearer(write_key).get("/v1/events").status_code == 401


@pytest.mark.parametrize(
    ("scopes", "name", "code"),
    [
        (["events:write"], "x", "unknown_scope"),
        ([], "x", "no_scope"),
        (["events:read"], " ", "blank"),
    ],
)
def test_token_service_rejects_bad_input(db: None, scopes: list[str], name: str, code: str) -> None:
    from cdp.api.errors import InvalidInput

    with pytest.raises(InvalidInput) as caught:
        api_token_create(name=name, scopes=scopes)

    assert caught.value.code == code
    assert not ApiToken.objects.exists()


def test_token_is_stored_only_as_a_digest(db: None) -> None:
    issued = api_token_create(name="ops", scopes=["events:read", "events:read"])

    token = ApiToken.objects.get()
    assert issued.plaintext not in {token.digest, token.display_prefix, token.name}
    assert issued.plaintext.startswith(token.display_prefix)
    assert token.scopes == ["events:read"]


# --- probes, schema, docs -------------------------------------------------------------------------
def test_healthz(client: Any) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_checks_the_database(client: Any) -> None:
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "up"}


def test_readyz_is_503_when_the_database_is_down(client: Any) -> None:
    with mock.patch("cdp.api.views.connection") as connection:
        connection.cursor.side_effect = DatabaseError("connection refused")
        response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "down"}


def test_schema_is_public_and_describes_the_api(db: None) -> None:
    response = APIClient().get("/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    schema = orjson.loads(response.content)
    assert schema["openapi"].startswith("3.")
    for path in (
        "/v1/track",
        "/v1/identify",
        "/v1/alias",
        "/v1/page",
        "/v1/screen",
        "/v1/group",
        "/v1/batch",
        "/v1/records",
        "/v1/events",
    ):
        assert path in schema["paths"], path
    schemes = schema["components"]["securitySchemes"]
    assert schemes["writeKey"]["scheme"] == "basic"
    assert schemes["bearerToken"]["scheme"] == "bearer"


def test_schema_ignores_a_bad_bearer_token(db: None) -> None:
    """Public means public: a stale token in the browser does not lock anyone out of the docs."""
    assert bearer("cdp_stale").get("/v1/schema/").status_code == 200


def test_docs_are_public(db: None) -> None:
    response = APIClient().get("/v1/docs/")

    assert response.status_code == 200
    assert b"swagger" in response.content.lower()
    assert b"/v1/schema/" in response.content


# --- operator commands ----------------------------------------------------------------------------
def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().strip()


def test_create_api_token_prints_a_working_token(db: None) -> None:
    token = run("create_api_token", "ci", "--scope", "events:read")

    assert bearer(token).get("/v1/events").status_code == 200
    stored = ApiToken.objects.get()
    assert (stored.name, stored.scopes) == ("ci", ["events:read"])


def test_create_api_token_accepts_repeated_and_comma_separated_scopes(db: None) -> None:
    token = run(
        "create_api_token", "ops", "--scope", "events:read,profiles:read", "--scope", "pii:read"
    )

    assert ApiToken.objects.get().scopes == ["events:read", "pii:read", "profiles:read"]
    assert bearer(token).get("/v1/events").status_code == 200


def test_create_api_token_scope_limits_the_token(db: None) -> None:
    token = run("create_api_token", "ops", "--scope", "profiles:read")

    assert bearer(token).get("/v1/events").status_code == 403


@pytest.mark.parametrize(
    "args",
    [
        ("create_api_token", "ci", "--scope", "events:raed"),
        ("create_api_token", "ci", "--scope", ","),
        ("create_api_token", " ", "--scope", "events:read"),
        ("create_api_token", "ci"),
    ],
    ids=["unknown-scope", "empty-scope", "blank-name", "no-scope"],
)
def test_create_api_token_bad_input_is_a_command_error(db: None, args: tuple[str, ...]) -> None:
    with pytest.raises(CommandError):
        run(*args)

    assert not ApiToken.objects.exists()


def test_create_source_prints_a_working_write_key(db: None) -> None:
    key = run("create_source", "shop")

    response = post_json(writer(key), "/v1/track", {"userId": "u1", "event": "E"})

    assert response.status_code == 200
    assert Event.objects.get().source.name == "shop"
    assert Source.objects.get(name="shop").write_key_digest != key


@pytest.mark.parametrize("name", ["not a slug", "bad/name", ""])
def test_create_source_rejects_a_bad_name(db: None, name: str) -> None:
    with pytest.raises(CommandError):
        run("create_source", name)

    assert not Source.objects.exists()


def test_create_source_twice_is_a_command_error(db: None) -> None:
    run("create_source", "shop")

    with pytest.raises(CommandError, match="exists"):
        run("create_source", "shop")

    assert Source.objects.count() == 1


def test_create_source_rotate_replaces_the_key(
    db: None, django_capture_on_commit_callbacks: Any
) -> None:
    old = run("create_source", "shop")
    assert post_json(writer(old), "/v1/identify", {"userId": "u1"}).status_code == 200

    with django_capture_on_commit_callbacks(execute=True):  # the key cache clears on commit
        new = run("create_source", "shop", "--rotate")

    assert new != old
    assert post_json(writer(old), "/v1/identify", {"userId": "u1"}).status_code == 401
    assert post_json(writer(new), "/v1/identify", {"userId": "u1"}).status_code == 200
    assert Source.objects.count() == 1


def test_create_source_rotate_unknown_is_a_command_error(db: None) -> None:
    with pytest.raises(CommandError, match="No source"):
        run("create_source", "ghost", "--rotate")


@override_settings(DEBUG=False)
def test_unknown_route_outside_v1_is_json_too(db: None) -> None:
    response = APIClient().get("/definitely/not/here")

    assert response.status_code == 404
    assert orjson.loads(response.content)["code"] == "not_found"
