"""Probabilistic matching end to end: CRM records and identify calls through the real ingestion
and resolver, then the matcher, the review queue and its guardrails."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from cdp.ingestion.services import source_create
from identity.matching import services
from identity.matching.decisions import match_candidate_reject
from identity.matching.services import matching_full, matching_incremental
from identity.models import Edge, EdgeRule, MatchCandidate, MatchStatus
from tests.identity.resolving import ingest, message, pid, resolve, upsert

pytestmark = pytest.mark.django_db

JON = {
    "external_id": "c-1",
    "first_name": "Jon",
    "last_name": "Smith",
    "street": "12 High Street",
    "postcode": "SW1A 1AA",
    "city": "London",
    "birth_date": "1980-04-07",
}
JONATHAN = {  # the same person in another system: full first name, birth day and month swapped
    "external_id": "w-9",
    "first_name": "Jonathan",
    "last_name": "Smith",
    "street": "12 High St",
    "postcode": "SW1A1AA",
    "city": "London",
    "birth_date": "1980-07-04",
    "email": "jonathan.smith@example.com",
}
NAMESAKE = {  # same name and city only: a review, never a merge
    "external_id": "c-2",
    "first_name": "Jon",
    "last_name": "Smith",
    "city": "London",
}
STRANGER = {
    "external_id": "c-3",
    "first_name": "Maria",
    "last_name": "Garcia",
    "street": "4 Elm Road",
    "postcode": "M1 2AB",
    "city": "Manchester",
    "birth_date": "1991-11-30",
}


@pytest.fixture
def crm() -> int:
    return source_create(name="crm").source.pk


def external(source: str, external_id: str) -> int:
    return pid("external", f"{source}:{external_id}")


def candidate_between(a: int, b: int) -> MatchCandidate:
    found = [
        c
        for c in MatchCandidate.objects.all()
        if {profile_of_identifier(c.a_id), profile_of_identifier(c.b_id)} == {a, b}
    ]
    assert len(found) == 1, found
    return found[0]


def profile_of_identifier(identifier_id: int) -> int:
    from identity.models import Identifier
    from identity.selectors import profile_current

    profile_id = Identifier.objects.get(pk=identifier_id).profile_id
    assert profile_id is not None
    current = profile_current(profile_id)
    assert current is not None
    return current.pk


def test_thresholds_route_to_merge_review_and_drop(crm: int) -> None:
    upsert(crm, JON, JONATHAN, NAMESAKE, STRANGER)
    resolve()
    jon, namesake, stranger = (external("crm", x) for x in ("c-1", "c-2", "c-3"))
    before = external("crm", "w-9")
    assert before != jon

    report = matching_full()

    # Auto-merged; the older profile survives, and which is older depends on the order the
    # resolver created them in (by blind index, so by the deployment's key).
    merged = external("crm", "c-1")
    assert external("crm", "w-9") == merged and merged == min(jon, before)
    edge = Edge.objects.get(rule=EdgeRule.PROBABILISTIC)
    assert edge.applied and edge.score is not None and edge.score >= 0.9
    assert edge.evidence["weights"]["birth_date_near"] > 0  # the swapped day/month helped
    review = candidate_between(merged, namesake)
    assert review.status == MatchStatus.PENDING and 0.3 <= review.score < 0.9
    assert external("crm", "c-2") == namesake  # not merged
    assert not any(
        stranger in {profile_of_identifier(c.a_id), profile_of_identifier(c.b_id)}
        for c in MatchCandidate.objects.exclude(status=MatchStatus.DROPPED)
    )
    assert report.merged == 1


def test_approve_merges_with_evidence_and_reject_is_remembered_until_data_changes(
    crm: int, api_client: Any, settings: Any
) -> None:
    upsert(crm, JON, NAMESAKE)
    resolve()
    matching_full()
    jon, namesake = external("crm", "c-1"), external("crm", "c-2")
    pending = candidate_between(jon, namesake)
    assert pending.status == MatchStatus.PENDING
    reader = api_client("profiles:read")
    listed = reader.get("/v1/match-candidates", {"status": "pending"}).json()["results"]
    assert [c["id"] for c in listed] == [pending.pk]
    assert listed[0]["a"]["fields"]["last_name"] == "[redacted]"
    assert {row["feature"] for row in listed[0]["comparison"]} >= {"first_name", "birth_date"}
    assert reader.post(f"/v1/match-candidates/{pending.pk}/reject").status_code == 403

    writer = api_client("profiles:write", "profiles:read")
    rejected = writer.post(
        f"/v1/match-candidates/{pending.pk}/reject", {"reason": "twins"}, format="json"
    )
    assert rejected.status_code == 200, rejected.json()
    assert rejected.json()["status"] == "rejected"
    assert writer.post(f"/v1/match-candidates/{pending.pk}/approve").status_code == 409
    matching_full()  # same data: the pair does not come back
    pending.refresh_from_db()
    assert pending.status == MatchStatus.REJECTED

    upsert(crm, {**NAMESAKE, "birth_date": "1980-04-07", "street": "12 High Street"})
    resolve()
    # Nothing auto-merges in this pass: the steward's approval is what links the pair.
    settings.CDP_MATCHING = {**settings.CDP_MATCHING, "UPPER": 1.0, "BRIDGE_SCORE": 1.0}
    matching_incremental()  # the namesake changed: the pair is scored again
    pending.refresh_from_db()
    assert pending.status == MatchStatus.PENDING
    assert external("crm", "c-1") != external("crm", "c-2")
    approved = writer.post(f"/v1/match-candidates/{pending.pk}/approve")
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    assert external("crm", "c-1") == external("crm", "c-2")
    edge = Edge.objects.get(rule=EdgeRule.PROBABILISTIC)
    assert edge.applied and set(edge.evidence["weights"]) >= {"first_name", "street"}


def test_a_probabilistic_edge_never_joins_two_user_ids(source: Any, crm: int) -> None:
    traits = {
        "firstName": "Jon",
        "lastName": "Smith",
        "birthday": "1980-04-07",
        "address": {"street": "12 High Street", "city": "London", "postalCode": "SW1A 1AA"},
    }
    ingest(
        source.source.pk,
        message("identify", userId="u-1", traits=traits),
        message("identify", userId="u-2", traits=traits),
    )
    upsert(crm, JON)
    resolve()
    matching_full()
    assert pid("user_id", "u-1") != pid("user_id", "u-2")
    statuses = sorted(MatchCandidate.objects.values_list("status", flat=True))
    assert MatchStatus.CONFLICT in statuses  # the second user id's merge is refused
    assert MatchStatus.AUTO_MERGED in statuses  # the CRM record joins one of them
    conflict = MatchCandidate.objects.filter(status=MatchStatus.CONFLICT).first()
    assert conflict is not None and conflict.conflict == "limit:user_id"


def test_identify_traits_match_a_crm_record(source: Any, crm: int) -> None:
    """The web profile (email, name) and the CRM record (name, street) are one person."""
    ingest(
        source.source.pk,
        message(
            "identify",
            userId="u-7",
            traits={
                "email": "jonathan.smith@example.com",
                "name": "Jonathan Smith",
                "birthday": "1980-07-04",
                "address": {"street": "12 High St", "postalCode": "SW1A1AA"},
            },
        ),
    )
    upsert(crm, JON)
    resolve()
    matching_full()
    assert pid("user_id", "u-7") == external("crm", "c-1")


def test_nothing_written_holds_a_plaintext_value(crm: int) -> None:
    upsert(crm, JON, JONATHAN, NAMESAKE, STRANGER)
    resolve()
    matching_full()
    with connection.cursor() as cursor:
        dumped = []
        for table in (
            "identity_matchcandidate",
            "identity_matchprofile",
            "identity_matchmodel",
            "identity_edge",
            "identity_mergeledgerentry",
        ):
            cursor.execute(f"SELECT t::text FROM {table} t")  # noqa: S608
            dumped += [row[0].lower() for row in cursor.fetchall()]
    text = "\n".join(dumped)
    assert "probabilistic" in text  # the dump is the real one
    for record in (JON, JONATHAN, STRANGER):
        for name, value in record.items():
            if name != "external_id":
                assert value.lower() not in text, name
    for word in ("jonathan", "smith", "garcia", "high st", "sw1a", "1980"):
        assert word not in text, word


def test_a_pass_never_overwrites_a_stewards_decision_on_unchanged_data(
    crm: int, monkeypatch: Any
) -> None:
    upsert(crm, JON, NAMESAKE)
    resolve()
    matching_full()
    pending = candidate_between(external("crm", "c-1"), external("crm", "c-2"))
    # The next pass read the pair as pending just before the steward rejected it.
    read = services._known_candidates

    def read_before_the_decision(*args: Any) -> dict[Any, Any]:
        return {
            pair: (MatchStatus.PENDING, *rest) if isinstance(rest, tuple) else value
            for pair, value in read(*args).items()
            for rest in [value[1:] if isinstance(value, tuple) else None]
        }

    monkeypatch.setattr(services, "_known_candidates", read_before_the_decision)
    match_candidate_reject(candidate_id=pending.pk, actor="steward", reason="twins")
    matching_full()
    pending.refresh_from_db()
    assert (pending.status, pending.decided_by, pending.reason) == (
        MatchStatus.REJECTED,
        "steward",
        "twins",
    )
