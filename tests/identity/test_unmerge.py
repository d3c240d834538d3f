"""Unmerge: invalidate evidence, split only that component, and give both sides their own back."""

from __future__ import annotations

from typing import Any

import pytest

from cdp.api.errors import Conflict, InvalidInput, NotFound
from cdp.ingestion.models import Event
from cdp.ingestion.services import SourceWithKey, source_create
from identity.models import Edge, EdgeRule, Identifier, LedgerAction, MergeLedgerEntry, Profile
from identity.services.unmerge import profile_unmerge
from tests.identity.resolving import ingest, message, pid, resolve, upsert

pytestmark = pytest.mark.django_db


@pytest.fixture
def web(source: SourceWithKey) -> int:
    return source.source.pk


def _side(profile_id: int) -> dict[str, Any]:
    """Everything a profile is: its identifiers, its events, its traits and counters."""
    profile = Profile.objects.get(pk=profile_id)
    identifiers = sorted(
        Identifier.objects.filter(profile_id=profile_id).values_list("pk", flat=True)
    )
    return {
        "identifiers": identifiers,
        "events": sorted(
            Event.objects.filter(identifier_id__in=identifiers).values_list("pk", flat=True)
        ),
        "traits": {name: t.get("value", "pii") for name, t in profile.traits.items()},
        "event_count": profile.event_count,
        "first_seen_at": profile.first_seen_at,
        "last_seen_at": profile.last_seen_at,
        "merged_into": profile.merged_into_id,
    }


def _two_people(web: int) -> tuple[int, int]:
    ingest(
        web,
        message("page", anonymousId="anon-1", name="Home"),
        message("identify", at=1, anonymousId="anon-1", traits={"plan": "free", "email": "v@x.io"}),
        message("track", at=2, userId="u1", event="Signed In"),
        message("identify", at=3, userId="u1", traits={"plan": "pro", "city": "Leeds"}),
    )
    resolve()
    return pid("anonymous_id", "anon-1"), pid("user_id", "u1")


def test_merge_then_unmerge_restores_both_sides_exactly(web: int) -> None:
    visitor, user = _two_people(web)
    before_visitor, before_user = _side(visitor), _side(user)
    ingest(web, message("identify", at=4, userId="u1", anonymousId="anon-1"))
    resolve()
    assert pid("user_id", "u1") == visitor
    merged = _side(visitor)
    assert merged["event_count"] == 5
    edge = Edge.objects.get(rule=EdgeRule.IDENTIFY, a__kind="anonymous_id", b__kind="user_id")

    result = profile_unmerge(
        profile_id=visitor, edge_ids=[edge.pk], actor="api:steward", reason="shared laptop"
    )

    assert result.split and result.profiles == [user]  # the user's earlier profile id is back
    assert pid("user_id", "u1") == user and pid("anonymous_id", "anon-1") == visitor
    after_visitor, after_user = _side(visitor), _side(user)
    # The identify event that linked them is anchored on u1 and stays with the user's side.
    assert after_visitor == before_visitor
    assert after_user["identifiers"] == before_user["identifiers"]
    assert after_user["traits"] == before_user["traits"]
    assert after_user["events"] == sorted([*before_user["events"], _last_event()])
    assert after_user["merged_into"] is None
    edge.refresh_from_db()
    assert edge.invalidated_by == "api:steward" and edge.invalidation_reason == "shared laptop"
    entry = MergeLedgerEntry.objects.get(action=LedgerAction.UNMERGE)
    assert (entry.profile_id, entry.other_profile_id, entry.edge_id) == (visitor, user, edge.pk)


def _last_event() -> int:
    return Event.objects.order_by("-id").values_list("pk", flat=True)[0]


def test_an_invalidated_edge_is_not_reapplied_by_a_later_resolver_run(web: int) -> None:
    visitor, user = _two_people(web)
    ingest(web, message("identify", at=4, userId="u1", anonymousId="anon-1"))
    resolve()
    edge = Edge.objects.get(a__kind="anonymous_id", b__kind="user_id")
    profile_unmerge(profile_id=visitor, edge_ids=[edge.pk], actor="admin:x", reason="wrong")
    ingest(web, message("track", at=9, userId="u1"))
    resolve()
    assert pid("user_id", "u1") == user != pid("anonymous_id", "anon-1")


def test_a_component_held_by_other_evidence_does_not_split(web: int) -> None:
    ingest(
        web,
        message("identify", userId="u1", anonymousId="a1", traits={"email": "p@x.io"}),
        message("identify", at=1, anonymousId="a1", traits={"email": "p@x.io"}),
    )
    resolve()
    profile = pid("user_id", "u1")
    edge = Edge.objects.filter(
        a__kind="user_id", b__kind="anonymous_id"
    ).first() or Edge.objects.get(a__kind="anonymous_id", b__kind="user_id")
    result = profile_unmerge(profile_id=profile, edge_ids=[edge.pk], actor="t", reason="check")
    assert not result.split
    assert result.still_connected_by is not None and len(result.still_connected_by) == 3
    assert pid("anonymous_id", "a1") == profile


def test_detaching_an_identifier_moves_its_events_and_traits(web: int) -> None:
    crm = source_create(name="crm").source.pk
    upsert(crm, {"external_id": "C-1", "email": "ada@x.io", "city": "York"})
    ingest(web, message("identify", userId="u1", traits={"email": "ada@x.io"}))
    resolve()
    profile = pid("user_id", "u1")
    assert pid("external", "crm:C-1") == profile
    record = Identifier.objects.get(kind="external")
    result = profile_unmerge(profile_id=profile, identifier_id=record.pk, actor="t", reason="x")
    assert result.split
    assert pid("external", "crm:C-1") != profile
    assert "city" in Profile.objects.get(pk=pid("external", "crm:C-1")).traits
    assert "city" not in Profile.objects.get(pk=profile).traits


def test_unmerge_refuses_what_it_cannot_do(web: int) -> None:
    visitor, user = _two_people(web)
    with pytest.raises(InvalidInput):
        profile_unmerge(profile_id=visitor, actor="t")
    with pytest.raises(NotFound):
        profile_unmerge(profile_id=999_999, edge_ids=[1], actor="t")
    with pytest.raises(NotFound):
        profile_unmerge(profile_id=user, edge_ids=[999_999], actor="t")
    ingest(web, message("identify", at=4, userId="u1", anonymousId="anon-1"))
    resolve()
    edge = Edge.objects.get(a__kind="anonymous_id", b__kind="user_id")
    with pytest.raises(Conflict):  # merged away: unmerge at the survivor
        profile_unmerge(profile_id=user, edge_ids=[edge.pk], actor="t")
    profile_unmerge(profile_id=visitor, edge_ids=[edge.pk], actor="t")
    with pytest.raises(NotFound):  # no longer inside the visitor's profile
        profile_unmerge(profile_id=visitor, edge_ids=[edge.pk], actor="t")
