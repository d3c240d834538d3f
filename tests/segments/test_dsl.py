"""The definition language: validation errors by path, and the seeds' rules on known people."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection

from cdp.ingestion.services import SourceWithKey, events_ingest
from segments.dsl import DefinitionError, definition_parse, members_query
from segments.models import ProfileMetrics
from tests.identity.resolving import T0, message, pid, resolve
from tests.segments.world import sql_members


def errors(doc: Any) -> list[dict[str, Any]]:
    with pytest.raises(DefinitionError) as caught:
        definition_parse(doc)
    return list(caught.value.errors or [])


def test_errors_name_every_bad_field_by_path() -> None:
    found = errors(
        {
            "all": [
                {"trait": "plan", "op": "bigger", "value": 1},
                {"event": "Viewed", "within": "a week"},
                {"any": []},
                {"computed": "karma", "op": "gt", "value": 1},
                {"trait": "age", "op": "in", "value": [1, "x"]},
            ]
        }
    )
    assert [e["path"] for e in found] == [
        "definition.all[0].op",
        "definition.all[1].within",
        "definition.all[2].any",
        "definition.all[3].computed",
        "definition.all[4].value",
    ]
    assert "'bigger' is not an operator" in found[0]["reason"]


@pytest.mark.parametrize(
    ("doc", "path", "reason"),
    [
        ([], "definition", "JSON object"),
        ({"trait": "x", "event": "y"}, "definition", "exactly one"),
        ({"trait": "plan", "op": "eq"}, "definition.value", "needs a value"),
        ({"trait": "plan", "op": "exists", "value": 1}, "definition.value", "no value"),
        ({"trait": "vip", "op": "gt", "value": True}, "definition.op", "booleans"),
        ({"trait": "email", "op": "eq", "value": "a@b.c"}, "definition.op", "PII"),
        ({"trait": "plan", "op": "between", "value": [1]}, "definition.value", "[low, high]"),
        ({"trait": "plan", "op": "contains", "value": 3}, "definition.value", "string"),
        ({"event": "A", "measure": "sum"}, "definition.property", "name"),
        ({"event": "A", "property": "x"}, "definition.property", "only sum"),
        (
            {"event": "A", "within": "7d", "between": ["2026-01-01", "2026-02-01"]},
            "definition",
            "either",
        ),
        ({"event": "A", "between": ["2026-02-01", "2026-01-01"]}, "definition.between", "before"),
        ({"event": "A", "measure": "last", "op": "gt", "value": 5}, "definition.value", "date"),
        ({"event": "A", "colour": "red"}, "definition.colour", "unknown key"),
        (
            {"sequence": {"did": {"event": "A"}, "then_not": {"event": "B"}}},
            "definition.sequence.within",
            "duration",
        ),
        ({"segment": "vip"}, "definition.segment", "segment id"),
        ({"consent": "telepathy"}, "definition.consent", "purposes"),
        (
            {
                "not": {
                    "not": {
                        "not": {
                            "not": {
                                "not": {"not": {"not": {"not": {"trait": "a", "op": "exists"}}}}
                            }
                        }
                    }
                }
            },
            "definition.not.not.not.not.not.not.not.not",
            "deep",
        ),
    ],
)
def test_each_error(doc: Any, path: str, reason: str) -> None:
    (error,) = errors(doc)
    assert error["path"] == path
    assert reason in error["reason"]


def test_too_many_conditions_and_unknown_segments() -> None:
    many = {"any": [{"trait": "a", "op": "exists"}] * 100}
    assert errors(many)[0]["reason"].startswith("at most 100 conditions")
    assert definition_parse({"segment": 5}).segment_refs == {5}  # no checker given: accepted
    with pytest.raises(DefinitionError, match="no segment 5"):
        definition_parse({"segment": 5}, segment_exists=lambda _: False)


def test_flags() -> None:
    static = definition_parse(
        {"all": [{"trait": "plan", "op": "eq", "value": "pro"}, {"segment": 3}]}
    )
    assert (static.time_dependent, static.segment_refs) == (False, frozenset({3}))
    for doc in (
        {"event": "A", "within": "7d"},
        {"trait": "signup", "op": "gte", "value": "-30d"},
        {"sequence": {"did": {"event": "A"}, "then_not": {"event": "B"}, "within": "1h"}},
    ):
        assert definition_parse(doc).time_dependent


def test_definition_error_is_the_error_contract() -> None:
    with pytest.raises(DefinitionError) as caught:
        definition_parse({"trait": "plan", "op": "bigger", "value": 1})
    error = caught.value
    assert (error.status_code, error.code, error.attr) == (
        400,
        "invalid_definition",
        "definition.op",
    )


# --- the seeds' rules, on known people -----------------------------------------------------------
def _track(
    source_id: int, user: str, event: str, at: timedelta, **properties: Any
) -> dict[str, Any]:
    body = message("track", userId=user, event=event, properties=properties)
    body["timestamp"] = (T0 + at).isoformat()
    return body


def _members(doc: Any, *, now: Any) -> set[int]:
    sql, params = members_query(definition_parse(doc), now=now)
    return sql_members(sql, params)


@pytest.mark.django_db
def test_seed_rules(source: SourceWithKey) -> None:
    sid = source.source.pk
    h = timedelta(hours=1)
    messages = [
        # browser: 4 views, 2 adds; buyer: added then ordered; abandoner: added, no order.
        *(_track(sid, "browser", "Product Viewed", i * h) for i in range(4)),
        *(_track(sid, "browser", "Product Added", (5 + i) * h) for i in range(2)),
        _track(sid, "buyer", "Product Added", 10 * h),
        _track(sid, "buyer", "Order Completed", 10 * h + timedelta(minutes=20), revenue=600),
        _track(sid, "abandoner", "Product Added", 10 * h),
        _track(sid, "late", "Product Added", 23 * h + timedelta(minutes=30)),
    ]
    events_ingest(source_id=sid, messages=messages, received_at=T0 + timedelta(days=30))
    resolve()
    browser, buyer, abandoner, late = (
        pid("user_id", u) for u in ("browser", "buyer", "abandoner", "late")
    )
    now = T0 + timedelta(hours=24)
    behaviour = {
        "all": [
            {"event": "Product Viewed", "op": "gt", "value": 3},
            {"event": "Product Added", "op": "gte", "value": 2},
        ]
    }
    assert _members(behaviour, now=now) == {browser}
    abandoners = {
        "sequence": {
            "did": {"event": "Product Added"},
            "then_not": {"event": "Order Completed"},
            "within": "1h",
        },
        "since": "24h",
    }
    # The late adder still has time to order; the buyer ordered within the hour.
    assert _members(abandoners, now=now) == {browser, abandoner}
    assert _members(abandoners, now=T0 + timedelta(days=3)) == set()  # outside since

    ProfileMetrics.objects.create(profile_id=buyer, total_spend=600, last_seen_at=now)
    ProfileMetrics.objects.create(profile_id=browser, total_spend=450, last_seen_at=now)
    vip = {
        "all": [
            {"computed": "total_spend", "op": "gt", "value": 500},
            {"computed": "last_seen_at", "op": "gte", "value": "-7d"},
        ]
    }
    assert _members(vip, now=now) == {buyer}
    # A week and a day later the buyer leaves VIP without any new event.
    assert _members(vip, now=now + timedelta(days=8)) == set()
    assert late not in _members({"event": "Order Completed"}, now=now)


@pytest.mark.django_db
def test_date_comparisons_run_under_a_parallel_plan(source: SourceWithKey) -> None:
    """The trait date cast catches errors in a subtransaction, which a parallel plan refuses:
    the function is parallel unsafe, so PostgreSQL never plans one around it."""
    events_ingest(
        source_id=source.source.pk,
        messages=[message("identify", userId="u1", traits={"signup": "2026-02-01T00:00:00Z"})],
        received_at=T0,
    )
    resolve()
    sql, params = members_query(
        definition_parse({"trait": "signup", "op": "lt", "value": "2026-03-01"}), now=T0
    )
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL force_parallel_mode = on")
        cursor.execute("SET LOCAL parallel_setup_cost = 0")
        cursor.execute("SET LOCAL parallel_tuple_cost = 0")
        cursor.execute(sql, params)
        assert [row[0] for row in cursor.fetchall()] == [pid("user_id", "u1")]
