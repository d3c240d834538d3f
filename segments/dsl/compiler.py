"""Compile a validated definition to one SQL query selecting the matching current profiles.

The query reads ``identity_profile`` (traits), ``segments_profilemetrics`` (computed traits,
LEFT JOIN: a profile without a row has zero counts and no dates), ``ingestion_event`` through
``identity_identifier.profile_id`` (an event belongs to the current profile of the identifier it
is anchored on), ``segments_membership`` (open stays, for segment references) and
``consent_consentstate``. Event conditions are grouped subqueries joined as semi-joins
(``EXISTS``) or, when the condition also holds for people without any such event (``count < 3``),
anti-joins (``NOT EXISTS`` of the complement), so PostgreSQL runs each as one hash aggregate over
the matching events instead of a loop over profiles.

Values travel as parameters; names (traits, properties, events) too. The only text put into the
SQL comes from this module. Semantics are those of docs/segments.md; ``tests/segments`` checks
them against a plain Python evaluation.
"""

# ruff: noqa: S608  (this module builds SQL from its own fragments; every value is a parameter)
from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from consent.selectors import allowed_sql
from segments.dsl import nodes as n

_SQL_OPS = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_COMPUTED_COLUMNS = {
    "total_spend": "coalesce(m.total_spend, 0)",
    "order_count": "coalesce(m.order_count, 0)",
    "event_count": "coalesce(m.event_count, 0)",
    "first_seen_at": "m.first_seen_at",
    "last_seen_at": "m.last_seen_at",
    "last_order_at": "m.last_order_at",
    "rfm_recency": "m.rfm_recency",
    "rfm_frequency": "m.rfm_frequency",
    "rfm_monetary": "m.rfm_monetary",
}
# A string that is an ISO date or date-time, the only ones a date comparison reads: casting
# anything else would fail the whole query.
_MARKER = re.compile("\x00(\\d+)\x00")
_ISO_PATTERN = r"^\d{4}-\d{2}-\d{2}([T ][0-9:.]+(Z|[+-]\d{2}:?\d{2})?)?$"


@dataclass
class _Builder:
    """Collects parameter values while fragments are built in any order: each value gets a
    marker, and ``render`` turns markers into ``%s`` with the values in text order."""

    now: datetime
    profile_ids: list[int] | None
    values: list[object] = field(default_factory=list)

    def param(self, value: object) -> str:
        self.values.append(value)
        return f"\x00{len(self.values) - 1}\x00"

    def fragment(self, sql: str, params: Sequence[object]) -> str:
        """A hand-written fragment with ``%s`` placeholders, as markers."""
        pieces = sql.split("%s")
        if len(pieces) != len(params) + 1:
            raise ValueError("placeholders and parameters differ in number")
        return "".join(
            piece + (self.param(value) if index < len(params) else "")
            for index, (piece, value) in enumerate(zip(pieces, [*params, None], strict=True))
        )

    def render(self, sql: str) -> tuple[str, list[Any]]:
        ordered: list[Any] = []

        def placeholder(match: re.Match[str]) -> str:
            ordered.append(self.values[int(match.group(1))])
            return "%s"

        return _MARKER.sub(placeholder, sql), ordered


def members_query(
    definition: n.Definition, *, now: datetime, profile_ids: Sequence[int] | None = None
) -> tuple[str, list[Any]]:
    """SQL selecting ``profile_id``: the current (not merged) profiles the definition holds for
    at ``now``, only among ``profile_ids`` when given (an incremental recompute)."""
    builder = _Builder(
        now=now, profile_ids=sorted(set(profile_ids)) if profile_ids is not None else None
    )
    where = ["p.merged_into_id IS NULL"]
    if builder.profile_ids is not None:
        where.append(f"p.id = ANY({builder.param(builder.profile_ids)}::bigint[])")
    where.append(_node(definition.root, builder))
    sql = (
        "SELECT p.id AS profile_id FROM identity_profile AS p "
        "LEFT JOIN segments_profilemetrics AS m ON m.profile_id = p.id "
        f"WHERE {' AND '.join(where)}"
    )
    return builder.render(sql)


