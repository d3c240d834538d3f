"""``manage.py recompute_segments``: by id or name, --all, the summary."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from cdp.ingestion.services import SourceWithKey
from segments.models import ProfileMetrics, RecomputeRun
from tests.identity.resolving import ingest, message, pid, resolve
from tests.segments.computing import members, segment_make

pytestmark = pytest.mark.django_db


def _run(*args: str) -> str:
    out = StringIO()
    call_command("recompute_segments", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_recompute_segments_by_name_and_all(source: SourceWithKey) -> None:
    ingest(
        source.source.pk,
        message("track", userId="ann", event="Order Completed", properties={"revenue": 80}),
    )
    resolve()
    ann = pid("user_id", "ann")
    vip = segment_make({"computed": "total_spend", "op": "gt", "value": 50}, name="VIP")
    buyers = segment_make({"computed": "order_count", "op": "gte", "value": 1}, name="Buyers")

    output = _run("--segment", "VIP", "--metrics")  # traits rebuilt first

    assert ProfileMetrics.objects.filter(profile_id=ann).exists()
    assert members(vip.pk) == {ann} and members(buyers.pk) == set()
    assert f"#{vip.pk} VIP" in output and "1 recomputed, 0 skipped: 1 entered, 0 exited" in output

    output = _run("--all")
    assert members(buyers.pk) == {ann}
    assert "2 recomputed, 0 skipped: 1 entered, 0 exited" in output
    assert RecomputeRun.objects.filter(kind="full").count() == 3

    output = _run("--segment", str(buyers.pk))
    assert "1 recomputed, 0 skipped: 0 entered, 0 exited" in output


def test_recompute_segments_refuses_unknown_or_ambiguous_arguments(db: None) -> None:
    with pytest.raises(CommandError, match="no segment"):
        _run("--segment", "nope")
    with pytest.raises(CommandError, match="--all"):
        _run()
    with pytest.raises(CommandError, match="--all"):
        _run("--all", "--segment", "x")
