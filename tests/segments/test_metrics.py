"""Computed traits: values from the profile's events, merges and unmerges, rebuild, RFM."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from cdp.ingestion.services import SourceWithKey
from identity.models import Edge
from identity.services.unmerge import profile_unmerge
from segments.metrics import metrics_rebuild, metrics_refresh, metrics_rfm_recompute
from segments.models import ProfileMetrics
from tests.identity.resolving import T0, ingest, message, pid, resolve

pytestmark = pytest.mark.django_db


@pytest.fixture
def web(source: SourceWithKey) -> int:
    return source.source.pk


def _order(at: int, revenue: Any, **fields: Any) -> dict[str, Any]:
    return message(
        "track", at=at, event="Order Completed", properties={"revenue": revenue}, **fields
    )


def _row(profile_id: int) -> dict[str, Any]:
    row = ProfileMetrics.objects.get(profile_id=profile_id)
    return {
        "total_spend": row.total_spend,
        "order_count": row.order_count,
        "event_count": row.event_count,
        "first_seen_at": row.first_seen_at,
        "last_seen_at": row.last_seen_at,
        "last_order_at": row.last_order_at,
        "event_counts": row.event_counts,
    }


def test_metrics_count_events_and_sum_numeric_revenue_of_order_events(web: int) -> None:
    ingest(
        web,
        message("identify", at=0, userId="u1", traits={"plan": "pro"}),
        message("track", at=10, userId="u1", event="Product Viewed"),
        _order(20, 10.5, userId="u1"),
        _order(30, "20", userId="u1"),  # a string: counted as an order, not as spend
        _order(40, 30, userId="u1"),
        # Revenue on another event is not spend.
        message("track", at=50, userId="u1", event="Refund", properties={"revenue": 99}),
        _order(60, 1e15, userId="u1"),  # absurd: ignored, the refresh does not fail
        message("track", at=5, userId="u2", event="Product Viewed"),
    )
    resolve()
    u1, u2 = pid("user_id", "u1"), pid("user_id", "u2")

    result = metrics_refresh(profile_ids=[u1, u2])

    assert result.upserted == 2
    assert _row(u1) == {
        "total_spend": Decimal("40.5"),
        "order_count": 4,
        "event_count": 7,  # the identify too
        "first_seen_at": T0,
        "last_seen_at": T0 + timedelta(seconds=60),
        "last_order_at": T0 + timedelta(seconds=60),
        "event_counts": {"Product Viewed": 1, "Order Completed": 4, "Refund": 1},
    }
    assert _row(u2)["total_spend"] == 0 and _row(u2)["order_count"] == 0
    assert _row(u2)["last_order_at"] is None and _row(u2)["event_counts"] == {"Product Viewed": 1}
    # Unchanged events: nothing rewritten.
    assert metrics_refresh(profile_ids=[u1, u2]).upserted == 0


def test_revenue_property_and_order_events_come_from_settings(web: int, settings: Any) -> None:
    settings.CDP_SEGMENTS = {
        **settings.CDP_SEGMENTS,
        "REVENUE_PROPERTY": "total",
        "ORDER_EVENTS": ["Purchase", "Order Completed"],
    }
    ingest(
        web,
        message("track", at=1, userId="u1", event="Purchase", properties={"total": 7}),
        _order(2, 100, userId="u1"),  # no "total": an order without spend
    )
    resolve()
    u1 = pid("user_id", "u1")
    metrics_refresh(profile_ids=[u1])
    assert (_row(u1)["total_spend"], _row(u1)["order_count"]) == (Decimal(7), 2)


def test_a_merge_moves_metrics_to_the_survivor_and_an_unmerge_splits_them(web: int) -> None:
    ingest(
        web,
        _order(1, 5, anonymousId="anon-1"),
        _order(2, 7, userId="u1"),
        message("identify", at=3, userId="u1"),
    )
    resolve()
    visitor, user = pid("anonymous_id", "anon-1"), pid("user_id", "u1")
    metrics_refresh(profile_ids=[visitor, user])
    ingest(web, message("identify", at=4, userId="u1", anonymousId="anon-1"))
    resolve()
    assert pid("user_id", "u1") == visitor  # the older profile survives

    metrics_refresh(profile_ids=[visitor, user])

    assert not ProfileMetrics.objects.filter(profile_id=user).exists()
    assert _row(visitor)["total_spend"] == 12 and _row(visitor)["event_count"] == 4

    edge = Edge.objects.get(a__kind="anonymous_id", b__kind="user_id")
    profile_unmerge(profile_id=visitor, edge_ids=[edge.pk], actor="test", reason="split")
    metrics_refresh(profile_ids=[visitor, user])
    assert _row(visitor)["total_spend"] == 5 and _row(visitor)["event_count"] == 1
    assert _row(user)["total_spend"] == 7 and _row(user)["event_count"] == 3


def test_rebuild_equals_refresh_and_drops_merged_profiles(web: int) -> None:
    ingest(
        web,
        _order(1, 5, userId="a"),
        message("track", at=2, userId="b", event="Product Viewed"),
        message("identify", at=3, userId="c"),
        _order(4, 9, anonymousId="anon-c"),
    )
    resolve()
    ids = [pid("user_id", "a"), pid("user_id", "b"), pid("user_id", "c")]
    anon = pid("anonymous_id", "anon-c")
    metrics_refresh(profile_ids=[*ids, anon])
    ingest(web, message("identify", at=5, userId="c", anonymousId="anon-c"))
    resolve()
    merged_into = pid("user_id", "c")
    absorbed = ({ids[2], anon} - {merged_into}).pop()
    live = [i for i in [*ids, anon] if i != absorbed]
    metrics_refresh(profile_ids=live)  # the survivor only: the absorbed row is left behind
    refreshed = {i: _row(i) for i in live}
    ProfileMetrics.objects.filter(profile_id__in=live).update(total_spend=0, event_counts={})

    result = metrics_rebuild()

    assert {i: _row(i) for i in live} == refreshed
    assert result.deleted == 1
    assert not ProfileMetrics.objects.filter(profile_id=absorbed).exists()


def test_rfm_scores_are_quintiles_with_ties_sharing_a_score(web: int) -> None:
    # Ten buyers: spend 10..100, one order each but the last two buy twice; one non-buyer.
    messages = []
    for n in range(10):
        messages.append(_order(100 + n, 10 * (n + 1), userId=f"b{n}"))
        if n >= 8:
            messages.append(_order(200 + n, 0, userId=f"b{n}"))
    messages.append(message("track", at=1, userId="browser", event="Product Viewed"))
    ingest(web, *messages)
    resolve()
    buyers = [pid("user_id", f"b{n}") for n in range(10)]
    none = pid("user_id", "browser")
    metrics_refresh(profile_ids=[*buyers, none])

    assert metrics_rfm_recompute() == 10

    rows = {r.profile_id: r for r in ProfileMetrics.objects.all()}
    assert [rows[b].rfm_monetary for b in buyers] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert [rows[b].rfm_recency for b in buyers] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    # Eight buyers tie on one order: they share the lowest score; the two with two orders, 5.
    assert [rows[b].rfm_frequency for b in buyers] == [1] * 8 + [5, 5]
    assert (rows[none].rfm_recency, rows[none].rfm_frequency, rows[none].rfm_monetary) == (
        None,
        None,
        None,
    )
    assert metrics_rfm_recompute() == 0  # idempotent


def test_rfm_scores_are_cleared_when_an_unmerge_leaves_a_profile_without_orders(web: int) -> None:
    ingest(
        web,
        message("track", at=1, anonymousId="anon-1", event="Product Viewed"),
        _order(2, 7, userId="u1"),
        message("identify", at=3, userId="u1"),
        message("identify", at=4, userId="u1", anonymousId="anon-1"),
    )
    resolve()
    visitor = pid("anonymous_id", "anon-1")
    assert pid("user_id", "u1") == visitor  # merged: the visitor's profile has the order
    metrics_refresh(profile_ids=[visitor])
    metrics_rfm_recompute()
    scored = ProfileMetrics.objects.get(profile_id=visitor)
    assert scored.order_count == 1 and scored.rfm_recency is not None

    edge = Edge.objects.get(a__kind="anonymous_id", b__kind="user_id")
    profile_unmerge(profile_id=visitor, edge_ids=[edge.pk], actor="test", reason="split")
    user = pid("user_id", "u1")
    assert user != visitor
    assert metrics_refresh(profile_ids=[visitor, user]).upserted == 2

    left = ProfileMetrics.objects.get(profile_id=visitor)
    assert left.order_count == 0
    assert (left.rfm_recency, left.rfm_frequency, left.rfm_monetary) == (None, None, None)
    # A profile without orders whose scores were left behind loses them at its next refresh.
    ProfileMetrics.objects.filter(profile_id=visitor).update(
        rfm_recency=3, rfm_frequency=3, rfm_monetary=3
    )
    assert metrics_refresh(profile_ids=[visitor]).upserted == 1
    assert ProfileMetrics.objects.get(profile_id=visitor).rfm_recency is None
    # Unchanged and already NULL: nothing rewritten.
    assert metrics_refresh(profile_ids=[visitor]).upserted == 0
