"""Survivorship: many observations of a trait -> the one value a unified profile shows.

A profile's traits come from *observations*: the traits of each identify call and the fields of
each CRM record, attached to the identifier they arrived through. When observations disagree, a
per-trait *rule* picks the value, and the result keeps its *provenance* (the observation that
won), so a data steward can always answer "where does this value come from?".

``unify(observations, config=...)`` is the entry point. Pure: no database; only
``survivorship_config()`` reads the settings (``CDP_TRAITS``).

Rules, and why each exists:

* **most_recent** (the default): traits change (a plan is upgraded, a person moves), and the
  latest statement is the best guess of what is true now.
* **first_seen**: some traits are defined by their first occurrence and must not drift when
  later events repeat them differently: the signup source, the first-touch campaign.
* **most_frequent**: for traits typed by hand in many places (a first name, a city), one typo or
  autocomplete accident should not win just by being recent; the value most observations agree
  on does. Ties go to the tied value observed most recently.
* **source_priority**: some systems own some traits (billing owns ``plan``, the CRM owns the
  account owner); their value wins whatever others said later. Within a source the most recent
  value wins; sources the order leaves out rank after the listed ones, equal among themselves
  (so among them the most recent wins).

Determinism, and why: profiles are recomputed after every merge and unmerge, and an unmerge
must give back exactly the profile from before the merge. So the result depends only on the
*set* of observations, never on their order: observations are ordered by
``(observed_at, observation_id)``, which is total because ``(name, observation_id)`` identifies
an observation. The same observation given twice (the union of two overlapping lists) counts
once; two different observations under one ``(name, observation_id)`` are a caller bug and raise
``ValueError``.

Equality of values, and why: two values are one value when their canonical JSON (orjson,
``OPT_SORT_KEYS``) is equal, after folding numbers, so:

* objects compare by content whatever their key order (``{"a": 1, "b": 2}`` is
  ``{"b": 2, "a": 1}``); arrays keep their order (an order is data);
* numbers compare by value: ``1`` and ``1.0`` are one value, since JSON has one number type and
  JavaScript senders cannot tell them apart (``identity.normalization`` treats ids the same way);
  integers beyond 64 bits are compared exactly too;
* booleans are not numbers: ``true`` is not ``1`` (Python's ``True == 1`` is an accident of
  Python, not a statement about the data);
* strings compare exactly: case and whitespace are data here; folding them is the job of the
  code that writes the trait, which knows what the trait means.

The winning value is returned as it was observed (``TraitValue.value is
TraitValue.observation.value``). Values that are not JSON (NaN, infinity, non-text object keys,
other types) raise ``ValueError``; messages name the trait and the observation id, never a value
(trait values are often PII).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

import orjson
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

ORIGINS = frozenset({"event", "record"})
# orjson writes integers in this range natively; larger ones go in as raw JSON text.
_ORJSON_INT_MIN, _ORJSON_INT_MAX = -(2**63), 2**64 - 1
# Source names are slugs (ingestion.Source.name).
_SOURCE_NAME = re.compile(r"[-a-zA-Z0-9_]{1,100}")


class Rule(StrEnum):
    MOST_RECENT = "most_recent"
    FIRST_SEEN = "first_seen"
    MOST_FREQUENT = "most_frequent"
    SOURCE_PRIORITY = "source_priority"


@dataclass(frozen=True, slots=True)
class Observation:
    """One statement of a trait's value: an identify call's trait or a CRM record's field."""

    name: str
    value: Any  # a JSON value, already decrypted by the caller when PII; never None
    observed_at: datetime  # the event timestamp or the record's updated_at (aware)
    source: str
    origin: str  # "event" or "record"
    origin_id: int  # the event id or the record id
    observation_id: int  # identifies the observation among those of its trait
    # An observation may stand for ``count`` statements of the same value by the same source
    # (identify calls repeat traits on every page): the latest at ``observed_at`` by
    # ``origin_id``, the first at ``first_observed_at`` by ``first_origin_id``.
    count: int = 1
    first_observed_at: datetime | None = None  # None: observed_at
    first_origin_id: int | None = None  # None: origin_id

    def __post_init__(self) -> None:
        where = f"observation {self.observation_id} of trait {self.name!r}"
        if self.value is None:
            raise ValueError(f"{where} has no value (absent traits are not observations)")
        for moment in (self.observed_at, self.first_observed_at):
            if moment is not None and (moment.tzinfo is None or moment.utcoffset() is None):
                raise ValueError(f"{where}: observed_at must be timezone-aware")
        if self.origin not in ORIGINS:
            raise ValueError(f"{where}: origin must be 'event' or 'record'")
        if self.count < 1:
            raise ValueError(f"{where}: count must be at least 1")
        if self.first_observed_at is not None and self.first_observed_at > self.observed_at:
            raise ValueError(f"{where}: first_observed_at is after observed_at")

    @property
    def first_at(self) -> datetime:
        return self.observed_at if self.first_observed_at is None else self.first_observed_at

    @property
    def first_origin(self) -> int:
        return self.origin_id if self.first_origin_id is None else self.first_origin_id


