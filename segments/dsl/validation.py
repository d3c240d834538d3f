"""Parsing and validating segment definitions (docs/segments.md) into ``nodes``. Every error is
collected with its JSON path, so a client sees all of them at once. Pure, but for the PII trait
names (settings) and the optional ``segment_exists`` callback."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from cdp.api.errors import InvalidInput
from cdp.ingestion.pii import pii_keys
from consent.purposes import purposes
from segments.dsl import nodes as n

MAX_DEPTH = 8
MAX_CONDITIONS = 100
MAX_IN_VALUES = 50
MAX_NAME = 255
MAX_STRING = 1000
OPS: tuple[n.Op, ...] = (
    "eq",
    "neq",
    "in",
    "contains",
    "gt",
    "gte",
    "lt",
    "lte",
    "between",
    "exists",
)
MEASURES: tuple[n.Measure, ...] = ("count", "sum", "avg", "min", "max", "first", "last")
# Computed traits (segments_profilemetrics): name -> operand kind.
COMPUTED: dict[str, str] = {
    "total_spend": "number",
    "order_count": "number",
    "event_count": "number",
    "first_seen_at": "date",
    "last_seen_at": "date",
    "last_order_at": "date",
    "rfm_recency": "number",
    "rfm_frequency": "number",
    "rfm_monetary": "number",
}
_RELATIVE = re.compile(r"([+-])(\d{1,6})([mhdw])")
_DURATION = re.compile(r"(\d{1,6})([mhdw])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_KEYS = ("all", "any", "not", "trait", "computed", "event", "sequence", "segment", "consent")


class DefinitionError(InvalidInput):
    """A definition that does not validate; ``errors`` lists every problem by JSON path."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(
            f"{first['path']}: {first['reason']}{more}",
            code="invalid_definition",
            attr=first["path"],
        )
        self.errors = errors


@dataclass
class _Context:
    segment_exists: Callable[[int], bool] | None
    errors: list[dict[str, str]] = field(default_factory=list)
    conditions: int = 0
    time_dependent: bool = False
    segment_refs: set[int] = field(default_factory=set)

    def error(self, path: str, reason: str) -> None:
        self.errors.append({"path": path, "reason": reason})


class _Invalid(Exception):
    """Stops parsing one node; the reason is already recorded."""


def definition_parse(
    doc: object, *, segment_exists: Callable[[int], bool] | None = None, root: str = "definition"
) -> n.Definition:
    """The validated definition, or ``DefinitionError`` listing every problem. A segment
    reference is checked with ``segment_exists`` when given."""
    context = _Context(segment_exists=segment_exists)
    node: n.Node | None
    try:
        node = _condition(doc, root, context, depth=1)
    except _Invalid:
        node = None
    if context.conditions > MAX_CONDITIONS:
        context.error(root, f"at most {MAX_CONDITIONS} conditions per definition")
    if context.errors or node is None:
        raise DefinitionError(context.errors or [{"path": root, "reason": "invalid"}])
    return n.Definition(
        root=node,
        doc=cast(dict[str, object], doc),
        time_dependent=context.time_dependent,
        segment_refs=frozenset(context.segment_refs),
    )


# --- conditions -------------------------------------------------------------------------------
def _condition(raw: object, path: str, context: _Context, *, depth: int) -> n.Node:
    if depth > MAX_DEPTH:
        context.error(path, f"conditions nest at most {MAX_DEPTH} deep")
        raise _Invalid
    if not isinstance(raw, Mapping):
        context.error(path, "a condition is a JSON object")
        raise _Invalid
    kinds = [key for key in _KEYS if key in raw]
    if len(kinds) != 1:
        context.error(path, f"a condition has exactly one of {', '.join(_KEYS)}")
        raise _Invalid
    kind = kinds[0]
    context.conditions += 1
    if kind in ("all", "any"):
        return _group(raw, kind, path, context, depth=depth)
    if kind == "not":
        _only(raw, {"not"}, path, context)
        return n.Not(child=_condition(raw["not"], f"{path}.not", context, depth=depth + 1))
    parse = {
        "trait": _trait,
        "computed": _computed,
        "event": _event,
        "sequence": _sequence,
        "segment": _segment,
        "consent": _consent,
    }[kind]
    return parse(raw, path, context)


