"""The parsed form of a segment definition (docs/segments.md): typed, validated nodes that the
compiler turns into SQL and tests evaluate in Python. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

Scalar = str | Decimal | bool
Op = Literal["eq", "neq", "in", "contains", "gt", "gte", "lt", "lte", "between", "exists"]
Measure = Literal["count", "sum", "avg", "min", "max", "first", "last"]

ORDERED_OPS = ("gt", "gte", "lt", "lte")


@dataclass(frozen=True)
class RelativeTime:
    """``-30d``: an offset from the evaluation's ``now``."""

    offset: timedelta

    def at(self, now: datetime) -> datetime:
        return now + self.offset


# A comparison value: a scalar, a date (absolute or relative), or a list of them.
DateValue = datetime | RelativeTime
Value = Scalar | DateValue


@dataclass(frozen=True)
class Comparison:
    """``op`` with its operand(s): ``values`` holds one value, two for ``between``, several for
    ``in``, none for ``exists``. ``kind`` is the operand type: "string", "number", "boolean",
    "date" (or "none" for exists)."""

    op: Op
    kind: Literal["string", "number", "boolean", "date", "none"]
    values: tuple[Value, ...]


@dataclass(frozen=True)
class TraitCondition:
    name: str
    comparison: Comparison


@dataclass(frozen=True)
class ComputedCondition:
    name: str
    comparison: Comparison


@dataclass(frozen=True)
class PropertyFilter:
    name: str
    comparison: Comparison


@dataclass(frozen=True)
class EventFilter:
    """Which events: by name and property filters."""

    name: str
    where: tuple[PropertyFilter, ...] = ()


@dataclass(frozen=True)
class Window:
    """``within`` a duration before now, or ``between`` two dates (end exclusive)."""

    within: timedelta | None = None
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True)
class EventCondition:
    events: EventFilter
    measure: Measure
    property: str | None  # for sum / avg / min / max
    comparison: Comparison
    window: Window | None


@dataclass(frozen=True)
class SequenceCondition:
    did: EventFilter
    then_not: EventFilter
    within: timedelta
    since: timedelta | None


@dataclass(frozen=True)
class SegmentCondition:
    segment_id: int


@dataclass(frozen=True)
class ConsentCondition:
    purpose: str


@dataclass(frozen=True)
class AllOf:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class AnyOf:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    child: Node


Node = (
    AllOf
    | AnyOf
    | Not
    | TraitCondition
    | ComputedCondition
    | EventCondition
    | SequenceCondition
    | SegmentCondition
    | ConsentCondition
)


@dataclass(frozen=True)
class Definition:
    """A validated definition: the tree, the document it came from (normalized), whether it
    reads the clock, and the segments it refers to."""

    root: Node
    doc: dict[str, object]
    time_dependent: bool
    segment_refs: frozenset[int]
