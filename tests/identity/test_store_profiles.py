"""Profiles follow merges to their survivor, and the graph tables keep their invariants."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from cdp.ingestion.models import Record
from cdp.ingestion.services import SourceWithKey, records_upsert
from identity.models import Edge, EdgeRule, Identifier, Profile
from identity.selectors import profile_current
from identity.services import identifiers_get_or_create

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _chain(length: int) -> list[Profile]:
    """Profiles p0 <- p1 <- ... : each merged into the one before."""
    profiles = [Profile.objects.create()]
    for _ in range(length - 1):
        profiles.append(Profile.objects.create(merged_into=profiles[-1]))
    return profiles


def test_profile_current_follows_merged_into_to_the_survivor() -> None:
    survivor, middle, last = _chain(3)
    with CaptureQueriesContext(connection) as context:
        assert profile_current(last.pk) == survivor
    assert len(context) == 1
    assert profile_current(middle.pk) == survivor
    assert profile_current(survivor.pk) == survivor
    assert profile_current(last.pk + 1000) is None


def test_profile_current_stops_on_a_cycle_and_on_a_runaway_chain(caplog: Any) -> None:
    first, second = Profile.objects.create(), Profile.objects.create()
    Profile.objects.filter(pk=first.pk).update(merged_into=second)
    Profile.objects.filter(pk=second.pk).update(merged_into=first)
    assert profile_current(first.pk) is None
    assert "does not end within" in caplog.text

    long = _chain(70)
    assert profile_current(long[-1].pk) is None
    assert profile_current(long[10].pk) == long[0]


def test_a_profile_cannot_be_merged_into_itself() -> None:
    profile = Profile.objects.create()
    with pytest.raises(IntegrityError), transaction.atomic():
        Profile.objects.filter(pk=profile.pk).update(merged_into=profile)


def _pair() -> tuple[Identifier, Identifier]:
    found = identifiers_get_or_create(
        items=[("user_id", "u-1"), ("email", "u1@shop.io")], seen_at=T0
    )
    a, b = sorted(found.values(), key=lambda row: row.pk)
    return a, b


def _edge(a: Identifier, b: Identifier, **fields: Any) -> Edge:
    return Edge.objects.create(a=a, b=b, **fields)


def test_edges_are_stored_low_id_first_and_evidence_is_stored_once() -> None:
    a, b = _pair()
    _edge(a, b, rule=EdgeRule.IDENTIFY, event_id=7)
    with pytest.raises(IntegrityError), transaction.atomic():
        _edge(b, a, rule=EdgeRule.IDENTIFY, event_id=8)
    with pytest.raises(IntegrityError), transaction.atomic():
        _edge(a, b, rule=EdgeRule.IDENTIFY, event_id=7)
    _edge(a, b, rule=EdgeRule.IDENTIFY, event_id=9)  # another event: more evidence
    _edge(a, b, rule=EdgeRule.PROBABILISTIC, score=0.93, evidence={"email": 0.6})
    with pytest.raises(IntegrityError), transaction.atomic():
        _edge(a, b, rule=EdgeRule.PROBABILISTIC, score=0.95)


def test_a_manual_link_can_be_made_again_after_an_unmerge() -> None:
    a, b = _pair()
    first = _edge(a, b, rule=EdgeRule.MANUAL)
    with pytest.raises(IntegrityError), transaction.atomic():
        _edge(a, b, rule=EdgeRule.MANUAL)
    Edge.objects.filter(pk=first.pk).update(
        invalidated_at=T0, invalidated_by="admin:ops", invalidation_reason="two people"
    )
    _edge(a, b, rule=EdgeRule.MANUAL)


def test_edge_conflict_and_invalidation_are_consistent() -> None:
    a, b = _pair()
    with pytest.raises(IntegrityError), transaction.atomic():
        _edge(a, b, rule=EdgeRule.IDENTIFY, event_id=1, applied=False)  # no reason given
    with pytest.raises(IntegrityError), transaction.atomic():
        _edge(a, b, rule=EdgeRule.IDENTIFY, event_id=1, invalidated_at=T0)  # nobody did it
    _edge(a, b, rule=EdgeRule.IDENTIFY, event_id=1, applied=False, conflict="kind_limit:user_id")


def test_deleting_records_keeps_their_edges_without_collisions(source: SourceWithKey) -> None:
    records_upsert(
        source_id=source.source.pk,
        records=[{"external_id": "c1"}, {"external_id": "c2"}],
    )
    a, b = _pair()
    for record in Record.objects.all():
        _edge(a, b, rule=EdgeRule.CRM_RECORD, record=record, source=source.source)
    Record.objects.all().delete()
    assert list(Edge.objects.values_list("record", flat=True)) == [None, None]