def _group(
    raw: Mapping[str, Any], kind: str, path: str, context: _Context, *, depth: int
) -> n.Node:
    _only(raw, {kind}, path, context)
    children = raw[kind]
    if not isinstance(children, list) or not children:
        context.error(f"{path}.{kind}", "a non-empty list of conditions")
        raise _Invalid
    parsed: list[n.Node] = []
    for index, child in enumerate(children):
        try:
            parsed.append(_condition(child, f"{path}.{kind}[{index}]", context, depth=depth + 1))
        except _Invalid:
            continue
    if len(parsed) != len(children):
        raise _Invalid
    return n.AllOf(tuple(parsed)) if kind == "all" else n.AnyOf(tuple(parsed))


def _trait(raw: Mapping[str, Any], path: str, context: _Context) -> n.Node:
    _only(raw, {"trait", "op", "value"}, path, context)
    name = _name(raw.get("trait"), f"{path}.trait", context)
    comparison = _comparison(raw, path, context, dates_from_strings=True)
    if name in pii_keys() and comparison.op != "exists":
        context.error(
            f"{path}.op", f"trait {name!r} is PII, stored encrypted: only 'exists' applies"
        )
        raise _Invalid
    return n.TraitCondition(name=name, comparison=comparison)


def _computed(raw: Mapping[str, Any], path: str, context: _Context) -> n.Node:
    _only(raw, {"computed", "op", "value"}, path, context)
    name = raw.get("computed")
    if name not in COMPUTED:
        context.error(f"{path}.computed", f"one of {', '.join(COMPUTED)}")
        raise _Invalid
    comparison = _comparison(raw, path, context, force=COMPUTED[name])
    return n.ComputedCondition(name=name, comparison=comparison)


def _event(raw: Mapping[str, Any], path: str, context: _Context) -> n.Node:
    allowed = {"event", "where", "measure", "property", "op", "value", "within", "between"}
    _only(raw, allowed, path, context)
    events = _event_filter(raw, path, context)
    measure = raw.get("measure", "count")
    if measure not in MEASURES:
        context.error(f"{path}.measure", f"one of {', '.join(MEASURES)}")
        raise _Invalid
    prop: str | None = None
    if measure in ("sum", "avg", "min", "max"):
        prop = _name(raw.get("property"), f"{path}.property", context)
    elif "property" in raw:
        context.error(f"{path}.property", "only sum, avg, min and max read a property")
        raise _Invalid
    is_time = measure in ("first", "last")
    if "op" not in raw and "value" not in raw and not is_time:
        comparison = n.Comparison(op="gte", kind="number", values=(Decimal(1),))
    else:
        comparison = _comparison(raw, path, context, force="date" if is_time else "number")
        if comparison.op in ("contains", "exists"):
            context.error(f"{path}.op", f"{comparison.op!r} does not apply to a {measure}")
            raise _Invalid
    window = _window(raw, path, context)
    return n.EventCondition(
        events=events, measure=measure, property=prop, comparison=comparison, window=window
    )


def _sequence(raw: Mapping[str, Any], path: str, context: _Context) -> n.Node:
    _only(raw, {"sequence", "since"}, path, context)
    body = raw["sequence"]
    spath = f"{path}.sequence"
    if not isinstance(body, Mapping):
        context.error(spath, 'an object: {"did": {...}, "then_not": {...}, "within": "1h"}')
        raise _Invalid
    _only(body, {"did", "then_not", "within"}, spath, context)
    parts = []
    for key in ("did", "then_not"):
        part = body.get(key)
        if not isinstance(part, Mapping):
            context.error(f"{spath}.{key}", 'an event: {"event": NAME, "where": [...]}')
            raise _Invalid
        _only(part, {"event", "where"}, f"{spath}.{key}", context)
        parts.append(_event_filter(part, f"{spath}.{key}", context))
    within = _duration(body.get("within"), f"{spath}.within", context)
    since = _duration(raw["since"], f"{path}.since", context) if "since" in raw else None
    context.time_dependent = True
    return n.SequenceCondition(did=parts[0], then_not=parts[1], within=within, since=since)


