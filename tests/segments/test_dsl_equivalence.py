"""The compiled SQL agrees with a plain Python evaluation (tests/segments/reference.py) on
random definitions over a small stored population."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdp.ingestion.services import SourceWithKey
from segments.dsl import DefinitionError, definition_parse, members_query
from tests.segments.reference import evaluate
from tests.segments.world import (
    CATEGORIES,
    EVENT_NAMES,
    NOW,
    PLANS,
    World,
    build_world,
    sql_members,
)

pytestmark = pytest.mark.django_db

numbers = st.sampled_from([0, 1, 2, 3, 5, 15.5, 20, 40, 99.5, 120, 250, 500, 501])
dates = st.sampled_from(["-1d", "-7d", "-30d", "+1d", "2026-02-20", "2026-03-05T00:00:00Z"])
strings = st.sampled_from([*PLANS, "ada", "", "2026-03-01", "a", "P"])
durations = st.sampled_from(["1h", "24h", "3d", "7d", "30d"])


def comparison(values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    scalar_ops = st.sampled_from(["eq", "neq", "gt", "gte", "lt", "lte"])
    return st.one_of(
        st.builds(lambda op, v: {"op": op, "value": v}, scalar_ops, values),
        st.builds(lambda vs: {"op": "in", "value": vs}, st.lists(values, min_size=1, max_size=3)),
        st.builds(lambda a, b: {"op": "between", "value": [a, b]}, values, values),
    )


traits = st.one_of(
    st.builds(lambda c: {"trait": "plan", **c}, comparison(strings)),
    st.builds(lambda c: {"trait": "age", **c}, comparison(numbers)),
    st.builds(lambda c: {"trait": "score", **c}, comparison(numbers)),
    st.builds(lambda v: {"trait": "vip", "op": "eq", "value": v}, st.booleans()),
    st.builds(lambda v: {"trait": "vip", "op": "neq", "value": v}, st.booleans()),
    st.builds(lambda c: {"trait": "signup", **c}, comparison(dates)),
    st.builds(lambda c: {"trait": "nickname", **c}, comparison(strings)),
    st.builds(lambda v: {"trait": "tags", "op": "contains", "value": v}, st.sampled_from("abcx")),
    st.builds(
        lambda v: {"trait": "plan", "op": "contains", "value": v}, st.sampled_from(["r", "ro", "P"])
    ),
    st.builds(
        lambda name: {"trait": name, "op": "exists"},
        st.sampled_from(["plan", "age", "vip", "email", "tags", "nickname", "missing"]),
    ),
)
computed = st.one_of(
    st.builds(
        lambda name, c: {"computed": name, **c},
        st.sampled_from(["total_spend", "order_count", "event_count", "rfm_recency"]),
        comparison(numbers),
    ),
    st.builds(
        lambda name, c: {"computed": name, **c},
        st.sampled_from(["last_seen_at", "first_seen_at", "last_order_at"]),
        comparison(dates),
    ),
)
where = st.lists(
    st.one_of(
        st.builds(
            lambda c: {"property": "category", "op": "eq", "value": c}, st.sampled_from(CATEGORIES)
        ),
        st.builds(lambda c: {"property": "revenue", **c}, comparison(numbers)),
        st.just({"property": "revenue", "op": "exists"}),
    ),
    max_size=2,
)


def _event(
    name: str, filters: list[Any], measure: str, comp: dict[str, Any], window: Any
) -> dict[str, Any]:
    doc: dict[str, Any] = {"event": name}
    if filters:
        doc["where"] = filters
    if measure in ("sum", "avg", "min", "max"):
        doc.update(measure=measure, property="revenue")
    elif measure != "count":
        doc["measure"] = measure
    doc.update(comp)
    if window is not None:
        doc.update(window)
    return doc


windows = st.one_of(
    st.none(),
    st.builds(lambda d: {"within": d}, durations),
    st.just({"between": ["2026-02-20", "2026-03-05"]}),
)
events = st.one_of(
    st.builds(
        _event,
        st.sampled_from(EVENT_NAMES),
        where,
        st.sampled_from(["count", "sum", "avg", "min", "max"]),
        comparison(numbers),
        windows,
    ),
    st.builds(
        _event,
        st.sampled_from(EVENT_NAMES),
        where,
        st.sampled_from(["first", "last"]),
        comparison(dates),
        windows,
    ),
    st.builds(lambda name: {"event": name}, st.sampled_from(EVENT_NAMES)),
)
sequences = st.builds(
    lambda a, b, within, since: {
        "sequence": {"did": {"event": a}, "then_not": {"event": b}, "within": within},
        **({"since": since} if since else {}),
    },
    st.sampled_from(EVENT_NAMES),
    st.sampled_from(EVENT_NAMES),
    durations,
    st.one_of(st.none(), durations),
)
others = st.one_of(
    st.builds(
        lambda purpose: {"consent": purpose},
        st.sampled_from(["analytics", "marketing_email", "sale_or_share"]),
    ),
    st.just({"segment": "REF"}),
)
leaves = st.one_of(traits, computed, events, sequences, others)
definitions = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.builds(lambda cs: {"all": cs}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda cs: {"any": cs}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda c: {"not": c}, children),
    ),
    max_leaves=6,
)


def _with_ref(doc: Any, ref: int) -> Any:
    if isinstance(doc, dict):
        return {k: (ref if v == "REF" else _with_ref(v, ref)) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_with_ref(item, ref) for item in doc]
    return doc


@pytest.fixture
def world(source: SourceWithKey) -> World:
    return build_world(source.source.pk)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(doc=definitions)
def test_sql_agrees_with_python(world: World, doc: Any) -> None:
    doc = _with_ref(doc, world.ref_segment)
    try:
        definition = definition_parse(doc)
    except DefinitionError:
        return  # e.g. between with a date and a number: refused, nothing to compare
    sql, params = members_query(definition, now=NOW)
    expected = {
        pid for pid, person in world.people.items() if evaluate(definition.root, person, now=NOW)
    }
    assert sql_members(sql, params) == expected, doc
    # Restricted to some profiles (an incremental recompute), the same answer for those.
    some = sorted(world.people)[::3]
    sql, params = members_query(definition, now=NOW, profile_ids=some)
    assert sql_members(sql, params) == expected & set(some), doc


def test_the_world_is_varied(world: World) -> None:
    """The population exercises what the definitions test: otherwise agreement means little."""
    people = list(world.people.values())
    assert sum(bool(p.events) for p in people) >= 15
    assert sum("plan" in p.traits for p in people) >= 10
    assert sum(p.metrics is not None for p in people) >= 10
    assert sum(bool(p.segments) for p in people) >= 3
    assert len({p.allowed["analytics"] for p in people}) == 2