def _node(node: n.Node, b: _Builder) -> str:
    if isinstance(node, n.AllOf):
        return "(" + " AND ".join(_node(child, b) for child in node.children) + ")"
    if isinstance(node, n.AnyOf):
        return "(" + " OR ".join(_node(child, b) for child in node.children) + ")"
    if isinstance(node, n.Not):
        # Every condition compiles to a non-NULL boolean, so NOT is exact.
        return f"(NOT {_node(node.child, b)})"
    if isinstance(node, n.TraitCondition):
        return _trait(node, b)
    if isinstance(node, n.ComputedCondition):
        return _computed(node, b)
    if isinstance(node, n.EventCondition):
        return _event(node, b)
    if isinstance(node, n.SequenceCondition):
        return _sequence(node, b)
    if isinstance(node, n.SegmentCondition):
        return (
            "EXISTS (SELECT 1 FROM segments_membership AS sm WHERE sm.profile_id = p.id "
            f"AND sm.segment_id = {b.param(node.segment_id)} AND sm.exited_at IS NULL)"
        )
    if isinstance(node, n.ConsentCondition):
        sql, params = allowed_sql(node.purpose, profile_column="p.id")
        return f"({b.fragment(sql, params)})"
    raise TypeError(f"unknown node {type(node).__name__}")


# --- values held in JSON (traits, event properties) -------------------------------------------
# An expression that reads a named JSON value holds the name's parameter marker: it can be used
# any number of times in the text, ``_Builder.render`` binds the value at each use.


def _trait(node: n.TraitCondition, b: _Builder) -> str:
    entry = f"(p.traits -> {b.param(node.name)})"
    if node.comparison.op == "exists":
        # A PII trait's entry has no value (it stays encrypted): present is enough.
        present = f"NOT {entry} ? 'value' OR jsonb_typeof({entry} -> 'value') <> 'null'"
        return f"coalesce({entry} IS NOT NULL AND ({present}), false)"
    return _json_comparison(f"({entry} -> 'value')", node.comparison, b)


def _property(node: n.PropertyFilter, alias: str, b: _Builder) -> str:
    value = f"({alias}.properties -> {b.param(node.name)})"
    if node.comparison.op == "exists":
        return f"coalesce(jsonb_typeof({value}) <> 'null', false)"
    return _json_comparison(value, node.comparison, b)


def _json_comparison(value: str, comparison: n.Comparison, b: _Builder) -> str:
    """A comparison of a jsonb value; never NULL. Types never mix (docs/segments.md)."""
    kind = comparison.kind
    if comparison.op == "contains":
        (needle,) = comparison.values
        return (
            f"coalesce(CASE jsonb_typeof({value}) "
            f"WHEN 'string' THEN strpos({value} #>> '{{}}', {b.param(needle)}) > 0 "
            f"WHEN 'array' THEN {value} @> {b.param(json.dumps(needle))}::jsonb "
            "ELSE false END, false)"
        )
    return _scalar_comparison(_typed(value, kind), comparison, b, collate=kind == "string")


def _typed(value: str, kind: str) -> str:
    """The jsonb value as SQL of ``kind``, NULL when it is of another type."""
    if kind == "number":
        return f"(CASE WHEN jsonb_typeof({value}) = 'number' THEN ({value})::numeric END)"
    if kind == "string":
        return f"(CASE WHEN jsonb_typeof({value}) = 'string' THEN {value} #>> '{{}}' END)"
    if kind == "boolean":
        return f"(CASE WHEN jsonb_typeof({value}) = 'boolean' THEN ({value})::boolean END)"
    return (
        f"(CASE WHEN jsonb_typeof({value}) = 'string' AND {value} #>> '{{}}' ~ '{_ISO_PATTERN}' "
        f"THEN cdp_try_timestamptz({value} #>> '{{}}') END)"
    )


def _computed(node: n.ComputedCondition, b: _Builder) -> str:
    return _scalar_comparison(_COMPUTED_COLUMNS[node.name], node.comparison, b)


def _scalar_comparison(
    expression: str,
    comparison: n.Comparison,
    b: _Builder,
    *,
    collate: bool = False,
    unknown_differs: bool = True,
) -> str:
    """``expression op value(s)`` as a never-NULL boolean: an unknown (NULL) operand makes every
    operator false but ``neq``, which holds for a missing trait (``unknown_differs``) and fails
    for an aggregate of no values (docs/segments.md)."""
    if comparison.op == "exists":
        return f"({expression} IS NOT NULL)"
    left = f'({expression} COLLATE "C")' if collate else expression
    values = [_bind(value, comparison.kind, b) for value in comparison.values]
    if comparison.op == "in":
        test = f"{left} IN ({', '.join(values)})"
    elif comparison.op == "between":
        test = f"{left} BETWEEN {values[0]} AND {values[1]}"
    elif comparison.op == "neq" and unknown_differs:
        return f"({left} IS DISTINCT FROM {values[0]})"
    else:
        test = f"{left} {_SQL_OPS[comparison.op]} {values[0]}"
    return f"coalesce({test}, false)"