@dataclass(frozen=True, slots=True)
class TraitValue:
    """The surviving value of one trait and where it came from."""

    name: str
    value: Any
    rule: Rule
    observation: Observation  # provenance: the winning observation
    observations: int  # how many statements of this trait were considered (counts summed)
    distinct_values: int

    @property
    def origin_id(self) -> int:
        """The event or record that set the surviving value: for ``first_seen`` the first
        statement of it, otherwise the latest."""
        if self.rule == Rule.FIRST_SEEN:
            return self.observation.first_origin
        return self.observation.origin_id

    @property
    def observed_at(self) -> datetime:
        if self.rule == Rule.FIRST_SEEN:
            return self.observation.first_at
        return self.observation.observed_at


# --- configuration ----------------------------------------------------------------------------
class SurvivorshipConfigError(ValueError):
    """A ``CDP_TRAITS`` setting is wrong. The message names the setting, never data."""


_SETTING_KEYS = {
    "DEFAULT_RULE": "CDP_TRAIT_DEFAULT_RULE",
    "RULES": "CDP_TRAIT_RULES_JSON",
    "SOURCE_PRIORITY": "CDP_TRAIT_SOURCE_PRIORITY",
}
_RULE_NAMES = ", ".join(Rule)


@dataclass(frozen=True)
class SurvivorshipConfig:
    """Which rule each trait uses and the source order of ``source_priority``."""

    default_rule: Rule = Rule.MOST_RECENT
    rules: Mapping[str, Rule] = field(default_factory=lambda: MappingProxyType({}))
    source_priority: tuple[str, ...] = ()  # strongest first

    @classmethod
    def build(cls, raw: Mapping[str, Any]) -> SurvivorshipConfig:
        """Validate ``settings.CDP_TRAITS``-shaped input; SurvivorshipConfigError when wrong."""
        unknown = sorted(set(raw) - set(_SETTING_KEYS))
        if unknown:
            raise SurvivorshipConfigError(f"CDP_TRAITS has unknown keys: {', '.join(unknown)}")
        default_rule = _rule(raw.get("DEFAULT_RULE", Rule.MOST_RECENT), setting="DEFAULT_RULE")
        rules = _rules(raw.get("RULES") or {})
        priority = _source_priority(raw.get("SOURCE_PRIORITY") or ())
        uses_priority = Rule.SOURCE_PRIORITY in {default_rule, *rules.values()}
        if uses_priority and not priority:
            raise SurvivorshipConfigError(
                "CDP_TRAITS uses the source_priority rule but "
                "CDP_TRAITS['SOURCE_PRIORITY'] (CDP_TRAIT_SOURCE_PRIORITY) is empty; "
                "list the source names strongest first"
            )
        return cls(
            default_rule=default_rule,
            rules=MappingProxyType(rules),
            source_priority=priority,
        )

    def rule_for(self, name: str) -> Rule:
        return self.rules.get(name, self.default_rule)

    def source_rank(self, source: str) -> int:
        """0 for the strongest source; every source not listed shares the rank after the last."""
        try:
            return self.source_priority.index(source)
        except ValueError:
            return len(self.source_priority)