def _segment(raw: Mapping[str, Any], path: str, context: _Context) -> n.Node:
    _only(raw, {"segment"}, path, context)
    value = raw["segment"]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        context.error(f"{path}.segment", "a segment id")
        raise _Invalid
    if context.segment_exists is not None and not context.segment_exists(value):
        context.error(f"{path}.segment", f"no segment {value}")
        raise _Invalid
    context.segment_refs.add(value)
    return n.SegmentCondition(segment_id=value)


def _consent(raw: Mapping[str, Any], path: str, context: _Context) -> n.Node:
    _only(raw, {"consent"}, path, context)
    value = raw["consent"]
    if not isinstance(value, str) or purposes().get(value) is None:
        context.error(f"{path}.consent", f"one of the purposes {', '.join(purposes().names)}")
        raise _Invalid
    return n.ConsentCondition(purpose=value)


# --- parts ------------------------------------------------------------------------------------
def _event_filter(raw: Mapping[str, Any], path: str, context: _Context) -> n.EventFilter:
    name = _name(raw.get("event"), f"{path}.event", context)
    where = raw.get("where", [])
    if not isinstance(where, list):
        context.error(f"{path}.where", 'a list of {"property": P, "op": OP, "value": V}')
        raise _Invalid
    filters = []
    for index, item in enumerate(where):
        fpath = f"{path}.where[{index}]"
        if not isinstance(item, Mapping):
            context.error(fpath, 'a property filter: {"property": P, "op": OP, "value": V}')
            raise _Invalid
        _only(item, {"property", "op", "value"}, fpath, context)
        prop = _name(item.get("property"), f"{fpath}.property", context)
        filters.append(
            n.PropertyFilter(
                name=prop, comparison=_comparison(item, fpath, context, dates_from_strings=True)
            )
        )
    return n.EventFilter(name=name, where=tuple(filters))


def _window(raw: Mapping[str, Any], path: str, context: _Context) -> n.Window | None:
    if "within" in raw and "between" in raw:
        context.error(path, "a window is either within or between, not both")
        raise _Invalid
    if "within" in raw:
        context.time_dependent = True
        return n.Window(within=_duration(raw["within"], f"{path}.within", context))
    if "between" in raw:
        bounds = raw["between"]
        if not isinstance(bounds, list) or len(bounds) != 2:
            context.error(f"{path}.between", "two dates: [start, end)")
            raise _Invalid
        start = _absolute_date(bounds[0], f"{path}.between[0]", context)
        end = _absolute_date(bounds[1], f"{path}.between[1]", context)
        if start >= end:
            context.error(f"{path}.between", "the start must be before the end")
            raise _Invalid
        return n.Window(start=start, end=end)
    return None


