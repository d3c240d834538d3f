"""Full, incremental and scheduled recomputes: entries, exits, intervals, merges, guardrails."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from cdp.ingestion.services import SourceWithKey
from identity.models import Edge, ProfileChange
from identity.services.unmerge import profile_unmerge
from segments.metrics import metrics_refresh
from segments.models import Membership, ProfileMetrics, RecomputeRun, Segment
from segments.services import incremental
from segments.services.incremental import segments_refresh_changed
from segments.services.recompute import (
    segment_recompute,
    segments_in_dependency_order,
    segments_recompute,
    segments_recompute_scheduled,
)
from tests.identity.resolving import T0, ingest, message, pid, resolve
from tests.segments.computing import (
    changed,
    members,
    members_at,
    refresh,
    segment_make,
    segment_redefine,
    stays,
)

pytestmark = pytest.mark.django_db
DAY = timedelta(days=1)
BIG_SPENDER = {"computed": "total_spend", "op": "gt", "value": 50}
VIEWED_THIS_WEEK = {"event": "Product Viewed", "within": "7d"}


@pytest.fixture
def web(source: SourceWithKey) -> int:
    return source.source.pk


def _order(user: str, revenue: float, at: int = 0) -> dict[str, Any]:
    return message(
        "track", at=at, userId=user, event="Order Completed", properties={"revenue": revenue}
    )


def _people(web: int, spend: dict[str, float]) -> dict[str, int]:
    ingest(web, *[_order(user, amount) for user, amount in spend.items()])
    resolve()
    ids = {user: pid("user_id", user) for user in spend}
    metrics_refresh(profile_ids=list(ids.values()))
    return ids


def test_full_recompute_enters_and_exits_and_records_the_run(web: int) -> None:
    ids = _people(web, {"ann": 80, "bob": 20, "cid": 60})
    segment = segment_make(BIG_SPENDER, min_size=1)

    outcome = segment_recompute(segment_id=segment.pk, now=T0 + DAY)

    assert (outcome.entered, outcome.exited, outcome.member_count) == (2, 0, 2)
    assert members(segment.pk) == {ids["ann"], ids["cid"]}
    segment.refresh_from_db()
    assert (segment.member_count, segment.too_small) == (2, False)
    assert (segment.computed_at, segment.computed_version) == (T0 + DAY, 1)
    assert outcome.run_id is not None
    run = RecomputeRun.objects.get(pk=outcome.run_id)
    assert (run.kind, run.version, run.entered, run.exited, run.member_count) == (
        "full",
        1,
        2,
        0,
        2,
    )

    ingest(web, _order("bob", 40, at=5))
    resolve()
    metrics_refresh(profile_ids=[ids["bob"]])  # bob: 60
    # A new version: cid (60) no longer matches, bob (60 now) does not either.
    segment_redefine(segment, {"computed": "total_spend", "op": "gt", "value": 61})
    outcome = segment_recompute(segment_id=segment.pk, now=T0 + 2 * DAY)

    assert (outcome.entered, outcome.exited) == (0, 1)
    assert members(segment.pk) == {ids["ann"]}
    assert (ids["cid"], T0 + DAY, T0 + 2 * DAY, "rule") in stays(segment.pk)
    segment.refresh_from_db()
    assert segment.computed_version == 2  # rebuilt against the new version

    segment_redefine(segment, BIG_SPENDER)
    outcome = segment_recompute(segment_id=segment.pk, now=T0 + 3 * DAY)
    # bob (60 now) and cid enter: cid with a second stay, the first one kept as history.
    assert members(segment.pk) == {ids["ann"], ids["bob"], ids["cid"]}
    assert [s for s in stays(segment.pk) if s[0] == ids["cid"]] == [
        (ids["cid"], T0 + DAY, T0 + 2 * DAY, "rule"),
        (ids["cid"], T0 + 3 * DAY, None, ""),
    ]


def test_recompute_is_idempotent(web: int) -> None:
    _people(web, {"ann": 80, "bob": 90})
    segment = segment_make(BIG_SPENDER)
    segment_recompute(segment_id=segment.pk, now=T0 + DAY)
    before = stays(segment.pk)

    again = segment_recompute(segment_id=segment.pk, now=T0 + 2 * DAY)

    assert (again.entered, again.exited, again.member_count) == (0, 0, 2)
    assert stays(segment.pk) == before
    assert refresh(now=T0 + 2 * DAY).entered == 0
    assert stays(segment.pk) == before


def test_min_size_marks_a_segment_too_small(web: int) -> None:
    ids = _people(web, {"ann": 80, "bob": 10})
    segment = segment_make(BIG_SPENDER, min_size=2)
    segment_recompute(segment_id=segment.pk, now=T0 + DAY)
    segment.refresh_from_db()
    assert (segment.member_count, segment.too_small) == (1, True)

    refresh(now=T0 + DAY)  # consume the resolver's marks
    ingest(web, _order("bob", 100, at=9))
    resolve()
    result = refresh(now=T0 + 2 * DAY)  # incremental: the count and the flag follow

    assert result.entered == 1
    segment.refresh_from_db()
    assert (segment.member_count, segment.too_small) == (2, False)
    assert members(segment.pk) == {ids["ann"], ids["bob"]}


def test_incremental_evaluates_only_the_changed_profiles(web: int) -> None:
    ids = _people(web, {"ann": 80, "bob": 10, "cid": 10})
    segment = segment_make(BIG_SPENDER)
    segment_recompute(segment_id=segment.pk, now=T0 + DAY)
    refresh(now=T0 + DAY)
    assert changed() == set()
    # cid's trait row is tampered with: only a full recompute (not this incremental) sees it.
    ProfileMetrics.objects.filter(profile_id=ids["cid"]).update(total_spend=500)
    ingest(web, _order("bob", 45, at=9))
    resolve()
    assert changed() == {ids["bob"]}

    result = refresh(now=T0 + 2 * DAY)

    assert (result.profiles, result.consumed, result.entered, result.exited) == (1, 1, 1, 0)
    assert members(segment.pk) == {ids["ann"], ids["bob"]}  # not cid
    run = RecomputeRun.objects.filter(kind="incremental").get()
    assert (run.evaluated, run.entered, run.member_count) == (1, 1, 2)
    assert changed() == set()
    assert segment_recompute(segment_id=segment.pk, now=T0 + 3 * DAY).entered == 1  # cid now


def test_a_profile_marked_again_during_a_run_is_evaluated_again(
    web: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = _people(web, {"ann": 80})
    segment = segment_make(BIG_SPENDER)
    segment_recompute(segment_id=segment.pk, now=T0)
    # The run reads ann's change; the resolver marks ann again before the run records it.
    original = ProfileChange.objects.get(profile_id=ids["ann"]).changed_at
    real_seen = incremental._changes_seen

    def seen_after_a_new_mark(rows: Any) -> int:
        ProfileChange.objects.filter(profile_id=ids["ann"]).update(changed_at=original + DAY)
        return real_seen(rows)

    monkeypatch.setattr(incremental, "_changes_seen", seen_after_a_new_mark)
    result = segments_refresh_changed(batch_size=10, now=T0)
    assert (result.profiles, result.consumed) == (1, 0)
    assert changed() == {ids["ann"]}


def test_windowed_membership_ends_without_any_new_event(web: int) -> None:
    ingest(web, message("track", at=0, userId="ann", event="Product Viewed"))
    resolve()
    ann = pid("user_id", "ann")
    segment = segment_make(VIEWED_THIS_WEEK)
    assert segment.time_dependent

    segment_recompute(segment_id=segment.pk, now=T0 + DAY)
    assert members(segment.pk) == {ann}
    outcomes = segments_recompute_scheduled(now=T0 + 7 * DAY - timedelta(minutes=1))
    assert [o.entered + o.exited for o in outcomes] == [0]

    outcomes = segments_recompute_scheduled(now=T0 + 8 * DAY)

    assert [(o.segment_id, o.kind, o.exited) for o in outcomes] == [(segment.pk, "scheduled", 1)]
    assert members(segment.pk) == set()
    assert stays(segment.pk) == [(ann, T0 + DAY, T0 + 8 * DAY, "rule")]
    # As of any moment, from the intervals.
    assert members_at(segment.pk, T0 + 2 * DAY) == {ann}
    assert members_at(segment.pk, T0 + DAY - timedelta(seconds=1)) == set()
    assert members_at(segment.pk, T0 + 8 * DAY) == set()


def test_scheduled_run_skips_what_the_clock_cannot_change(web: int) -> None:
    _people(web, {"ann": 80})
    static = segment_make(BIG_SPENDER)
    windowed = segment_make(VIEWED_THIS_WEEK)
    refers = segment_make({"all": [{"segment": windowed.pk}, BIG_SPENDER]})
    segment_recompute(segment_id=static.pk, now=T0)
    segment_recompute(segment_id=windowed.pk, now=T0)
    segment_recompute(segment_id=refers.pk, now=T0)

    outcomes = segments_recompute_scheduled(now=T0 + DAY)

    # The windowed segment and the one referring to it, in that order; not the static one.
    assert [o.segment_id for o in outcomes] == [windowed.pk, refers.pk]
    # A new version is picked up even when the clock does not matter.
    segment_redefine(static, {"computed": "total_spend", "op": "gt", "value": 100})
    outcomes = segments_recompute_scheduled(now=T0 + DAY)
    assert static.pk in [o.segment_id for o in outcomes]
    assert members(static.pk) == set()


def test_merge_closes_the_absorbed_stay_and_unmerge_evaluates_each_side(web: int) -> None:
    ingest(
        web,
        message("track", at=0, anonymousId="anon-1", event="Product Viewed"),
        message("track", at=1, userId="u1", event="Product Viewed"),
    )
    resolve()
    visitor, user = pid("anonymous_id", "anon-1"), pid("user_id", "u1")
    segment = segment_make(VIEWED_THIS_WEEK)
    segment_recompute(segment_id=segment.pk, now=T0 + DAY)
    refresh(now=T0 + DAY)
    assert members(segment.pk) == {visitor, user}

    ingest(web, message("identify", at=2, userId="u1", anonymousId="anon-1"))
    resolve()
    assert pid("user_id", "u1") == visitor and changed() >= {visitor, user}
    refresh(now=T0 + 2 * DAY)

    assert members(segment.pk) == {visitor}
    assert (user, T0 + DAY, T0 + 2 * DAY, "merged") in stays(segment.pk)
    assert (visitor, T0 + DAY, None, "") in stays(segment.pk)  # the survivor's stay goes on

    edge = Edge.objects.get(a__kind="anonymous_id", b__kind="user_id")
    profile_unmerge(profile_id=visitor, edge_ids=[edge.pk], actor="test", reason="shared laptop")
    assert changed() >= {visitor, user}
    refresh(now=T0 + 3 * DAY)

    assert members(segment.pk) == {visitor, user}
    assert [s for s in stays(segment.pk) if s[0] == user] == [
        (user, T0 + DAY, T0 + 2 * DAY, "merged"),
        (user, T0 + 3 * DAY, None, ""),
    ]
    assert members_at(segment.pk, T0 + 2 * DAY + timedelta(hours=1)) == {visitor}


def test_merge_into_a_survivor_that_now_matches(web: int) -> None:
    """Spend adds up on the survivor: neither side alone was a big spender."""
    ingest(
        web,
        message(
            "track",
            at=0,
            anonymousId="anon-1",
            event="Order Completed",
            properties={"revenue": 30},
        ),
        _order("u1", 30, at=1),
    )
    resolve()
    segment = segment_make(BIG_SPENDER)
    refresh(now=T0)
    segment_recompute(segment_id=segment.pk, now=T0)
    assert members(segment.pk) == set()
    ingest(web, message("identify", at=2, userId="u1", anonymousId="anon-1"))
    resolve()

    refresh(now=T0 + DAY)

    assert members(segment.pk) == {pid("user_id", "u1")}


def test_segments_referring_to_segments_are_evaluated_after_them(web: int) -> None:
    ids = _people(web, {"ann": 10})
    spender = segment_make(BIG_SPENDER)
    # Created first (lower id), but refers to the later one: evaluated after it.
    spender_viewer = segment_make({"all": [{"segment": spender.pk}]})
    late = segment_make({"computed": "order_count", "op": "gte", "value": 1})
    vip = segment_make({"all": [{"segment": spender_viewer.pk}, {"segment": late.pk}]})
    order = [s.pk for s in segments_in_dependency_order(Segment.objects.order_by("-pk"))]
    assert order.index(spender.pk) < order.index(spender_viewer.pk) < order.index(vip.pk)
    assert order.index(late.pk) < order.index(vip.pk)
    segments_recompute(now=T0)
    refresh(now=T0)

    ingest(web, _order("ann", 100, at=5))
    resolve()
    refresh(now=T0 + DAY)  # one incremental batch: all four follow

    assert all(members(s.pk) == {ids["ann"]} for s in (spender, spender_viewer, late, vip))


def test_deleted_segment_closes_its_stays(web: int) -> None:
    ids = _people(web, {"ann": 80})
    segment = segment_make(BIG_SPENDER)
    segment_recompute(segment_id=segment.pk, now=T0)
    Segment.objects.filter(pk=segment.pk).update(deleted_at=T0 + DAY)

    outcomes = segments_recompute_scheduled(now=T0 + DAY)

    assert [(o.segment_id, o.exited) for o in outcomes] == [(segment.pk, 1)]
    assert stays(segment.pk) == [(ids["ann"], T0, T0 + DAY, "deleted")]
    assert segments_recompute_scheduled(now=T0 + 2 * DAY) == []
    # Deleted segments are not evaluated incrementally.
    ingest(web, _order("ann", 1, at=9))
    resolve()
    refresh(now=T0 + 2 * DAY)
    assert members(segment.pk) == set()


def test_incremental_skips_a_segment_not_computed_at_its_version(web: int) -> None:
    _people(web, {"ann": 80})
    segment = segment_make(BIG_SPENDER)  # never computed: awaits its full recompute

    result = refresh(now=T0)

    assert result.segments == 0 and members(segment.pk) == set()
    assert not Membership.objects.exists()


def test_a_failing_recompute_is_recorded(web: int) -> None:
    segment = segment_make(BIG_SPENDER)
    Segment.objects.filter(pk=segment.pk).update(definition={"bogus": 1})

    outcomes = segments_recompute(now=T0)

    assert outcomes[0].error.startswith("DefinitionError")
    run = RecomputeRun.objects.get(segment_id=segment.pk)
    assert run.error.startswith("DefinitionError") and run.finished_at is not None


def test_a_broken_segment_does_not_hold_up_the_others_incrementally(web: int) -> None:
    broken = segment_make(BIG_SPENDER)
    working = segment_make(BIG_SPENDER)
    segments_recompute(now=T0)
    Segment.objects.filter(pk=broken.pk).update(definition={"bogus": 1})
    ids = _people(web, {"ann": 80})

    result = refresh(now=T0 + DAY)

    assert (result.failed, result.consumed) == ([broken.pk], 1)
    assert members(working.pk) == {ids["ann"]} and members(broken.pk) == set()
