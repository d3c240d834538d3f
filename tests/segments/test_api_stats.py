"""GET /v1/segments/{id}/stats on small known datasets: the 2x2 table, conversion rates, and the
chi-square test checked against scipy directly; the low-count note, no test for an empty
column, the window, the too-small guardrail and parameter errors."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient
from scipy.stats import chi2_contingency, fisher_exact

from cdp.ingestion.services import SourceWithKey, events_ingest
from segments.models import Segment
from segments.stats import Group, chi_square
from tests.identity.resolving import message, resolve
from tests.segments.api_people import people_ingest, segment_with

pytestmark = pytest.mark.django_db

Client = Callable[..., APIClient]
ORDER = "Order Completed"


def track(source_id: int, events: list[tuple[int, str, float]]) -> None:
    """``(person index, event name, days ago)`` for the people ``u<index>``."""
    now = timezone.now()
    messages = []
    for index, name, days_ago in events:
        body = message("track", userId=f"u{index}", event=name)
        body["timestamp"] = (now - timedelta(days=days_ago)).isoformat()
        messages.append(body)
    result = events_ingest(source_id=source_id, messages=messages, received_at=now)
    assert not result.rejected
    resolve()


def stats(client: APIClient, segment: Segment, **params: Any) -> Any:
    return client.get(f"/v1/segments/{segment.pk}/stats", {"event": ORDER, **params})


@pytest.fixture
def reader(api_client: Client) -> APIClient:
    return api_client("segments:read")


def test_a_clear_difference_matches_scipy(reader: APIClient, source: SourceWithKey) -> None:
    """40 people; members u0..u19, 15 of whom ordered in the window; 5 of the other 20 did."""
    web = source.source.pk
    ids = people_ingest(web, 40)
    segment = segment_with(ids[:20], min_size=20)
    track(
        web,
        [(i, ORDER, 2) for i in range(15)]
        + [(i, ORDER, 29.5) for i in range(20, 25)]
        + [(15, ORDER, 31), (16, "Product Viewed", 1), (0, ORDER, 3)],  # outside / other / again
    )
    response = stats(reader, segment, window="30d")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["members"] == {"did": 15, "did_not": 5, "total": 20, "rate": 0.75}
    assert body["rest"] == {"did": 5, "did_not": 15, "total": 20, "rate": 0.25}
    expected = chi2_contingency([[15, 5], [5, 15]])
    assert body["test"]["statistic"] == pytest.approx(expected.statistic)
    assert body["test"]["p_value"] == pytest.approx(expected.pvalue)
    # By hand, with Yates' correction: 4 x (|15 - 10| - 0.5)^2 / 10 = 8.1 on 1 dof.
    assert body["test"]["statistic"] == pytest.approx(8.1)
    assert body["test"]["p_value"] == pytest.approx(0.0044265, rel=1e-4)
    assert body["test"]["dof"] == 1
    assert body["test"]["expected"] == [[10.0, 10.0], [10.0, 10.0]]
    assert body["test"]["fisher_p_value"] is None
    assert body["note"] is None
    assert body["event"] == ORDER

    wider = stats(reader, segment, window="5w").json()  # 35 days takes in u15's order
    assert (wider["members"]["did"], wider["rest"]["did"]) == (16, 5)


def test_low_expected_counts_add_a_note_and_fisher(
    reader: APIClient, source: SourceWithKey
) -> None:
    web = source.source.pk
    ids = people_ingest(web, 10)
    segment = segment_with(ids[:4], min_size=4)
    track(web, [(0, ORDER, 1), (1, ORDER, 1), (2, ORDER, 1), (7, ORDER, 1), (3, ORDER, 40)])
    body = stats(reader, segment).json()  # window: 30d by default
    table = [[3, 1], [1, 5]]
    assert (body["members"]["did"], body["members"]["did_not"]) == (3, 1)
    assert (body["rest"]["did"], body["rest"]["did_not"]) == (1, 5)
    assert body["test"]["p_value"] == pytest.approx(chi2_contingency(table).pvalue)
    assert body["test"]["fisher_p_value"] == pytest.approx(fisher_exact(table).pvalue)
    assert "under 5" in body["note"]


def test_no_test_when_nobody_did_the_event(reader: APIClient, source: SourceWithKey) -> None:
    ids = people_ingest(source.source.pk, 6)
    segment = segment_with(ids[:3], min_size=1)
    body = stats(reader, segment, event="Never Happened").json()
    assert body["members"] == {"did": 0, "did_not": 3, "total": 3, "rate": 0.0}
    assert body["test"]["p_value"] is None
    assert body["test"]["statistic"] is None
    assert "No test" in body["note"]


def test_a_too_small_segment_has_no_stats(reader: APIClient, source: SourceWithKey) -> None:
    ids = people_ingest(source.source.pk, 3)
    segment = segment_with(ids[:2], min_size=5)
    response = stats(reader, segment)
    assert response.status_code == 409
    assert response.json()["code"] == "segment_too_small"


@pytest.mark.parametrize(
    ("params", "attr"),
    [({"window": "30 days"}, "window"), ({"window": "0d"}, "window"), ({"event": ""}, "event")],
)
def test_bad_parameters_answer_400(
    reader: APIClient, source: SourceWithKey, params: dict[str, str], attr: str
) -> None:
    ids = people_ingest(source.source.pk, 2)
    segment = segment_with(ids, min_size=1)
    response = stats(reader, segment, **params)
    assert response.status_code == 400
    assert response.json()["attr"] == attr


def test_chi_square_against_scipy_on_tables() -> None:
    for table in ([[30, 70], [45, 55]], [[1, 9], [8, 2]], [[200, 800], [150, 850]]):
        members, rest = Group(*table[0]), Group(*table[1])
        result, note = chi_square(members, rest)
        expected = chi2_contingency(table)
        assert result.p_value == pytest.approx(expected.pvalue)
        assert result.statistic == pytest.approx(expected.statistic)
        assert (note is not None) == (expected.expected_freq.min() < 5)


def test_counting_past_the_timeout_answers_503(
    reader: APIClient, source: SourceWithKey, settings: Any
) -> None:
    ids = people_ingest(source.source.pk, 2)
    segment = segment_with(ids, min_size=1)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO identity_profile (created_at, updated_at, event_count, traits) "
            "SELECT now(), now(), 0, '{}'::jsonb FROM generate_series(1, 200000)"
        )
    settings.CDP_SEGMENTS = {**settings.CDP_SEGMENTS, "STATS_TIMEOUT_MS": 1}
    response = stats(reader, segment)
    assert response.status_code == 503
    assert response.json()["code"] == "stats_timeout"
    # The timeout ended with the statement: the connection reads on normally.
    assert Segment.objects.filter(pk=segment.pk).exists()
    settings.CDP_SEGMENTS = {**settings.CDP_SEGMENTS, "STATS_TIMEOUT_MS": 30000}
    assert stats(reader, segment).json()["rest"]["total"] == 200_000
