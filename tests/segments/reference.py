"""A plain Python evaluation of segment definitions (docs/segments.md), written from the
document and not from the compiler, to check the compiled SQL against it."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from segments.dsl import nodes as n

_ISO = re.compile(r"\d{4}-\d{2}-\d{2}([T ][0-9:.]+(Z|[+-]\d{2}:?\d{2})?)?")


@dataclass
class Event:
    name: str
    at: datetime
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass
class Person:
    traits: dict[str, Any] = field(default_factory=dict)  # name -> raw JSON value
    pii_traits: set[str] = field(default_factory=set)  # present, value encrypted
    metrics: dict[str, Any] | None = None  # None: no metrics row
    events: list[Event] = field(default_factory=list)
    segments: set[int] = field(default_factory=set)
    allowed: dict[str, bool] = field(default_factory=dict)  # purpose -> allowed


def evaluate(node: n.Node, person: Person, *, now: datetime) -> bool:
    if isinstance(node, n.AllOf):
        return all(evaluate(child, person, now=now) for child in node.children)
    if isinstance(node, n.AnyOf):
        return any(evaluate(child, person, now=now) for child in node.children)
    if isinstance(node, n.Not):
        return not evaluate(node.child, person, now=now)
    if isinstance(node, n.TraitCondition):
        if node.comparison.op == "exists":
            return node.name in person.pii_traits or person.traits.get(node.name) is not None
        return _compare_json(person.traits.get(node.name), node.comparison, now)
    if isinstance(node, n.ComputedCondition):
        return _compare(_computed(person, node.name), node.comparison, now)
    if isinstance(node, n.EventCondition):
        return _event(node, person, now)
    if isinstance(node, n.SequenceCondition):
        return _sequence(node, person, now)
    if isinstance(node, n.SegmentCondition):
        return node.segment_id in person.segments
    if isinstance(node, n.ConsentCondition):
        return person.allowed[node.purpose]
    raise TypeError(node)


def _computed(person: Person, name: str) -> Any:
    metrics = person.metrics or {}
    if name in ("total_spend", "order_count", "event_count"):
        return Decimal(str(metrics.get(name, 0)))
    value = metrics.get(name)
    return Decimal(value) if isinstance(value, int) else value


def _typed(raw: Any, kind: str) -> Any:
    """A JSON value as the comparison's kind, or None when it is of another type."""
    if kind == "number":
        ok = isinstance(raw, (int, float)) and not isinstance(raw, bool)
        return Decimal(str(raw)) if ok else None
    if kind == "string":
        return raw if isinstance(raw, str) else None
    if kind == "boolean":
        return raw if isinstance(raw, bool) else None
    if kind == "date":
        if not isinstance(raw, str) or not _ISO.fullmatch(raw):
            return None
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise ValueError(kind)


def _compare_json(raw: Any, comparison: n.Comparison, now: datetime) -> bool:
    if comparison.op == "exists":
        return raw is not None
    if comparison.op == "contains":
        (needle,) = comparison.values
        if isinstance(raw, str):
            return str(needle) in raw
        if isinstance(raw, list):
            return needle in [item for item in raw if isinstance(item, str)]
        return False
    return _compare(_typed(raw, comparison.kind), comparison, now)


def _operand(value: n.Value, now: datetime) -> Any:
    return value.at(now) if isinstance(value, n.RelativeTime) else value


def _compare(actual: Any, comparison: n.Comparison, now: datetime) -> bool:
    """None (unknown) fails every operator but neq, which holds."""
    values = [_operand(value, now) for value in comparison.values]
    op = comparison.op
    if op == "exists":
        return actual is not None
    if op == "neq":
        return actual is None or actual != values[0]
    if actual is None:
        return False
    if op == "eq":
        return bool(actual == values[0])
    if op == "in":
        return actual in values
    if op == "between":
        return bool(values[0] <= actual <= values[1])
    return {
        "gt": actual > values[0],
        "gte": actual >= values[0],
        "lt": actual < values[0],
        "lte": actual <= values[0],
    }[op]


def _matching(events: Sequence[Event], spec: n.EventFilter, now: datetime) -> list[Event]:
    return [
        event
        for event in events
        if event.name == spec.name
        and all(_property(event.properties, item, now) for item in spec.where)
    ]


def _property(properties: Mapping[str, Any], item: n.PropertyFilter, now: datetime) -> bool:
    raw = properties.get(item.name)
    if item.comparison.op == "exists":
        return raw is not None
    return _compare_json(raw, item.comparison, now)


def _event(node: n.EventCondition, person: Person, now: datetime) -> bool:
    events = _matching(person.events, node.events, now)
    window = node.window
    if window is not None and window.within is not None:
        events = [e for e in events if now - window.within <= e.at <= now]
    elif window is not None:
        assert window.start is not None and window.end is not None
        events = [e for e in events if window.start <= e.at < window.end]
    value: Any
    if node.measure == "count":
        value = Decimal(len(events))
    elif node.measure in ("first", "last"):
        times = [e.at for e in events]
        value = (min(times) if node.measure == "first" else max(times)) if times else None
    else:
        assert node.property is not None
        numbers = [
            Decimal(str(v))
            for e in events
            if isinstance(v := e.properties.get(node.property), (int, float))
            and not isinstance(v, bool)
        ]
        if not numbers:
            value = None
        elif node.measure == "sum":
            value = sum(numbers, Decimal(0))
        elif node.measure == "avg":
            value = sum(numbers, Decimal(0)) / len(numbers)
        else:
            value = min(numbers) if node.measure == "min" else max(numbers)
    # An aggregate of nothing is unknown: every operator fails, neq included.
    return value is not None and _compare(value, node.comparison, now)


def _sequence(node: n.SequenceCondition, person: Person, now: datetime) -> bool:
    firsts = _matching(person.events, node.did, now)
    thens = _matching(person.events, node.then_not, now)
    for first in firsts:
        if first.at > now - node.within:
            continue
        if node.since is not None and first.at < now - node.since:
            continue
        if not any(
            then is not first and first.at <= then.at <= first.at + node.within for then in thens
        ):
            return True
    return False
