"""The segments API, definitions: CRUD with versions, validation errors by path, reference and
fallback cycles, scopes, soft delete, preview (exact and estimated; nothing saved)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from cdp.ingestion.services import SourceWithKey
from identity.models import Profile
from segments.models import Membership, RecomputeRun, Segment, SegmentVersion
from tests.segments.api_people import PLAN_PRO, consent_set, people_ingest, segment_with

pytestmark = pytest.mark.django_db

READ = "segments:read"
WRITE = "segments:write"
Client = Callable[..., APIClient]


@pytest.fixture
def rw(api_client: Client) -> APIClient:
    return api_client(READ, WRITE)


def create(client: APIClient, **body: Any) -> Any:
    payload = {"name": "pro", "purpose": "analytics", "definition": PLAN_PRO, **body}
    return client.post("/v1/segments", payload, format="json")


# --- create / read ----------------------------------------------------------------------------
def test_create_answers_201_with_version_1_and_the_defaults(rw: APIClient) -> None:
    response = create(rw, description="Paying people")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["name"] == "pro"
    assert body["version"] == 1
    assert body["definition"] == PLAN_PRO
    assert body["min_size"] == 100  # settings.CDP_SEGMENTS["MIN_SIZE"]
    assert body["fallback"] is None
    assert body["too_small"] is True  # not computed yet
    assert body["computed_at"] is None
    assert body["time_dependent"] is False
    (version,) = SegmentVersion.objects.filter(segment_id=body["id"])
    assert version.version == 1
    assert version.definition == PLAN_PRO
    assert version.created_by.startswith("api:test #")

    assert rw.get(f"/v1/segments/{body['id']}").json() == body


def test_a_windowed_definition_is_time_dependent(rw: APIClient, settings: Any) -> None:
    settings.CDP_SEGMENTS = {**settings.CDP_SEGMENTS, "MIN_SIZE": 7}
    definition = {"event": "Order Completed", "within": "7d"}
    body = create(rw, definition=definition).json()
    assert body["time_dependent"] is True
    assert body["min_size"] == 7


def test_invalid_definitions_answer_400_with_every_error_by_path(rw: APIClient) -> None:
    definition = {
        "all": [{"trait": "plan", "op": "bigger", "value": 1}, {"segment": 999_999}],
    }
    response = create(rw, definition=definition)
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "validation_error"
    assert body["code"] == "invalid_definition"
    assert body["attr"] == "definition.all[0].op"
    paths = [error["path"] for error in body["errors"]]
    assert paths == ["definition.all[0].op", "definition.all[1].segment"]
    assert all(error["reason"] for error in body["errors"])
    assert not Segment.objects.exists()


@pytest.mark.parametrize(
    ("body", "code", "attr"),
    [
        ({"purpose": "nope"}, "unknown_purpose", "purpose"),
        ({"fallback": 999_999}, "unknown_fallback", "fallback"),
        ({"min_size": -1}, "min_value", "min_size"),
        ({"name": ""}, "blank", "name"),
    ],
)
def test_invalid_fields_answer_400_naming_them(
    rw: APIClient, body: dict[str, Any], code: str, attr: str
) -> None:
    response = create(rw, **body)
    assert response.status_code == 400
    assert (response.json()["code"], response.json()["attr"]) == (code, attr)


def test_a_taken_name_answers_409(rw: APIClient) -> None:
    assert create(rw).status_code == 201
    response = create(rw)
    assert response.status_code == 409
    assert response.json()["code"] == "segment_name_taken"


def test_list_is_cursor_paginated_newest_first_without_deleted(rw: APIClient) -> None:
    ids = [create(rw, name=f"s{i}").json()["id"] for i in range(3)]
    assert rw.delete(f"/v1/segments/{ids[1]}").status_code == 204
    first = rw.get("/v1/segments", {"limit": 1}).json()
    assert [row["id"] for row in first["results"]] == [ids[2]]
    second = rw.get(first["next"]).json()
    assert [row["id"] for row in second["results"]] == [ids[0]]
    assert second["next"] is None


# --- update and versions ----------------------------------------------------------------------
def test_a_new_definition_is_a_new_version_other_fields_are_not(rw: APIClient) -> None:
    segment_id = create(rw).json()["id"]
    url = f"/v1/segments/{segment_id}"
    renamed = rw.patch(url, {"name": "paying", "min_size": 5, "description": "d"}, format="json")
    assert renamed.status_code == 200, renamed.json()
    assert (renamed.json()["name"], renamed.json()["version"]) == ("paying", 1)
    same = rw.patch(url, {"definition": PLAN_PRO}, format="json").json()
    assert same["version"] == 1

    new = {"trait": "plan", "op": "in", "value": ["pro", "team"]}
    changed = rw.patch(url, {"definition": new}, format="json").json()
    assert changed["version"] == 2
    assert changed["definition"] == new
    assert changed["min_size"] == 5

    versions = rw.get(f"{url}/versions").json()
    assert [(v["version"], v["definition"]) for v in versions["results"]] == [
        (2, new),
        (1, PLAN_PRO),
    ]


def test_a_definition_referring_back_to_the_segment_is_refused(rw: APIClient) -> None:
    a = create(rw, name="a").json()["id"]
    b = create(rw, name="b", definition={"segment": a}).json()["id"]
    c = create(rw, name="c", definition={"not": {"segment": b}}).json()["id"]
    for definition in ({"segment": a}, {"any": [PLAN_PRO, {"segment": c}]}):
        response = rw.patch(f"/v1/segments/{a}", {"definition": definition}, format="json")
        assert response.status_code == 400
        body = response.json()
        assert body["code"] == "invalid_definition"
        assert "cycle" in body["errors"][0]["reason"]
    assert Segment.objects.get(pk=a).version == 1


def test_fallback_cycles_are_refused(rw: APIClient) -> None:
    a = create(rw, name="a").json()["id"]
    b = create(rw, name="b", fallback=a).json()["id"]
    c = create(rw, name="c", fallback=b).json()["id"]
    for segment_id, fallback in ((a, a), (a, c)):
        response = rw.patch(f"/v1/segments/{segment_id}", {"fallback": fallback}, format="json")
        assert response.status_code == 400
        assert (response.json()["code"], response.json()["attr"]) == ("fallback_cycle", "fallback")
    cleared = rw.patch(f"/v1/segments/{c}", {"fallback": None}, format="json").json()
    assert cleared["fallback"] is None


def test_patch_of_an_unknown_segment_answers_404(rw: APIClient) -> None:
    response = rw.patch("/v1/segments/999999", {"name": "x"}, format="json")
    assert response.status_code == 404
    assert response.json()["code"] == "segment_not_found"


# --- delete -----------------------------------------------------------------------------------
def test_delete_is_soft_ends_stays_and_frees_the_name(rw: APIClient, source: SourceWithKey) -> None:
    ids = people_ingest(source.source.pk, 2)
    segment = segment_with(ids)
    assert rw.delete(f"/v1/segments/{segment.pk}").status_code == 204
    assert rw.get(f"/v1/segments/{segment.pk}").status_code == 404
    segment.refresh_from_db()
    assert segment.deleted_at is not None
    assert SegmentVersion.objects.filter(segment=segment).count() == 1
    stays = Membership.objects.filter(segment=segment)
    assert {(s.exited_at is not None, s.exit_reason) for s in stays} == {(True, "deleted")}
    assert create(rw).status_code == 201  # the name "pro" is free again
    assert rw.delete(f"/v1/segments/{segment.pk}").status_code == 404


def test_a_segment_in_use_cannot_be_deleted(rw: APIClient) -> None:
    a = create(rw, name="a").json()["id"]
    b = create(rw, name="b", definition={"all": [PLAN_PRO, {"segment": a}]}).json()["id"]
    response = rw.delete(f"/v1/segments/{a}")
    assert response.status_code == 409
    assert response.json()["code"] == "segment_in_use"
    rw.patch(f"/v1/segments/{b}", {"definition": PLAN_PRO}, format="json")
    c = create(rw, name="c", fallback=a).json()["id"]
    assert rw.delete(f"/v1/segments/{a}").status_code == 409
    assert rw.delete(f"/v1/segments/{c}").status_code == 204
    assert rw.delete(f"/v1/segments/{a}").status_code == 204


# --- scopes -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("scopes", "method", "path"),
    [
        ((READ,), "post", "/v1/segments"),
        ((READ,), "patch", "/v1/segments/{id}"),
        ((READ,), "delete", "/v1/segments/{id}"),
        ((READ,), "post", "/v1/segments/{id}/recompute"),
        ((WRITE,), "get", "/v1/segments"),
        ((WRITE,), "get", "/v1/segments/{id}"),
        ((WRITE,), "get", "/v1/segments/{id}/versions"),
        ((WRITE,), "post", "/v1/segments/preview"),
        (("profiles:read",), "get", "/v1/segments/{id}/members"),
        (("profiles:read", "pii:read"), "get", "/v1/segments/{id}/changes"),
        ((WRITE,), "get", "/v1/segments/{id}/stats"),
    ],
)
def test_scopes(
    rw: APIClient, api_client: Client, scopes: tuple[str, ...], method: str, path: str
) -> None:
    segment_id = create(rw).json()["id"]
    client = api_client(*scopes)
    response = getattr(client, method)(path.format(id=segment_id), {}, format="json")
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert Segment.objects.get(pk=segment_id).deleted_at is None


def test_no_token_answers_401() -> None:
    assert APIClient().get("/v1/segments").status_code == 401


# --- preview ----------------------------------------------------------------------------------
def _table_counts() -> tuple[int, ...]:
    return tuple(
        model.objects.count() for model in (Segment, SegmentVersion, Membership, RecomputeRun)
    )


def test_preview_counts_exactly_samples_and_saves_nothing(
    api_client: Client, source: SourceWithKey
) -> None:
    ids = people_ingest(source.source.pk, 10)
    pro = set(ids[0::2])
    before = _table_counts()
    response = api_client(READ).post(
        "/v1/segments/preview", {"definition": PLAN_PRO}, format="json"
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["estimated_size"] == 5
    assert body["method"] == "exact"
    assert set(body["sample"]) == pro
    assert _table_counts() == before


def test_preview_with_a_purpose_counts_only_people_allowed(
    api_client: Client, source: SourceWithKey
) -> None:
    ids = people_ingest(source.source.pk, 6)
    consent_set("u0", "analytics", "denied")  # analytics is allowed by default
    consent_set("u2", "marketing_email", "granted")  # marketing_email is opt-in
    client = api_client(READ)

    def preview(purpose: str) -> Any:
        return client.post(
            "/v1/segments/preview", {"definition": PLAN_PRO, "purpose": purpose}, format="json"
        ).json()

    analytics = preview("analytics")
    assert (analytics["estimated_size"], set(analytics["sample"])) == (2, {ids[2], ids[4]})
    email = preview("marketing_email")
    assert (email["estimated_size"], email["sample"]) == (1, [ids[2]])
    assert preview("nope")["code"] == "unknown_purpose"


def test_preview_of_an_invalid_definition_answers_400(api_client: Client) -> None:
    response = api_client(READ).post(
        "/v1/segments/preview", {"definition": {"trait": "plan"}}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_definition"
    assert response.json()["errors"][0]["path"].startswith("definition")


def test_preview_estimates_with_the_planner_when_counting_runs_out_of_time(
    api_client: Client, settings: Any
) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO identity_profile (created_at, updated_at, event_count, traits) "
            "SELECT now(), now(), 0, jsonb_build_object('plan', jsonb_build_object('value', "
            "CASE WHEN g % 2 = 0 THEN 'pro' ELSE 'free' END)) FROM generate_series(1, 200000) g"
        )
        cursor.execute("ANALYZE identity_profile")
    settings.CDP_SEGMENTS = {**settings.CDP_SEGMENTS, "PREVIEW_BUDGET_MS": 1}
    before = _table_counts()
    body = (
        api_client(READ)
        .post("/v1/segments/preview", {"definition": PLAN_PRO}, format="json")
        .json()
    )
    assert body["method"] == "planner_estimate"
    assert 0 < body["estimated_size"] <= 200_000
    assert len(body["sample"]) <= 20
    assert set(body["sample"]) <= set(Profile.objects.values_list("pk", flat=True))
    assert _table_counts() == before
