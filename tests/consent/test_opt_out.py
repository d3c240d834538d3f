"""POST /v1/privacy/opt-out: scopes, unknown identifiers, the default GPC purposes, the ledger
entries it writes, the resulting states, gating and the audit entry."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from cdp.api.models import ApiToken
from cdp.audit.models import AuditAction, AuditEntry
from cdp.ingestion.services import SourceWithKey
from consent.models import ConsentChannel, ConsentEntry, ConsentStatus, LegalBasis
from consent.purposes import GPC_PURPOSES
from consent.selectors import profiles_allowed
from consent.services import ChoiceInput, consent_record
from identity.selectors import identifier_find
from tests.conftest import post_json
from tests.identity.resolving import ingest, message, pid, resolve

pytestmark = pytest.mark.django_db

EMAIL = "grace.hopper@example.com"
URL = "/v1/privacy/opt-out"


@pytest.fixture
def person(source: SourceWithKey) -> int:
    ingest(source.source.pk, message("identify", userId="u7", traits={"email": EMAIL}))
    resolve()
    return pid("user_id", "u7")


@pytest.fixture
def privacy(api_client: Callable[..., APIClient]) -> APIClient:
    return api_client("privacy:write")


def by_purpose(body: dict[str, object]) -> dict[str, dict[str, object]]:
    states = body["states"]
    assert isinstance(states, list)
    return {state["purpose"]: state for state in states}


def test_scopes(person: int, api_client: Callable[..., APIClient]) -> None:
    assert post_json(APIClient(), URL, {"email": EMAIL}).status_code == 401
    writer = api_client("profiles:write", "consent:write")
    assert post_json(writer, URL, {"email": EMAIL}).status_code == 403
    assert ConsentEntry.objects.count() == 0


def test_unknown_identifier_is_404_without_echo(person: int, privacy: APIClient) -> None:
    answer = post_json(privacy, URL, {"email": "nobody.here@example.org", "reason": "T-1"})
    assert answer.status_code == 404
    assert answer.json()["code"] == "identifier_not_found"
    assert "nobody" not in answer.content.decode()
    invalid = post_json(privacy, URL, {"email": "nobody", "user_id": "u7"})
    assert invalid.status_code == 400 and "nobody" not in invalid.content.decode()
    assert ConsentEntry.objects.count() == 0


def test_default_purposes_are_the_gpc_ones(person: int, privacy: APIClient) -> None:
    assert profiles_allowed([person], "sale_or_share") == {person}
    answer = post_json(
        privacy,
        URL,
        {
            "email": EMAIL,
            "proof": {"ip": "203.0.113.9", "user_agent": "CCPA form/2"},
            "reason": "Ticket 4711",
        },
    )
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert (body["profile_id"], body["recorded"]) == (person, 2)
    states = by_purpose(body)
    for purpose in GPC_PURPOSES:
        assert (states[purpose]["status"], states[purpose]["allowed"]) == ("denied", False)
        assert states[purpose]["is_default"] is False
    assert states["analytics"]["is_default"] is True
    assert profiles_allowed([person], "sale_or_share") == set()

    email = identifier_find(kind="email", raw_value=EMAIL)
    assert email is not None
    entries = ConsentEntry.objects.order_by("purpose")
    assert [e.purpose for e in entries] == sorted(GPC_PURPOSES)
    token = ApiToken.objects.get()
    for entry in entries:
        assert entry.identifier_id == email.pk
        assert (entry.channel, entry.status) == (ConsentChannel.OPT_OUT, ConsentStatus.DENIED)
        assert entry.legal_basis == LegalBasis.LEGAL_OBLIGATION
        assert token.name in entry.actor and str(token.pk) in entry.actor  # the token, by id
        assert entry.proof_ip_digest and "203.0.113.9" not in entry.proof_ip_digest
        assert entry.proof_user_agent == "CCPA form/2"
        assert entry.address_bound is False  # the person's opt-out, not an address's
    audit = AuditEntry.objects.get(action=AuditAction.OPT_OUT)
    assert (audit.target_type, audit.target_id) == ("profile", str(person))
    assert audit.actor == entries[0].actor
    assert audit.details["reason"] == "Ticket 4711"
    assert audit.details["identifier_id"] == email.pk
    assert {c["purpose"] for c in audit.details["choices"]} == set(GPC_PURPOSES)
    assert EMAIL not in str(audit.details) and "203.0.113.9" not in str(audit.details)


def test_a_granted_purpose_is_withdrawn_and_others_are_kept(
    person: int, privacy: APIClient
) -> None:
    user = identifier_find(kind="user_id", raw_value="u7")
    assert user is not None
    consent_record(
        identifier_id=user.pk,
        choices=[
            ChoiceInput(purpose="advertising", status="granted", channel=ConsentChannel.API),
            ChoiceInput(purpose="marketing_email", status="granted", channel=ConsentChannel.API),
        ],
        actor="test",
        audit_action=AuditAction.CONSENT_RECORDED,
    )
    answer = post_json(privacy, URL, {"user_id": "u7", "purposes": ["advertising"]})
    assert answer.status_code == 200, answer.content
    states = by_purpose(answer.json())
    assert states["advertising"]["status"] == "withdrawn"
    assert states["marketing_email"]["status"] == "granted"
    assert states["sale_or_share"]["is_default"] is True
    assert answer.json()["recorded"] == 1
    # An explicit request always counts, even when it repeats the current state.
    again = post_json(privacy, URL, {"user_id": "u7", "purposes": ["advertising", "advertising"]})
    assert (again.status_code, again.json()["recorded"]) == (200, 1)


def test_invalid_purposes(person: int, privacy: APIClient) -> None:
    unknown = post_json(privacy, URL, {"email": EMAIL, "purposes": ["telepathy"]})
    assert (unknown.status_code, unknown.json()["code"]) == (400, "unknown_purpose")
    empty = post_json(privacy, URL, {"email": EMAIL, "purposes": []})
    assert (empty.status_code, empty.json()["attr"]) == (400, "purposes")
    bad_ip = post_json(privacy, URL, {"email": EMAIL, "proof": {"ip": "not-an-ip"}})
    assert (bad_ip.status_code, bad_ip.json()["attr"]) == (400, "proof.ip")
    assert ConsentEntry.objects.count() == 0
    assert not AuditEntry.objects.filter(action=AuditAction.OPT_OUT).exists()