def _comparison(
    raw: Mapping[str, Any],
    path: str,
    context: _Context,
    *,
    force: str | None = None,
    dates_from_strings: bool = False,
) -> n.Comparison:
    op = raw.get("op")
    if op not in OPS:
        context.error(f"{path}.op", f"{op!r} is not an operator; use one of {', '.join(OPS)}")
        raise _Invalid
    vpath = f"{path}.value"
    if op == "exists":
        if "value" in raw:
            context.error(vpath, "exists takes no value")
            raise _Invalid
        return n.Comparison(op="exists", kind="none", values=())
    if "value" not in raw:
        context.error(vpath, f"{op} needs a value")
        raise _Invalid
    value = raw["value"]
    if op in ("in", "between"):
        if not isinstance(value, list) or not value:
            context.error(vpath, f"{op} takes a list of values")
            raise _Invalid
        if op == "between" and len(value) != 2:
            context.error(vpath, "between takes [low, high]")
            raise _Invalid
        if op == "in" and len(value) > MAX_IN_VALUES:
            context.error(vpath, f"at most {MAX_IN_VALUES} values")
            raise _Invalid
        items = value
    else:
        items = [value]
    ordered = op in (*n.ORDERED_OPS, "between")
    parsed = [
        _operand(
            item,
            f"{vpath}[{i}]" if len(items) > 1 or op in ("in", "between") else vpath,
            context,
            force=force,
            dates=dates_from_strings and ordered,
        )
        for i, item in enumerate(items)
    ]
    kinds = {kind for kind, _ in parsed}
    if len(kinds) != 1:
        context.error(vpath, "the values must all be of one type")
        raise _Invalid
    (kind,) = kinds
    if op == "contains" and kind != "string":
        context.error(vpath, "contains takes a string")
        raise _Invalid
    if ordered and kind == "boolean":
        context.error(f"{path}.op", f"{op} does not apply to booleans")
        raise _Invalid
    if kind == "date" and op in ("in", "contains"):
        context.error(f"{path}.op", f"{op} does not apply to dates")
        raise _Invalid
    return n.Comparison(op=op, kind=kind, values=tuple(v for _, v in parsed))  # type: ignore[arg-type]


def _operand(
    value: object, path: str, context: _Context, *, force: str | None, dates: bool
) -> tuple[str, n.Value]:
    """One operand and its kind. ``force`` fixes the kind (computed traits, measures); else a
    relative time is a date, and so is an ISO string when ``dates`` (ordered comparisons)."""
    if force == "date":
        return "date", _date(value, path, context)
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if force == "number" and not is_number:
        context.error(path, "a number")
        raise _Invalid
    if is_number:
        if isinstance(value, float) and not math.isfinite(value):
            context.error(path, "a finite number")
            raise _Invalid
        return "number", Decimal(str(value))
    if isinstance(value, bool):
        return "boolean", value
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            context.error(path, f"at most {MAX_STRING:,} characters")
            raise _Invalid
        if _RELATIVE.fullmatch(value) or (dates and _iso(value) is not None):
            return "date", _date(value, path, context)
        return "string", value
    context.error(path, "a string, number, boolean or date")
    raise _Invalid


def _date(value: object, path: str, context: _Context) -> n.DateValue:
    if isinstance(value, str):
        match = _RELATIVE.fullmatch(value)
        if match:
            sign, amount, unit = match.groups()
            context.time_dependent = True
            offset = timedelta(**{_UNITS[unit]: int(amount)})
            return n.RelativeTime(-offset if sign == "-" else offset)
    return _absolute_date(value, path, context)


def _absolute_date(value: object, path: str, context: _Context) -> datetime:
    parsed = _iso(value) if isinstance(value, str) else None
    if parsed is None:
        context.error(
            path, 'a date: ISO ("2026-03-01", "2026-03-01T12:00:00Z") or relative ("-30d")'
        )
        raise _Invalid
    return parsed


def _iso(value: str) -> datetime | None:
    """An ISO 8601 date or date-time (naive ones are UTC), else None."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}([T ][0-9:.]+(Z|[+-]\d{2}:?\d{2})?)?", value):
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _duration(value: object, path: str, context: _Context) -> timedelta:
    match = _DURATION.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        context.error(path, 'a duration: "30m", "24h", "7d", "2w"')
        raise _Invalid
    amount, unit = match.groups()
    if int(amount) == 0:
        context.error(path, "a duration longer than zero")
        raise _Invalid
    return timedelta(**{_UNITS[unit]: int(amount)})


def _name(value: object, path: str, context: _Context) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_NAME:
        context.error(path, f"a name of 1-{MAX_NAME} characters")
        raise _Invalid
    return value


def _only(raw: Mapping[str, Any], allowed: set[str], path: str, context: _Context) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        context.error(
            f"{path}.{unknown[0]}", f"unknown key; allowed here: {', '.join(sorted(allowed))}"
        )
        raise _Invalid