def load_survivorship_config(raw: Mapping[str, Any]) -> SurvivorshipConfig:
    """``SurvivorshipConfig.build`` for the settings: ImproperlyConfigured when it is wrong.

    Settings call this at start-up, so a misspelt rule stops the process at once instead of
    failing in a worker at the first profile it recomputes.
    """
    try:
        return SurvivorshipConfig.build(raw)
    except SurvivorshipConfigError as exc:
        raise ImproperlyConfigured(str(exc)) from exc


_loaded: dict[str, SurvivorshipConfig] = {}


def survivorship_config() -> SurvivorshipConfig:
    """The configuration from ``settings.CDP_TRAITS``, validated on first use."""
    config = _loaded.get("current")
    if config is None:
        config = _loaded["current"] = load_survivorship_config(getattr(settings, "CDP_TRAITS", {}))
    return config


@receiver(setting_changed)
def _forget_config(*, setting: str, **kwargs: Any) -> None:
    if setting == "CDP_TRAITS":
        _loaded.clear()


def _setting(key: str) -> str:
    return f"CDP_TRAITS[{key!r}] ({_SETTING_KEYS[key]})"


def _rule(value: Any, *, setting: str, trait: str | None = None) -> Rule:
    if isinstance(value, str) and value.strip().lower() in set(Rule):
        return Rule(value.strip().lower())
    where = _setting(setting) if trait is None else f"{_setting(setting)} for trait {trait!r}"
    raise SurvivorshipConfigError(f"{where} = {value!r} is not a rule; use one of {_RULE_NAMES}")


def _rules(value: Any) -> dict[str, Rule]:
    if not isinstance(value, Mapping):
        raise SurvivorshipConfigError(
            f"{_setting('RULES')} must be a JSON object of trait name -> rule, "
            'e.g. {"plan": "source_priority"}'
        )
    rules: dict[str, Rule] = {}
    for name, rule in value.items():
        if not isinstance(name, str) or not name.strip() or name != name.strip():
            raise SurvivorshipConfigError(
                f"{_setting('RULES')} has an empty trait name or one with surrounding spaces"
            )
        rules[name] = _rule(rule, setting="RULES", trait=name)
    return rules


