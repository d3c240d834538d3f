"""The consent ledger end to end: choices in tracked calls and through the API, the derived
state, merges and unmerges, GPC, and activation gating."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from cdp.audit.models import AuditAction, AuditEntry
from cdp.ingestion.services import SourceWithKey
from consent.models import ConsentChannel, ConsentEntry, ConsentState
from consent.selectors import (
    allowed_sql,
    identifiers_opted_out,
    profile_consent,
    profiles_allowed,
)
from consent.services import ChoiceInput, consent_record
from identity.models import ProfileChange
from identity.selectors import identifier_find
from identity.services.linking import evidence_link
from identity.services.unmerge import profile_unmerge
from tests.conftest import post_json
from tests.identity.resolving import ingest, message, pid, resolve

pytestmark = pytest.mark.django_db

BANNER_DENY_ADS = {"consent": {"categoryPreferences": {"Advertising": False, "Analytics": True}}}


def states(profile_id: int) -> dict[str, str]:
    return {state.purpose: state.status for state in profile_consent(profile_id)}


def consent_body(status: str, purpose: str = "marketing_email", **identifier: str) -> Any:
    return {**identifier, "choices": [{"purpose": purpose, "status": status}]}


@pytest.fixture
def consent_client(api_client: Callable[..., APIClient]) -> APIClient:
    return api_client("consent:write", "profiles:read")


def test_choices_in_tracked_calls_are_recorded_once(source: SourceWithKey) -> None:
    sid = source.source.pk
    ingest(
        sid,
        message("identify", userId="u1", traits={"plan": "pro"}, context=BANNER_DENY_ADS),
        # The banner resends its state with every call: not a new choice.
        message("track", at=1, userId="u1", context=BANNER_DENY_ADS),
        message("page", at=2, userId="u1", context=BANNER_DENY_ADS),
    )
    resolve()
    profile = pid("user_id", "u1")
    assert states(profile)["advertising"] == "denied"
    assert states(profile)["analytics"] == "granted"
    assert ConsentEntry.objects.count() == 2
    entry = ConsentEntry.objects.get(purpose="advertising")
    assert (entry.channel, entry.source_id, entry.actor) == ("event", sid, "resolver")
    assert entry.event_id is not None

    # Taking a grant back is a withdrawal.
    ingest(
        sid,
        message(
            "track",
            at=3,
            userId="u1",
            context={"consent": {"categoryPreferences": {"Analytics": False}}},
        ),
    )
    resolve()
    assert states(profile)["analytics"] == "withdrawn"
    assert ConsentEntry.objects.count() == 3


def test_unknown_purposes_keep_their_defaults(source: SourceWithKey) -> None:
    ingest(source.source.pk, message("identify", userId="u1"))
    resolve()
    shown = {
        s.purpose: (s.status, s.allowed, s.is_default)
        for s in profile_consent(pid("user_id", "u1"))
    }
    assert shown["analytics"] == ("granted", True, True)
    assert shown["marketing_email"] == ("denied", False, True)


def test_gpc_header_is_an_opt_out_of_sale_and_advertising(
    source: SourceWithKey, tracking_client: APIClient
) -> None:
    response = post_json(
        tracking_client,
        "/v1/track",
        {"userId": "u-gpc", "event": "Viewed", "messageId": "m-1"},
        HTTP_SEC_GPC="1",
    )
    assert response.status_code == 200
    post_json(tracking_client, "/v1/track", {"userId": "u-nogpc", "event": "Viewed"})
    resolve()
    gpc = states(pid("user_id", "u-gpc"))
    assert (gpc["sale_or_share"], gpc["advertising"]) == ("denied", "denied")
    assert ConsentEntry.objects.filter(channel="gpc").count() == 2
    assert states(pid("user_id", "u-nogpc"))["sale_or_share"] == "granted"  # the default


def test_gpc_in_the_batch_context_and_the_event_overriding_it(
    source: SourceWithKey, tracking_client: APIClient
) -> None:
    body = {
        "batch": [
            {"type": "track", "userId": "u1", "event": "A"},
            {"type": "track", "userId": "u2", "event": "A", "context": {"gpc": False}},
        ]
    }
    assert post_json(tracking_client, "/v1/batch", body, HTTP_SEC_GPC="1").status_code == 200
    resolve()
    assert states(pid("user_id", "u1"))["sale_or_share"] == "denied"
    assert states(pid("user_id", "u2"))["sale_or_share"] == "granted"


def _two_people_then_merge(sid: int, consent_client: APIClient) -> tuple[int, int]:
    """An anonymous visitor who refused marketing mail, and a user who granted it; then an
    identify call says they are one person. Returns (the visitor's, the user's) profiles."""
    ingest(
        sid,
        message("identify", anonymousId="a1", traits={"email": "ada@example.com"}),
        message("identify", userId="u1", traits={"plan": "pro"}),
    )
    resolve()
    visitor, user = pid("anonymous_id", "a1"), pid("user_id", "u1")
    assert (
        post_json(
            consent_client, "/v1/consent", consent_body("denied", anonymous_id="a1")
        ).status_code
        == 200
    )
    assert (
        post_json(consent_client, "/v1/consent", consent_body("granted", user_id="u1")).status_code
        == 200
    )
    assert states(visitor)["marketing_email"] == "denied"
    assert states(user)["marketing_email"] == "granted"
    ingest(sid, message("identify", at=60, userId="u1", anonymousId="a1"))
    resolve()
    return visitor, user


def test_merge_most_restrictive_wins_until_the_merged_person_grants(
    source: SourceWithKey, consent_client: APIClient
) -> None:
    visitor, user = _two_people_then_merge(source.source.pk, consent_client)
    merged = pid("user_id", "u1")
    assert merged == pid("anonymous_id", "a1")
    assert states(merged)["marketing_email"] == "denied"
    assert not ConsentState.objects.filter(profile_id__in={visitor, user} - {merged}).exists()

    response = post_json(consent_client, "/v1/consent", consent_body("granted", user_id="u1"))
    assert response.status_code == 200
    assert {s["purpose"]: s["status"] for s in response.json()["states"]}["marketing_email"] == (
        "granted"
    )
    assert states(merged)["marketing_email"] == "granted"


def test_unmerge_gives_each_side_its_own_ledger(
    source: SourceWithKey, consent_client: APIClient
) -> None:
    _two_people_then_merge(source.source.pk, consent_client)
    merged = pid("user_id", "u1")
    a1 = identifier_find(kind="anonymous_id", raw_value="a1")
    assert a1 is not None
    profile_unmerge(profile_id=merged, actor="test", reason="wrong merge", identifier_id=a1.pk)
    assert pid("user_id", "u1") != pid("anonymous_id", "a1")
    assert states(pid("user_id", "u1"))["marketing_email"] == "granted"
    assert states(pid("anonymous_id", "a1"))["marketing_email"] == "denied"


def test_an_unsubscribed_address_stays_opted_out(
    source: SourceWithKey, consent_client: APIClient
) -> None:
    ingest(
        source.source.pk,
        message("identify", userId="u1", traits={"email": "ada@example.com"}),
    )
    resolve()
    email = identifier_find(kind="email", raw_value="ada@example.com")
    assert email is not None
    consent_record(
        identifier_id=email.pk,
        choices=[
            ChoiceInput(
                purpose="marketing_email",
                status="denied",
                channel=ConsentChannel.UNSUBSCRIBE,
                address_bound=True,
            )
        ],
        actor="subject",
        audit_action=AuditAction.UNSUBSCRIBE,
    )
    post_json(consent_client, "/v1/consent", consent_body("granted", user_id="u1"))
    profile = pid("user_id", "u1")
    assert states(profile)["marketing_email"] == "granted"
    assert identifiers_opted_out([profile], "marketing_email") == {email.pk}


def test_api_validation_scopes_and_audit(
    source: SourceWithKey,
    api_client: Callable[..., APIClient],
    consent_client: APIClient,
) -> None:
    ingest(source.source.pk, message("identify", userId="u1", traits={"email": "ada@example.com"}))
    resolve()
    reader = api_client("profiles:read")
    assert (
        post_json(reader, "/v1/consent", consent_body("granted", user_id="u1")).status_code == 403
    )
    missing = post_json(consent_client, "/v1/consent", consent_body("granted", email="x@y.org"))
    assert missing.status_code == 404
    assert "x@y.org" not in missing.content.decode()
    unknown = post_json(
        consent_client, "/v1/consent", consent_body("granted", "telepathy", user_id="u1")
    )
    assert (unknown.status_code, unknown.json()["attr"]) == (400, "purpose")
    future = post_json(
        consent_client,
        "/v1/consent",
        {**consent_body("granted", user_id="u1"), "given_at": "2999-01-01T00:00:00Z"},
    )
    assert (future.status_code, future.json()["attr"]) == (400, "given_at")
    twice = post_json(
        consent_client,
        "/v1/consent",
        {
            "user_id": "u1",
            "choices": [
                {"purpose": "analytics", "status": "granted"},
                {"purpose": "analytics", "status": "denied"},
            ],
        },
    )
    assert twice.status_code == 400
    assert ConsentEntry.objects.count() == 0

    ok = post_json(
        consent_client,
        "/v1/consent",
        {
            "email": " Ada@Example.com ",
            "choices": [
                {"purpose": "marketing_email", "status": "granted", "policy_version": "v3"}
            ],
            "proof": {"ip": "203.0.113.9", "user_agent": "Mozilla/5.0"},
        },
    )
    assert ok.status_code == 200, ok.json()
    assert ok.json()["recorded"] == 1
    entry = ConsentEntry.objects.get()
    assert (entry.channel, entry.policy_version, entry.proof_user_agent) == (
        "api",
        "v3",
        "Mozilla/5.0",
    )
    assert len(entry.proof_ip_digest) == 64 and "203.0.113.9" not in entry.proof_ip_digest
    audit = AuditEntry.objects.get(action=AuditAction.CONSENT_RECORDED)
    assert audit.actor.startswith("api:test #")
    assert audit.target_type == "profile"
    assert "ada@example.com" not in str(audit.details).lower()

    profile = pid("user_id", "u1")
    listed = reader.get(f"/v1/profiles/{profile}/consent/ledger")
    assert listed.status_code == 200
    assert [row["purpose"] for row in listed.json()["results"]] == ["marketing_email"]
    shown = reader.get(f"/v1/profiles/{profile}/consent").json()
    assert {s["purpose"]: s["allowed"] for s in shown["states"]}["marketing_email"] is True
    assert reader.get("/v1/profiles/999999/consent").status_code == 404


def test_gating_selectors_agree(source: SourceWithKey, consent_client: APIClient) -> None:
    ingest(
        source.source.pk,
        *(message("identify", userId=f"u{i}") for i in range(4)),
    )
    resolve()
    ids = [pid("user_id", f"u{i}") for i in range(4)]
    post_json(consent_client, "/v1/consent", consent_body("granted", user_id="u0"))
    post_json(consent_client, "/v1/consent", consent_body("denied", "analytics", user_id="u1"))
    assert profiles_allowed(ids, "marketing_email") == {ids[0]}  # opt-in: only the grant
    assert profiles_allowed(ids, "analytics") == set(ids) - {ids[1]}  # opt-out: all but the denial
    for purpose in ("marketing_email", "analytics"):
        sql, params = allowed_sql(purpose, profile_column="p.id")
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT p.id FROM identity_profile AS p WHERE p.id = ANY(%s) AND {sql}",  # noqa: S608
                [ids, *params],
            )
            assert {row[0] for row in cursor.fetchall()} == profiles_allowed(ids, purpose)
    with pytest.raises(LookupError):
        profiles_allowed(ids, "telepathy")
    with pytest.raises(ValueError, match="column"):
        allowed_sql("analytics", profile_column="p.id; DROP TABLE x")


def test_a_probabilistic_merge_derives_consent_like_any_merge(
    source: SourceWithKey, consent_client: APIClient
) -> None:
    """Approved or auto-merged matches go through evidence links: the merged person's state is
    the most restrictive, and the absorbed profile keeps no state of its own."""
    ingest(
        source.source.pk,
        message("identify", anonymousId="a1"),
        message("identify", userId="u1"),
    )
    resolve()
    visitor, user = pid("anonymous_id", "a1"), pid("user_id", "u1")
    post_json(consent_client, "/v1/consent", consent_body("granted", anonymous_id="a1"))
    post_json(consent_client, "/v1/consent", consent_body("denied", user_id="u1"))
    a1 = identifier_find(kind="anonymous_id", raw_value="a1")
    u1 = identifier_find(kind="user_id", raw_value="u1")
    assert a1 is not None and u1 is not None
    linked = evidence_link(
        a_id=a1.pk, b_id=u1.pk, rule="probabilistic", score=0.99, evidence={}, actor="matcher"
    )
    assert linked.applied
    merged = pid("user_id", "u1")
    assert merged == pid("anonymous_id", "a1")
    assert states(merged)["marketing_email"] == "denied"
    assert profiles_allowed([merged], "marketing_email") == set()
    absorbed = ({visitor, user} - {merged}).pop()
    assert not ConsentState.objects.filter(profile_id=absorbed).exists()


def test_a_consent_change_marks_the_profile_for_segments(
    source: SourceWithKey, consent_client: APIClient
) -> None:
    ingest(source.source.pk, message("identify", userId="u1"))
    resolve()
    profile = pid("user_id", "u1")
    ProfileChange.objects.all().delete()
    post_json(consent_client, "/v1/consent", consent_body("granted", user_id="u1"))
    assert ProfileChange.objects.filter(profile_id=profile).exists()
