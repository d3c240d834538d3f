"""The segments API, people: members (pagination, consent, PII masking, as_of, the too-small
guardrail and fallback, flat query counts), changes since a time, a profile's segments, and a
segment computed through the real recompute."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from cdp.audit.models import AuditAction, AuditEntry
from cdp.crypto.key_cache import data_key_cache
from cdp.ingestion.services import SourceWithKey
from cdp.jobs.models import JobRun, JobStatus
from identity.models import Profile
from segments.models import Membership, Segment
from tests.conftest import eager_celery
from tests.identity.resolving import T0, ingest, message, pid, resolve
from tests.segments.api_people import PLAN_PRO, consent_set, people_ingest, segment_with

pytestmark = pytest.mark.django_db

READ = "segments:read"
PII = "pii:read"
Client = Callable[..., APIClient]


@pytest.fixture
def ids(source: SourceWithKey) -> list[int]:
    """u0..u11; the even ones are on the pro plan."""
    return people_ingest(source.source.pk, 12)


@pytest.fixture
def reader(api_client: Client) -> APIClient:
    return api_client(READ)


def members(client: APIClient, segment: Segment | int, **params: Any) -> Any:
    segment_id = segment if isinstance(segment, int) else segment.pk
    return client.get(f"/v1/segments/{segment_id}/members", params)


def all_member_ids(client: APIClient, segment: Segment, **params: Any) -> list[int]:
    page = members(client, segment, **params).json()
    found = [row["profile_id"] for row in page["results"]]
    while page["next"]:
        page = client.get(page["next"]).json()
        found += [row["profile_id"] for row in page["results"]]
    return found


# --- members ----------------------------------------------------------------------------------
def test_members_are_paginated_by_profile_id(reader: APIClient, ids: list[int]) -> None:
    pro = sorted(ids[0::2])
    segment = segment_with(pro)
    first = members(reader, segment, limit=4)
    assert first.status_code == 200, first.json()
    body = first.json()
    assert [row["profile_id"] for row in body["results"]] == pro[:4]
    assert (body["segment_id"], body["served_segment_id"], body["fallback"]) == (
        segment.pk,
        segment.pk,
        False,
    )
    assert body["as_of"] is None
    assert "X-CDP-Served-Segment" not in first.headers
    assert body["results"][0]["entered_at"] == T0.isoformat().replace("+00:00", "Z")
    second = reader.get(body["next"]).json()
    assert [row["profile_id"] for row in second["results"]] == pro[4:]
    assert second["next"] is None
    assert all_member_ids(reader, segment, limit=5) == pro


def test_members_leave_out_people_not_allowed_for_the_purpose(
    reader: APIClient, ids: list[int]
) -> None:
    pro = ids[0::2]
    consent_set("u0", "analytics", "denied")  # analytics: allowed by default
    consent_set("u2", "marketing_email", "granted")  # marketing_email: opt-in
    consent_set("u4", "marketing_email", "denied")
    analytics = segment_with(pro, name="pro analytics")
    email = segment_with(pro, name="pro email", purpose="marketing_email")
    assert all_member_ids(reader, analytics) == sorted(set(pro) - {ids[0]})
    assert all_member_ids(reader, email) == [ids[2]]


def test_pii_traits_are_masked_without_pii_read(
    api_client: Client, reader: APIClient, ids: list[int]
) -> None:
    segment = segment_with(ids[:2])
    masked = {row["profile_id"]: row for row in members(reader, segment).json()["results"]}
    assert masked[ids[0]]["traits"] == {"email": "[redacted]", "plan": "pro", "n": 0}
    assert masked[ids[1]]["traits"] == {"email": "[redacted]", "plan": "free", "n": 1}
    assert not AuditEntry.objects.filter(action=AuditAction.PII_REVEALED).exists()

    page = members(api_client(READ, PII), segment).json()["results"]
    shown = {row["profile_id"]: row["traits"] for row in page}
    assert shown[ids[0]] == {"email": "u0@example.com", "plan": "pro", "n": 0}
    assert shown[ids[1]]["email"] == "u1@example.com"
    (audit,) = AuditEntry.objects.filter(action=AuditAction.PII_REVEALED)
    assert (audit.target_type, audit.target_id) == ("segment", str(segment.pk))
    assert audit.details == {"endpoint": "segments_members_list"}
    assert "u0@example.com" not in str(audit.details)


def test_members_as_of_an_instant(reader: APIClient, ids: list[int]) -> None:
    a, b, c, d = ids[:4]
    segment = segment_with([])
    day = timedelta(days=1)
    Membership.objects.bulk_create(
        [
            Membership(segment=segment, profile_id=a, entered_at=T0, exited_at=T0 + 2 * day),
            Membership(segment=segment, profile_id=a, entered_at=T0 + 4 * day),
            Membership(segment=segment, profile_id=b, entered_at=T0 + day),
            Membership(segment=segment, profile_id=c, entered_at=T0 + 3 * day),
            Membership(segment=segment, profile_id=d, entered_at=T0, exited_at=T0 + day),
        ]
    )
    Segment.objects.filter(pk=segment.pk).update(member_count=3, too_small=False)

    def at(instant: Any) -> list[int]:
        return all_member_ids(reader, segment, as_of=instant.isoformat())

    assert at(T0 - day) == []
    assert at(T0) == sorted([a, d])
    assert at(T0 + day) == sorted([a, b])  # d's stay ended then: [entered, exited)
    assert at(T0 + 2 * day) == [b]
    assert at(T0 + 5 * day) == sorted([a, b, c])
    assert all_member_ids(reader, segment) == sorted([a, b, c])
    as_of = members(reader, segment, as_of="2026-03-01T12:00:00Z").json()
    assert as_of["as_of"] == "2026-03-01T12:00:00Z"
    assert as_of["results"][0]["entered_at"] == T0.isoformat().replace("+00:00", "Z")
    bad = members(reader, segment, as_of="yesterday")
    assert bad.status_code == 400
    assert bad.json()["attr"] == "as_of"


def test_as_of_still_filters_by_consent_as_it_is_now(reader: APIClient, ids: list[int]) -> None:
    segment = segment_with(ids[:3])
    consent_set("u1", "analytics", "denied")
    as_of = (T0 + timedelta(days=1)).isoformat()
    assert all_member_ids(reader, segment, as_of=as_of) == sorted([ids[0], ids[2]])


def test_a_too_small_segment_answers_409(reader: APIClient, ids: list[int]) -> None:
    segment = segment_with(ids[:3], min_size=4)
    response = members(reader, segment)
    assert response.status_code == 409
    assert response.json()["code"] == "segment_too_small"
    changes_url = f"/v1/segments/{segment.pk}/changes"
    assert reader.get(changes_url, {"since": T0.isoformat()}).status_code == 409
    Segment.objects.filter(pk=segment.pk).update(too_small=False)
    assert members(reader, segment).status_code == 200
    assert reader.get(changes_url, {"since": T0.isoformat()}).status_code == 200


def test_a_too_small_segment_with_a_fallback_serves_the_fallback(
    reader: APIClient, ids: list[int]
) -> None:
    everyone = segment_with(ids, name="everyone", definition={"trait": "n", "op": "exists"})
    middle = segment_with(ids[:1], name="middle", min_size=2, fallback_id=everyone.pk)
    small = segment_with(ids[:1], name="small", min_size=2, fallback_id=middle.pk)
    consent_set("u3", "analytics", "denied")
    response = members(reader, small, limit=100)
    assert response.status_code == 200
    body = response.json()
    assert (body["segment_id"], body["served_segment_id"], body["fallback"]) == (
        small.pk,
        everyone.pk,
        True,
    )
    assert response.headers["X-CDP-Served-Segment"] == str(everyone.pk)
    assert [row["profile_id"] for row in body["results"]] == sorted(set(ids) - {ids[3]})


def test_a_fallback_never_widens_consent(reader: APIClient, ids: list[int]) -> None:
    everyone = segment_with(ids, name="everyone", definition={"trait": "n", "op": "exists"})
    email = segment_with(
        [], name="email", purpose="marketing_email", min_size=1, fallback_id=everyone.pk
    )
    consent_set("u5", "marketing_email", "granted")
    assert all_member_ids(reader, email) == [ids[5]]


def test_members_page_queries_do_not_grow_with_the_page(
    api_client: Client, reader: APIClient, ids: list[int]
) -> None:
    small = segment_with(ids[:2], name="small")
    large = segment_with(ids, name="large", definition={"trait": "n", "op": "exists"})
    revealer = api_client(READ, PII)
    counts = {}
    for name, client in (("masked", reader), ("revealed", revealer)):
        members(client, small)  # the token's first use writes last_used_at
        for segment in (small, large):
            data_key_cache.clear()  # count the data keys' query every time
            with CaptureQueriesContext(connection) as queries:
                response = members(client, segment)
            counts[name, len(response.json()["results"])] = len(queries)
    assert counts["masked", 2] == counts["masked", 12]
    assert counts["revealed", 2] == counts["revealed", 12]
    # Revealing adds the audit entry, the observations and their data keys.
    assert counts["revealed", 12] == counts["masked", 12] + 3


def test_a_members_page_is_three_queries(
    reader: APIClient, ids: list[int], django_assert_num_queries: Any
) -> None:
    segment = segment_with(ids, definition={"trait": "n", "op": "exists"})
    members(reader, segment)  # the token's first use writes last_used_at
    # The token, the segment, the page (profiles and consent looked up inside it).
    with django_assert_num_queries(3):
        assert len(members(reader, segment, limit=5).json()["results"]) == 5
    with django_assert_num_queries(3):
        assert len(members(reader, segment).json()["results"]) == 12


def test_members_of_an_unknown_or_deleted_segment_answer_404(
    api_client: Client, reader: APIClient, ids: list[int]
) -> None:
    segment = segment_with(ids[:2])
    assert members(reader, 999_999).status_code == 404
    api_client("segments:write").delete(f"/v1/segments/{segment.pk}")
    response = members(reader, segment)
    assert response.status_code == 404
    assert response.json()["code"] == "segment_not_found"


# --- changes ----------------------------------------------------------------------------------
def _changes(client: APIClient, segment: Segment, **params: Any) -> list[tuple[str, int, str]]:
    page = client.get(f"/v1/segments/{segment.pk}/changes", params).json()
    found = []
    while True:
        found += [(row["change"], row["profile_id"], row["at"]) for row in page["results"]]
        if not page["next"]:
            return found
        page = client.get(page["next"]).json()


def test_changes_since_in_time_order_paginated(reader: APIClient, ids: list[int]) -> None:
    a, b, c = ids[:3]
    hour = timedelta(hours=1)
    segment = segment_with([])
    Membership.objects.bulk_create(
        [
            Membership(
                segment=segment,
                profile_id=a,
                entered_at=T0,
                exited_at=T0 + 3 * hour,
                exit_reason="rule",
            ),
            Membership(segment=segment, profile_id=b, entered_at=T0 + hour),
            Membership(segment=segment, profile_id=c, entered_at=T0 + 2 * hour),
            Membership(segment=segment, profile_id=a, entered_at=T0 + 5 * hour),
        ]
    )
    Segment.objects.filter(pk=segment.pk).update(too_small=False)

    def iso(at: Any) -> str:
        return at.isoformat().replace("+00:00", "Z")

    expected = [
        ("entered", a, iso(T0)),
        ("entered", b, iso(T0 + hour)),
        ("entered", c, iso(T0 + 2 * hour)),
        ("exited", a, iso(T0 + 3 * hour)),
        ("entered", a, iso(T0 + 5 * hour)),
    ]
    since_before = (T0 - hour).isoformat()
    assert _changes(reader, segment, since=since_before, limit=2) == expected
    assert _changes(reader, segment, since=since_before) == expected
    # Strictly after since.
    assert _changes(reader, segment, since=(T0 + hour).isoformat()) == expected[2:]
    page = reader.get(f"/v1/segments/{segment.pk}/changes", {"since": since_before}).json()
    exit_row = page["results"][3]
    assert exit_row["exit_reason"] == "rule"
    assert page["results"][0]["exit_reason"] == ""

    consent_set("u1", "analytics", "denied")
    assert _changes(reader, segment, since=since_before) == [row for row in expected if row[1] != b]


def test_changes_need_since_and_refuse_a_foreign_cursor(reader: APIClient, ids: list[int]) -> None:
    segment = segment_with(ids[:1])
    url = f"/v1/segments/{segment.pk}/changes"
    assert reader.get(url).json()["attr"] == "since"
    bad = reader.get(url, {"since": T0.isoformat(), "cursor": "not-ours"})
    assert bad.status_code == 400
    assert bad.json()["code"] == "invalid_cursor"


# --- a profile's segments ---------------------------------------------------------------------
def test_profile_segments_now_and_with_history(reader: APIClient, ids: list[int]) -> None:
    a = ids[0]
    vip = segment_with([a], name="vip")
    pro = segment_with([a], name="pro")
    gone = segment_with([], name="gone")
    Membership.objects.create(
        segment=gone, profile_id=a, entered_at=T0, exited_at=T0 + timedelta(days=1)
    )
    Membership.objects.filter(segment=vip).update(
        exited_at=T0 + timedelta(days=2), exit_reason="rule"
    )
    Membership.objects.create(segment=vip, profile_id=a, entered_at=T0 + timedelta(days=3))

    now = reader.get(f"/v1/profiles/{a}/segments").json()["results"]
    assert sorted((row["segment_id"], row["exited_at"]) for row in now) == [
        (vip.pk, None),
        (pro.pk, None),
    ]
    assert {row["name"] for row in now} == {"vip", "pro"}
    history = reader.get(f"/v1/profiles/{a}/segments", {"history": "true"}).json()["results"]
    assert [row["segment_id"] for row in history] == [vip.pk, gone.pk, pro.pk, vip.pk]
    assert history[1]["exited_at"] is not None
    assert reader.get(f"/v1/profiles/{ids[1]}/segments").json()["results"] == []
    missing = reader.get("/v1/profiles/999999/segments")
    assert missing.status_code == 404
    assert missing.json()["code"] == "profile_not_found"


# --- through the real recompute ---------------------------------------------------------------
def test_members_of_a_segment_computed_by_segment_recompute(
    api_client: Client, ids: list[int], django_capture_on_commit_callbacks: Any
) -> None:
    from segments.services.recompute import segment_recompute

    writer = api_client("segments:write", READ)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        created = writer.post(
            "/v1/segments",
            {"name": "pro", "purpose": "analytics", "min_size": 3, "definition": PLAN_PRO},
            format="json",
        )
    assert created.status_code == 201
    assert len(callbacks) == 1  # the recompute, enqueued once the segment is committed
    segment_id = created.json()["id"]
    assert members(writer, segment_id).status_code == 409  # not computed yet

    outcome = segment_recompute(segment_id=segment_id)
    assert outcome.entered == 6
    body = writer.get(f"/v1/segments/{segment_id}").json()
    assert (body["member_count"], body["too_small"], body["computed_version"]) == (6, False, 1)
    assert all_member_ids(writer, Segment.objects.get(pk=segment_id)) == sorted(ids[0::2])


def test_a_merged_profile_is_not_served_while_its_stay_is_open(
    reader: APIClient, source: SourceWithKey
) -> None:
    web = source.source.pk
    ingest(web, message("page", anonymousId="anon-1", name="Home"))
    resolve()
    ingest(web, message("identify", at=1, userId="m1", traits={"plan": "pro"}))
    resolve()
    visitor, user = pid("anonymous_id", "anon-1"), pid("user_id", "m1")
    assert visitor != user
    segment = segment_with([visitor, user])
    ingest(web, message("identify", at=2, userId="m1", anonymousId="anon-1"))
    resolve()
    survivor = pid("user_id", "m1")
    absorbed = ({visitor, user} - {survivor}).pop()
    assert Profile.objects.get(pk=absorbed).merged_into_id == survivor
    assert Membership.objects.filter(profile_id=absorbed, exited_at__isnull=True).exists()
    assert all_member_ids(reader, segment) == [survivor]


def test_members_refuse_a_cursor_they_did_not_issue(reader: APIClient, ids: list[int]) -> None:
    segment = segment_with(ids[:3])
    url = f"/v1/segments/{segment.pk}/members"
    changes = reader.get(
        f"/v1/segments/{segment.pk}/changes", {"since": (T0 - timedelta(days=1)).isoformat()}
    )
    assert changes.status_code == 200
    # not base64 JSON; [1] is fine; ["x"] and [2**64] are not
    for cursor in ("garbage", "WzFd", "WyJ4Il0", "WzE4NDQ2NzQ0MDczNzA5NTUxNjE2XQ"):
        response = reader.get(url, {"cursor": cursor})
        expected = 200 if cursor == "WzFd" else 400
        assert response.status_code == expected, cursor
        if expected == 400:
            assert response.json()["code"] == "invalid_cursor"
    assert reader.get(url, {"limit": 0}).json()["attr"] == "limit"


def test_changes_page_through_ties_one_at_a_time(reader: APIClient, ids: list[int]) -> None:
    """A full recompute enters everyone at one instant; a stay may even end at that instant."""
    segment = segment_with([])
    stays = Membership.objects.bulk_create(
        [
            Membership(segment=segment, profile_id=ids[0], entered_at=T0, exited_at=T0),
            Membership(segment=segment, profile_id=ids[1], entered_at=T0),
            Membership(segment=segment, profile_id=ids[2], entered_at=T0, exited_at=T0),
            Membership(segment=segment, profile_id=ids[3], entered_at=T0),
        ]
    )
    Segment.objects.filter(pk=segment.pk).update(too_small=False)
    url = f"/v1/segments/{segment.pk}/changes"
    page = reader.get(url, {"since": (T0 - timedelta(days=1)).isoformat(), "limit": "1"}).json()
    seen = []
    while True:
        seen += [(row["change"], row["profile_id"]) for row in page["results"]]
        if not page["next"]:
            break
        page = reader.get(page["next"]).json()
    by_stay = sorted(stays, key=lambda stay: stay.pk)
    expected = []
    for stay in by_stay:
        expected.append(("entered", stay.profile_id))
        if stay.exited_at is not None:
            expected.append(("exited", stay.profile_id))
    assert seen == expected


def test_recompute_answers_202_and_its_task_computes_the_members(
    api_client: Client, ids: list[int], django_capture_on_commit_callbacks: Any
) -> None:
    """POST .../recompute enqueues segment_recompute_full once the request commits; run
    eagerly here (the tests/live pattern runs real workers)."""
    writer = api_client("segments:write", READ)
    segment = segment_with([], min_size=3)  # stays written as data: none yet
    Segment.objects.filter(pk=segment.pk).update(computed_at=None, too_small=True)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = writer.post(f"/v1/segments/{segment.pk}/recompute")
    assert response.status_code == 202
    assert response.json() == {"segment_id": segment.pk, "version": 1, "status": "enqueued"}
    assert len(callbacks) == 1
    assert members(writer, segment).status_code == 409  # nothing ran yet

    with eager_celery(), django_capture_on_commit_callbacks(execute=True):
        writer.post(f"/v1/segments/{segment.pk}/recompute")
    run = JobRun.objects.get(task_name="segments.tasks.segment_recompute_full")
    assert run.status == JobStatus.SUCCEEDED
    assert all_member_ids(writer, segment) == sorted(ids[0::2])
    assert writer.post("/v1/segments/999999/recompute").status_code == 404