def _source_priority(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise SurvivorshipConfigError(f"{_setting('SOURCE_PRIORITY')} must be a list of names")
    for name in value:
        if not isinstance(name, str) or not _SOURCE_NAME.fullmatch(name):
            raise SurvivorshipConfigError(
                f"{_setting('SOURCE_PRIORITY')}: {name!r} is not a source name "
                "(letters, digits, '-' and '_')"
            )
    duplicates = sorted({name for name in value if value.count(name) > 1})
    if duplicates:
        raise SurvivorshipConfigError(
            f"{_setting('SOURCE_PRIORITY')} names a source twice: {', '.join(duplicates)}"
        )
    return tuple(value)


# --- canonical values -------------------------------------------------------------------------
class _NotJson(Exception):
    pass


def canonical_json(value: Any) -> bytes:
    """The canonical JSON of a value: sorted keys, numbers by value (``1.0`` -> ``1``).

    Two observed values are one value exactly when their canonical JSON is equal. Raises
    ValueError for values that are not JSON (the message holds no value).
    """
    return _dumps(value, fold_numbers=True)


def _dumps(value: Any, *, fold_numbers: bool) -> bytes:
    try:
        return orjson.dumps(_tree(value, fold_numbers), option=orjson.OPT_SORT_KEYS)
    except (_NotJson, orjson.JSONEncodeError) as exc:
        raise ValueError("not a JSON value") from exc


def _tree(value: Any, fold_numbers: bool) -> Any:
    """``value`` ready for orjson: numbers folded when asked, big integers as raw JSON text."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return _integer(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _NotJson
        return _integer(int(value)) if fold_numbers and value.is_integer() else value
    if isinstance(value, list | tuple):
        return [_tree(item, fold_numbers) for item in value]
    if isinstance(value, Mapping):
        if not all(isinstance(key, str) for key in value):
            raise _NotJson
        return {key: _tree(item, fold_numbers) for key, item in value.items()}
    raise _NotJson


def _integer(value: int) -> int | orjson.Fragment:
    if _ORJSON_INT_MIN <= value <= _ORJSON_INT_MAX:
        return value
    return orjson.Fragment(str(value).encode())


# --- survivorship -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Entry:
    """An observation with the keys survivorship compares it by."""

    observation: Observation
    canonical: bytes  # equality of values
    exact: bytes  # equality of observations (1 and 1.0 differ here)

    @property
    def order(self) -> tuple[datetime, int]:
        return self.observation.observed_at, self.observation.observation_id

    @property
    def first_order(self) -> tuple[datetime, int]:
        return self.observation.first_at, self.observation.observation_id

    @property
    def identity(self) -> tuple[Any, ...]:
        obs = self.observation
        return (
            obs.observed_at,
            obs.source,
            obs.origin,
            obs.origin_id,
            self.exact,
            obs.count,
            obs.first_at,
            obs.first_origin,
        )


_Picker = Callable[[Sequence[_Entry], SurvivorshipConfig], _Entry]


def unify(
    observations: Iterable[Observation], *, config: SurvivorshipConfig | None = None
) -> dict[str, TraitValue]:
    """The surviving value of every observed trait, by trait name (in name order).

    Depends only on the set of observations: any order, any grouping, the same result.
    """
    config = config or survivorship_config()
    by_name = _entries_by_name(observations)
    return {name: _survive(name, by_name[name], config) for name in sorted(by_name)}


def _entries_by_name(observations: Iterable[Observation]) -> dict[str, list[_Entry]]:
    """Observations per trait, duplicates dropped, oldest first by (observed_at, id)."""
    seen: dict[tuple[str, int], _Entry] = {}
    for observation in observations:
        entry = _entry(observation)
        key = (observation.name, observation.observation_id)
        known = seen.setdefault(key, entry)
        if known.identity != entry.identity:
            raise ValueError(
                f"two different observations {observation.observation_id} of trait "
                f"{observation.name!r}"
            )
    by_name: dict[str, list[_Entry]] = {}
    for entry in seen.values():
        by_name.setdefault(entry.observation.name, []).append(entry)
    for entries in by_name.values():
        entries.sort(key=lambda item: item.order)
    return by_name


def _entry(observation: Observation) -> _Entry:
    try:
        canonical = _dumps(observation.value, fold_numbers=True)
        exact = _dumps(observation.value, fold_numbers=False)
    except ValueError as exc:
        raise ValueError(
            f"observation {observation.observation_id} of trait {observation.name!r} "
            "is not a JSON value"
        ) from exc
    return _Entry(observation=observation, canonical=canonical, exact=exact)


def _survive(name: str, entries: Sequence[_Entry], config: SurvivorshipConfig) -> TraitValue:
    rule = config.rule_for(name)
    winner = _PICKERS[rule](entries, config).observation
    return TraitValue(
        name=name,
        value=winner.value,
        rule=rule,
        observation=winner,
        observations=sum(entry.observation.count for entry in entries),
        distinct_values=len({entry.canonical for entry in entries}),
    )


# Each picker gets the entries of one trait, oldest first, and returns the winner.
def _pick_most_recent(entries: Sequence[_Entry], config: SurvivorshipConfig) -> _Entry:
    return entries[-1]


def _pick_first_seen(entries: Sequence[_Entry], config: SurvivorshipConfig) -> _Entry:
    return min(entries, key=lambda entry: entry.first_order)


def _pick_most_frequent(entries: Sequence[_Entry], config: SurvivorshipConfig) -> _Entry:
    counts: Counter[bytes] = Counter()
    for entry in entries:
        counts[entry.canonical] += entry.observation.count
    # position of each value's latest observation: later wins a tie on the count
    latest = {entry.canonical: position for position, entry in enumerate(entries)}
    value = max(counts, key=lambda canonical: (counts[canonical], latest[canonical]))
    return entries[latest[value]]


def _pick_source_priority(entries: Sequence[_Entry], config: SurvivorshipConfig) -> _Entry:
    ranks = [config.source_rank(entry.observation.source) for entry in entries]
    best = min(ranks)
    position = max(position for position, rank in enumerate(ranks) if rank == best)
    return entries[position]


_PICKERS: Mapping[Rule, _Picker] = MappingProxyType(
    {
        Rule.MOST_RECENT: _pick_most_recent,
        Rule.FIRST_SEEN: _pick_first_seen,
        Rule.MOST_FREQUENT: _pick_most_frequent,
        Rule.SOURCE_PRIORITY: _pick_source_priority,
    }
)