def _bind(value: n.Value, kind: str, b: _Builder) -> str:
    if isinstance(value, n.RelativeTime):
        return f"{b.param(value.at(b.now))}::timestamptz"
    cast = {"number": "numeric", "string": "text", "boolean": "boolean", "date": "timestamptz"}[
        kind
    ]
    bound = str(value) if isinstance(value, Decimal) else value
    return f"{b.param(bound)}::{cast}"


# --- events -----------------------------------------------------------------------------------
def _event_rows(
    events: n.EventFilter, alias: str, b: _Builder, *, window: n.Window | None
) -> list[str]:
    """WHERE terms selecting one profile's (or all restricted profiles') events of a filter."""
    terms = [f"{alias}.event_name = {b.param(events.name)}"]
    terms.extend(_property(item, alias, b) for item in events.where)
    if window is not None:
        if window.within is not None:
            terms.append(f"{alias}.timestamp >= {b.param(b.now - window.within)}")
            terms.append(f"{alias}.timestamp <= {b.param(b.now)}")
        else:
            terms.append(f"{alias}.timestamp >= {b.param(window.start)}")
            terms.append(f"{alias}.timestamp < {b.param(window.end)}")
    return terms


def _event(node: n.EventCondition, b: _Builder) -> str:
    value = {
        "count": "count(*)",
        "sum": "sum({x})",
        "avg": "avg({x})",
        "min": "min({x})",
        "max": "max({x})",
        "first": "min(e.timestamp)",
        "last": "max(e.timestamp)",
    }[node.measure]
    if node.property is not None:
        value = value.format(x=_typed(f"(e.properties -> {b.param(node.property)})", "number"))
    rows = _event_rows(node.events, "e", b, window=node.window)
    if b.profile_ids is not None:
        rows.append(f"i.profile_id = ANY({b.param(b.profile_ids)}::bigint[])")
    predicate = _scalar_comparison(value, node.comparison, b, unknown_differs=False)
    holds_for_none = node.measure == "count" and _holds_for_zero(node.comparison)
    having = f"NOT {predicate}" if holds_for_none else predicate
    grouped = (
        "SELECT i.profile_id FROM ingestion_event AS e "
        "JOIN identity_identifier AS i ON i.id = e.identifier_id "
        f"WHERE {' AND '.join(rows)} GROUP BY i.profile_id HAVING {having}"
    )
    test = "NOT EXISTS" if holds_for_none else "EXISTS"
    return f"{test} (SELECT 1 FROM ({grouped}) AS g WHERE g.profile_id = p.id)"


def _holds_for_zero(comparison: n.Comparison) -> bool:
    """Whether a count comparison is true for no events at all (``lt 3``, ``eq 0``...)."""
    zero = Decimal(0)
    values = [v for v in comparison.values if isinstance(v, Decimal)]
    op = comparison.op
    if op == "in":
        return zero in values
    if op == "between":
        return values[0] <= zero <= values[1]
    return {
        "eq": zero == values[0],
        "neq": zero != values[0],
        "gt": zero > values[0],
        "gte": zero >= values[0],
        "lt": zero < values[0],
        "lte": zero <= values[0],
    }[op]


def _sequence(node: n.SequenceCondition, b: _Builder) -> str:
    first = _event_rows(node.did, "a", b, window=None)
    first.append(f"a.timestamp <= {b.param(b.now - node.within)}")
    if node.since is not None:
        first.append(f"a.timestamp >= {b.param(b.now - node.since)}")
    then = _event_rows(node.then_not, "c", b, window=None)
    then.append("c.timestamp >= a.timestamp")
    then.append("c.id <> a.id")  # "did A, then not A again": the A itself does not count
    then.append(f"c.timestamp <= a.timestamp + {b.param(node.within)}::interval")
    return (
        "EXISTS (SELECT 1 FROM ingestion_event AS a "
        "JOIN identity_identifier AS ia ON ia.id = a.identifier_id "
        f"WHERE ia.profile_id = p.id AND {' AND '.join(first)} "
        "AND NOT EXISTS (SELECT 1 FROM ingestion_event AS c "
        "JOIN identity_identifier AS ic ON ic.id = c.identifier_id "
        f"WHERE ic.profile_id = ia.profile_id AND {' AND '.join(then)}))"
    )
