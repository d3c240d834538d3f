"""Erasure deletes a person's memberships and computed traits; an access export lists every
stay of theirs."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from cdp.ingestion.services import SourceWithKey
from consent.privacy.access import access_export_build, access_sections
from consent.privacy.erasure import erasure_request, erasure_run
from segments.models import Membership, ProfileMetrics
from segments.services.recompute import segment_recompute
from tests.consent.access_person import export_read
from tests.identity.resolving import T0, ingest, message, pid, resolve
from tests.segments.computing import refresh, segment_make

pytestmark = pytest.mark.django_db
DAY = timedelta(days=1)


def _two_buyers(source: SourceWithKey) -> tuple[int, int]:
    ingest(
        source.source.pk,
        *[
            message("track", userId=u, event="Order Completed", properties={"revenue": 80})
            for u in ("ann", "bob")
        ],
    )
    resolve()
    refresh(now=T0)  # computed traits of the changed profiles
    return pid("user_id", "ann"), pid("user_id", "bob")


def test_erasure_deletes_memberships_and_metrics_of_the_person(source: SourceWithKey) -> None:
    ann, bob = _two_buyers(source)
    segment = segment_make({"computed": "total_spend", "op": "gt", "value": 50})
    segment_recompute(segment_id=segment.pk, now=T0)
    assert Membership.objects.filter(profile_id=ann).exists()

    request = erasure_request(subject=("user_id", "ann"), requested_by="test")
    assert erasure_run(request.pk)

    assert not Membership.objects.filter(profile_id=ann).exists()  # deleted, not closed
    assert not ProfileMetrics.objects.filter(profile_id=ann).exists()
    assert set(Membership.objects.values_list("profile_id", flat=True)) == {bob}
    assert ProfileMetrics.objects.filter(profile_id=bob).exists()
    # The count catches up at the next full recompute.
    outcome = segment_recompute(segment_id=segment.pk, now=T0 + DAY)
    assert (outcome.entered, outcome.exited, outcome.member_count) == (0, 0, 1)


def test_access_export_lists_every_stay(source: SourceWithKey) -> None:
    assert "segment_memberships" in [s.name for s in access_sections()]
    ann, bob = _two_buyers(source)
    spenders = segment_make({"computed": "total_spend", "op": "gt", "value": 50}, name="Spenders")
    others = segment_make({"computed": "total_spend", "op": "gt", "value": 100}, name="Whales")
    segment_recompute(segment_id=spenders.pk, now=T0)
    segment_recompute(segment_id=others.pk, now=T0)
    Membership.objects.filter(profile_id=ann).update(exited_at=T0 + DAY, exit_reason="rule")

    files = export_read(access_export_build(profile_id=ann))

    rows = files["segment_memberships.json"]
    assert [
        (r["segment_id"], r["segment_name"], r["profile_id"], r["exit_reason"]) for r in rows
    ] == [(spenders.pk, "Spenders", ann, "rule")]
    assert datetime.fromisoformat(rows[0]["entered_at"]) == T0
    assert datetime.fromisoformat(rows[0]["exited_at"]) == T0 + DAY
    bob_rows = export_read(access_export_build(profile_id=bob))["segment_memberships.json"]
    assert [(r["segment_id"], r["exited_at"], r["exit_reason"]) for r in bob_rows] == [
        (spenders.pk, None, None)
    ]
    assert others.pk not in {r["segment_id"] for r in rows + bob_rows}
