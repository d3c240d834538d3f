"""An incremental run never applies a definition its segment no longer has, and a sequence
of one event with itself means "not again"."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cdp.ingestion.services import SourceWithKey
from segments.dsl import definition_parse, members_query
from segments.metrics import metrics_refresh
from segments.models import Segment
from segments.services import incremental
from segments.services.definitions import segment_delete
from segments.services.recompute import segment_recompute
from tests.identity.resolving import T0, ingest, message, pid, resolve
from tests.segments.computing import members, segment_make, segment_redefine
from tests.segments.world import sql_members

pytestmark = pytest.mark.django_db
RULE = {"computed": "order_count", "op": "gte", "value": 1}


def _buyer(source: SourceWithKey, user: str) -> int:
    ingest(
        source.source.pk,
        message("track", at=0, userId=user, event="Order Completed", properties={"revenue": 1}),
    )
    resolve()
    profile = pid("user_id", user)
    metrics_refresh(profile_ids=[profile])
    return profile


def test_incremental_with_a_stale_segment_row_applies_the_old_version(
    source: SourceWithKey,
) -> None:
    ann = _buyer(source, "ann")
    segment = segment_make(RULE)
    segment_recompute(segment_id=segment.pk, now=T0)
    assert members(segment.pk) == {ann}
    stale = Segment.objects.get(pk=segment.pk)  # what the incremental batch listed
    segment_redefine(segment, {"computed": "order_count", "op": "gte", "value": 5})
    segment_recompute(segment_id=segment.pk, now=T0 + timedelta(seconds=1))
    assert members(segment.pk) == set()
    incremental._segment_evaluate(
        stale,
        profile_ids=[ann],
        now=T0 + timedelta(seconds=2),
        result=incremental.IncrementalResult(),
    )
    assert members(segment.pk) == set(), "v1 rule re-entered ann after v2 was computed"


def test_an_incremental_run_never_reopens_a_deleted_segment(source: SourceWithKey) -> None:
    ann = _buyer(source, "ann")
    segment = segment_make(RULE)
    segment_recompute(segment_id=segment.pk, now=T0)
    stale = Segment.objects.get(pk=segment.pk)
    segment_delete(segment_id=segment.pk, actor="t", now=T0 + timedelta(seconds=1))
    assert members(segment.pk) == set()
    incremental._segment_evaluate(
        stale,
        profile_ids=[ann],
        now=T0 + timedelta(seconds=2),
        result=incremental.IncrementalResult(),
    )
    assert members(segment.pk) == set(), "open stay in a deleted segment"


def test_sequence_a_then_not_a(source: SourceWithKey) -> None:
    ingest(source.source.pk, message("track", at=0, userId="bo", event="Product Viewed"))
    resolve()
    bo = pid("user_id", "bo")
    d = definition_parse(
        {
            "sequence": {
                "did": {"event": "Product Viewed"},
                "then_not": {"event": "Product Viewed"},
                "within": "1h",
            }
        }
    )
    sql, params = members_query(d, now=T0 + timedelta(hours=3))
    assert bo in sql_members(sql, params), "one view 3h ago, no view in the hour after it"
    # A second view within the hour: not "viewed, then not again".
    ingest(source.source.pk, message("track", at=1800, userId="bo", event="Product Viewed"))
    resolve()
    assert bo not in sql_members(*members_query(d, now=T0 + timedelta(hours=3)))
