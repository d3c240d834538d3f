"""Trait survivorship: each rule and its ties, value equality, config, and order independence."""

from __future__ import annotations

import subprocess
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from itertools import count
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from hypothesis import given, settings
from hypothesis import strategies as st

from identity.survivorship import (
    Observation,
    Rule,
    SurvivorshipConfig,
    SurvivorshipConfigError,
    TraitValue,
    canonical_json,
    load_survivorship_config,
    survivorship_config,
    unify,
)
from tests.settings_process import run_with_settings

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
PARIS = timezone(timedelta(hours=1))
_ids = count(1)


def obs(
    value: Any,
    at: int = 0,
    *,
    name: str = "plan",
    source: str = "web",
    origin: str = "event",
    observation_id: int | None = None,
) -> Observation:
    """An observation ``at`` minutes after T0; ids increase with creation unless given."""
    oid = next(_ids) if observation_id is None else observation_id
    return Observation(
        name=name,
        value=value,
        observed_at=T0 + timedelta(minutes=at),
        source=source,
        origin=origin,
        origin_id=oid * 10,
        observation_id=oid,
    )


def config(**kwargs: Any) -> SurvivorshipConfig:
    return SurvivorshipConfig.build(kwargs)


def winner(observations: list[Observation], rule: Rule, **kwargs: Any) -> TraitValue:
    (result,) = unify(observations, config=config(DEFAULT_RULE=rule, **kwargs)).values()
    return result


# --- most_recent ------------------------------------------------------------------------------
def test_most_recent_takes_the_latest_observation_whatever_its_source() -> None:
    old, new = obs("free", at=0, source="billing"), obs("pro", at=5, source="web")
    result = winner([new, old], Rule.MOST_RECENT)
    assert result.value == "pro"
    assert result.observation == new
    assert (result.observations, result.distinct_values, result.rule) == (2, 2, Rule.MOST_RECENT)


def test_most_recent_breaks_a_tie_on_time_with_the_higher_observation_id() -> None:
    low, high = obs("a", at=1, observation_id=7), obs("b", at=1, observation_id=8)
    assert winner([high, low], Rule.MOST_RECENT).observation == high
    assert winner([low, high], Rule.MOST_RECENT).observation == high


def test_most_recent_compares_instants_not_wall_clocks() -> None:
    utc = obs("utc", at=30)  # 12:30 UTC
    paris = replace(obs("paris"), observed_at=datetime(2025, 3, 1, 13, 15, tzinfo=PARIS))
    assert winner([paris, utc], Rule.MOST_RECENT).observation == utc  # 12:15 UTC is earlier


# --- first_seen -------------------------------------------------------------------------------
def test_first_seen_keeps_the_earliest_observation() -> None:
    first, later = obs("newsletter", at=0), obs("ads", at=60)
    assert winner([later, first], Rule.FIRST_SEEN).observation == first


def test_first_seen_breaks_a_tie_on_time_with_the_lower_observation_id() -> None:
    low, high = obs("a", at=1, observation_id=3), obs("b", at=1, observation_id=4)
    assert winner([high, low], Rule.FIRST_SEEN).observation == low


# --- most_frequent ----------------------------------------------------------------------------
def test_most_frequent_keeps_the_value_most_observations_agree_on() -> None:
    observations = [obs("Jon", 0), obs("John", 1), obs("Jon", 2), obs("John", 3), obs("Jon", 4)]
    result = winner(observations, Rule.MOST_FREQUENT)
    assert result.observation == observations[-1]
    assert (result.observations, result.distinct_values) == (5, 2)


def test_most_frequent_provenance_is_the_latest_observation_of_the_winning_value() -> None:
    latest_jon = obs("Jon", at=9)
    result = winner([obs("Jon", at=0), latest_jon, obs("John", at=10)], Rule.MOST_FREQUENT)
    assert result.observation == latest_jon


def test_most_frequent_tie_goes_to_the_value_observed_most_recently() -> None:
    observations = [obs("Jon", at=0), obs("John", at=1), obs("John", at=2), obs("Jon", at=3)]
    assert winner(observations, Rule.MOST_FREQUENT).value == "Jon"
    observations.append(obs("John", at=4))
    observations.append(obs("Jon", at=4, observation_id=observations[-1].observation_id + 1))
    assert winner(observations, Rule.MOST_FREQUENT).value == "Jon"  # same time: higher id


def test_most_frequent_counts_equal_objects_whatever_their_key_order() -> None:
    home = {"city": "Lyon", "zip": "69001"}
    result = winner(
        [obs(home, at=0), obs({"zip": "69001", "city": "Lyon"}, at=1), obs({"city": "Nice"}, 2)],
        Rule.MOST_FREQUENT,
    )
    assert result.value == {"city": "Lyon", "zip": "69001"}
    assert result.distinct_values == 2


# --- source_priority --------------------------------------------------------------------------
PRIORITY = {"SOURCE_PRIORITY": ["billing", "crm"]}


def test_source_priority_prefers_the_stronger_source_over_a_newer_value() -> None:
    billing = obs("pro", at=0, source="billing")
    result = winner(
        [obs("free", at=5, source="crm"), billing, obs("trial", 9, source="web")],
        Rule.SOURCE_PRIORITY,
        **PRIORITY,
    )
    assert result.observation == billing


def test_source_priority_takes_the_most_recent_value_within_the_source() -> None:
    newer = obs("pro", at=3, source="crm")
    result = winner(
        [obs("free", at=1, source="crm"), newer, obs("x", at=4, source="web")],
        Rule.SOURCE_PRIORITY,
        **PRIORITY,
    )
    assert result.observation == newer


def test_unlisted_sources_rank_after_listed_ones_and_equal_among_themselves() -> None:
    crm = obs("free", at=0, source="crm")
    assert (
        winner([obs("x", 5, source="web"), crm], Rule.SOURCE_PRIORITY, **PRIORITY).observation
        == crm
    )
    newest = obs("b", at=7, source="app")
    result = winner([obs("a", at=2, source="web"), newest], Rule.SOURCE_PRIORITY, **PRIORITY)
    assert result.observation == newest


# --- rules per trait, counts, equality of values ----------------------------------------------
def test_each_trait_uses_its_own_rule_or_the_default() -> None:
    cfg = config(
        DEFAULT_RULE="first_seen",
        RULES={"plan": "source_priority", "first_name": "most_frequent"},
        SOURCE_PRIORITY=["billing"],
    )
    result = unify(
        [
            obs("pro", at=0, source="billing"),
            obs("free", at=9),
            obs("Ann", at=0, name="first_name"),
            obs("Anne", at=1, name="first_name"),
            obs("Anne", at=2, name="first_name"),
            obs("a@x.io", at=0, name="email"),
            obs("b@x.io", at=1, name="email"),
        ],
        config=cfg,
    )
    assert list(result) == ["email", "first_name", "plan"]
    assert {name: (item.value, item.rule) for name, item in result.items()} == {
        "email": ("a@x.io", Rule.FIRST_SEEN),
        "first_name": ("Anne", Rule.MOST_FREQUENT),
        "plan": ("pro", Rule.SOURCE_PRIORITY),
    }


def test_nothing_observed_gives_no_traits() -> None:
    assert unify([], config=SurvivorshipConfig()) == {}


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ({"a": 1, "b": [1, {"y": 2, "x": 1}]}, {"b": [1, {"x": 1, "y": 2}], "a": 1}),
        (1, 1.0),
        (-0.0, 0),
        ([1, 2.0], [1.0, 2]),
        (2**70, float(2**70)),  # beyond 64 bits, still compared exactly
    ],
)
def test_these_values_are_one_value(left: Any, right: Any) -> None:
    assert canonical_json(left) == canonical_json(right)
    result = winner([obs(left, at=0), obs(right, at=1)], Rule.MOST_RECENT)
    assert result.distinct_values == 1


@pytest.mark.parametrize(
    ("left", "right"),
    [(True, 1), (False, 0), ("1", 1), ([1, 2], [2, 1]), ("Acme", "acme"), (2**70, 2**70 + 1)],
)
def test_these_values_are_different_values(left: Any, right: Any) -> None:
    assert canonical_json(left) != canonical_json(right)
    assert winner([obs(left, at=0), obs(right, at=1)], Rule.MOST_RECENT).distinct_values == 2


def test_the_winning_value_is_returned_as_observed() -> None:
    float_one = obs(1.0, at=0)
    result = winner([float_one, obs(1, at=-5), obs(1, at=-4)], Rule.FIRST_SEEN)
    assert result.value == 1 and isinstance(result.value, int)
    result = winner([float_one, obs(1, at=-5)], Rule.MOST_RECENT)
    assert result.value is float_one.value and isinstance(result.value, float)


# --- duplicates and bad observations ----------------------------------------------------------
def test_the_same_observation_twice_counts_once() -> None:
    twice = obs("Jon", at=0)
    result = winner([twice, twice, obs("John", at=1)], Rule.MOST_FREQUENT)
    assert (result.value, result.observations) == ("John", 2)


def test_two_different_observations_under_one_id_are_refused() -> None:
    first = obs("secret-a", at=0, observation_id=500)
    other = obs("secret-b", at=0, observation_id=500)
    with pytest.raises(ValueError, match="two different observations 500 of trait 'plan'") as exc:
        unify([first, other], config=SurvivorshipConfig())
    assert "secret" not in str(exc.value)


def test_one_id_under_two_trait_names_is_two_observations() -> None:
    result = unify(
        [obs("a", observation_id=1), obs("b", name="city", observation_id=1)],
        config=SurvivorshipConfig(),
    )
    assert set(result) == {"city", "plan"}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"value": None}, "has no value"),
        ({"observed_at": datetime(2025, 1, 1)}, "must be timezone-aware"),
        ({"origin": "import"}, "origin must be 'event' or 'record'"),
    ],
)
def test_malformed_observations_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(obs("x"), **changes)


@pytest.mark.parametrize(
    "value", [float("nan"), float("inf"), {"nested": [float("-inf")]}, {1: "x"}, b"raw", {1, 2}]
)
def test_values_that_are_not_json_are_refused_without_showing_them(value: Any) -> None:
    with pytest.raises(ValueError, match=r"observation 77 of trait 'plan' is not a JSON value"):
        unify([obs(value, observation_id=77)], config=SurvivorshipConfig())


# --- properties -------------------------------------------------------------------------------
json_scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=4),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)
# A small pool makes equal values (and ties on counts) common.
POOL = ("free", "pro", 1, 1.0, True, {"a": 1, "b": 2}, {"b": 2, "a": 1}, [1, 2])
values = st.one_of(st.sampled_from(POOL), json_values)
SOURCES = ("billing", "crm", "web", "app")
configs = st.builds(
    lambda default, rules, priority: SurvivorshipConfig.build(
        {"DEFAULT_RULE": default, "RULES": rules, "SOURCE_PRIORITY": priority}
    ),
    st.sampled_from(list(Rule)),
    st.dictionaries(st.sampled_from(["plan", "city", "email"]), st.sampled_from(list(Rule))),
    st.lists(st.sampled_from(SOURCES), unique=True, min_size=1, max_size=3),
)


@st.composite
def observation_lists(draw: st.DrawFn) -> list[Observation]:
    size = draw(st.integers(min_value=0, max_value=14))
    ids = draw(st.lists(st.integers(-50, 10**6), min_size=size, max_size=size, unique=True))
    return [
        Observation(
            name=draw(st.sampled_from(["plan", "city", "email"])),
            value=draw(values),
            # Few distinct instants, so ties on time (broken by id) are frequent.
            observed_at=T0 + timedelta(minutes=draw(st.integers(0, 3))),
            source=draw(st.sampled_from(SOURCES)),
            origin=draw(st.sampled_from(["event", "record"])),
            origin_id=draw(st.integers(1, 5)),
            observation_id=observation_id,
        )
        for observation_id in ids
    ]


@settings(max_examples=400, deadline=None)
@given(observations=observation_lists(), cfg=configs, data=st.data())
def test_the_order_of_observations_does_not_matter(
    observations: list[Observation], cfg: SurvivorshipConfig, data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(observations))
    assert exact(unify(shuffled, config=cfg)) == exact(unify(observations, config=cfg))


@settings(max_examples=400, deadline=None)
@given(observations=observation_lists(), cfg=configs, data=st.data())
def test_the_grouping_of_observations_does_not_matter(
    observations: list[Observation], cfg: SurvivorshipConfig, data: st.DataObject
) -> None:
    # Each observation goes to profile A, profile B or (an overlapping reload) both.
    sides = data.draw(st.lists(st.sampled_from("AB+"), min_size=len(observations)))
    group_a = [item for item, side in zip(observations, sides, strict=False) if side in "A+"]
    group_b = [item for item, side in zip(observations, sides, strict=False) if side in "B+"]
    union = data.draw(st.permutations(group_a)) + data.draw(st.permutations(group_b))
    assert exact(unify(union, config=cfg)) == exact(unify(observations, config=cfg))


@settings(max_examples=400, deadline=None)
@given(observations=observation_lists(), cfg=configs)
def test_each_winner_is_what_its_rule_says(
    observations: list[Observation], cfg: SurvivorshipConfig
) -> None:
    result = unify(observations, config=cfg)
    assert set(result) == {item.name for item in observations}
    for name, trait in result.items():
        mine = [item for item in observations if item.name == name]
        assert trait.rule == cfg.rule_for(name)
        assert trait.observation in mine and trait.value is trait.observation.value
        assert trait.observations == len(mine)
        assert trait.distinct_values == len({canonical_json(item.value) for item in mine})
        assert trait.observation == expected_winner(mine, cfg, trait.rule)


def expected_winner(mine: list[Observation], cfg: SurvivorshipConfig, rule: Rule) -> Observation:
    """The rules written the slow, obvious way."""

    def order(item: Observation) -> tuple[datetime, int]:
        return item.observed_at, item.observation_id

    if rule is Rule.MOST_RECENT:
        return max(mine, key=order)
    if rule is Rule.FIRST_SEEN:
        return min(mine, key=order)
    if rule is Rule.SOURCE_PRIORITY:
        best = min(cfg.source_rank(item.source) for item in mine)
        return max((item for item in mine if cfg.source_rank(item.source) == best), key=order)
    counts = Counter(canonical_json(item.value) for item in mine)
    top = max(counts.values())
    return max((item for item in mine if counts[canonical_json(item.value)] == top), key=order)


@settings(max_examples=300, deadline=None)
@given(value=json_values, data=st.data())
def test_canonical_json_ignores_key_order(value: Any, data: st.DataObject) -> None:
    assert canonical_json(reorder(value, data)) == canonical_json(value)


def reorder(value: Any, data: st.DataObject) -> Any:
    if isinstance(value, dict):
        keys = data.draw(st.permutations(list(value)))
        return {key: reorder(value[key], data) for key in keys}
    if isinstance(value, list):
        return [reorder(item, data) for item in value]
    return value


def exact(result: dict[str, TraitValue]) -> list[tuple[Any, ...]]:
    """The result in order, values by type and repr, since Python says ``True == 1 == 1.0``."""
    return [
        (
            name,
            type(item.value),
            repr(item.value),
            item.rule,
            item.observation,
            item.observations,
            item.distinct_values,
        )
        for name, item in result.items()
    ]


# --- configuration ----------------------------------------------------------------------------
def test_the_default_configuration() -> None:
    cfg = SurvivorshipConfig.build({})
    assert cfg == SurvivorshipConfig()
    assert cfg.default_rule is Rule.MOST_RECENT
    assert cfg.rule_for("anything") is Rule.MOST_RECENT
    assert cfg.source_priority == ()


def test_a_full_configuration_builds() -> None:
    cfg = config(
        DEFAULT_RULE=" First_Seen ",
        RULES={"plan": "source_priority"},
        SOURCE_PRIORITY=["billing", "crm-eu"],
    )
    assert cfg.default_rule is Rule.FIRST_SEEN
    assert cfg.rule_for("plan") is Rule.SOURCE_PRIORITY
    assert [cfg.source_rank(name) for name in ("billing", "crm-eu", "web", "app")] == [0, 1, 2, 2]
    with pytest.raises(TypeError):
        cfg.rules["city"] = Rule.MOST_FREQUENT  # type: ignore[index]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"DEFAULT_RULES": "x"}, r"CDP_TRAITS has unknown keys: DEFAULT_RULES"),
        (
            {"DEFAULT_RULE": "latest"},
            r"CDP_TRAITS\['DEFAULT_RULE'\] \(CDP_TRAIT_DEFAULT_RULE\) = 'latest' is not a rule; "
            r"use one of most_recent, first_seen, most_frequent, source_priority",
        ),
        ({"DEFAULT_RULE": 3}, r"\(CDP_TRAIT_DEFAULT_RULE\) = 3 is not a rule"),
        ({"RULES": ["plan"]}, r"\(CDP_TRAIT_RULES_JSON\) must be a JSON object"),
        ({"RULES": {"plan": "newest"}}, r"for trait 'plan' = 'newest' is not a rule"),
        ({"RULES": {" plan": "first_seen"}}, r"RULES'\] .* has an empty trait name"),
        ({"RULES": {"": "first_seen"}}, r"has an empty trait name"),
        ({"SOURCE_PRIORITY": "billing,crm"}, r"\(CDP_TRAIT_SOURCE_PRIORITY\) must be a list"),
        ({"SOURCE_PRIORITY": ["billing", "my crm"]}, r"'my crm' is not a source name"),
        ({"SOURCE_PRIORITY": ["crm", "web", "crm"]}, r"names a source twice: crm"),
        ({"DEFAULT_RULE": "source_priority"}, r"uses the source_priority rule but .* is empty"),
        ({"RULES": {"plan": "source_priority"}}, r"uses the source_priority rule"),
    ],
)
def test_bad_settings_are_refused_clearly(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(SurvivorshipConfigError, match=message):
        SurvivorshipConfig.build(raw)
    with pytest.raises(ImproperlyConfigured, match=message):
        load_survivorship_config(raw)


def test_overridden_settings_take_effect_and_are_restored() -> None:
    observations = [obs("first", at=0), obs("last", at=1)]
    assert survivorship_config() == SurvivorshipConfig()
    assert unify(observations)["plan"].value == "last"
    with override_settings(CDP_TRAITS={"DEFAULT_RULE": "first_seen"}):
        assert unify(observations)["plan"].value == "first"
    assert unify(observations)["plan"].value == "last"


def _load_settings(**env: str) -> subprocess.CompletedProcess[str]:
    return run_with_settings(
        "from identity.survivorship import survivorship_config as c; "
        "print(c().default_rule, *(f'{k}={v}' for k, v in sorted(c().rules.items())), "
        "','.join(c().source_priority))",
        **env,
    )


def test_environment_variables_configure_survivorship() -> None:
    result = _load_settings(
        CDP_TRAIT_DEFAULT_RULE="first_seen",
        CDP_TRAIT_RULES_JSON='{"plan": "source_priority"}',
        CDP_TRAIT_SOURCE_PRIORITY="billing, crm",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["first_seen", "plan=source_priority", "billing,crm"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CDP_TRAIT_DEFAULT_RULE": "latest"}, "'latest' is not a rule"),
        ({"CDP_TRAIT_RULES_JSON": "{plan: x}"}, "CDP_TRAIT_RULES_JSON must be valid JSON"),
        ({"CDP_TRAIT_RULES_JSON": '{"plan": "source_priority"}'}, "uses the source_priority"),
    ],
)
def test_the_process_does_not_start_with_bad_survivorship_settings(
    env: dict[str, str], message: str
) -> None:
    result = _load_settings(**env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr


def test_an_aggregated_observation_counts_as_its_statements() -> None:
    """Identify calls repeat traits: one row stands for ``count`` statements of one value."""
    repeated = Observation(
        name="city",
        value="Leeds",
        observed_at=T0 + timedelta(minutes=2),
        first_observed_at=T0,
        source="web",
        origin="event",
        origin_id=30,
        first_origin_id=10,
        observation_id=1,
        count=3,
    )
    others = [obs("York", at=5, name="city"), obs("Hull", at=6, name="city")]
    frequent = unify(
        [repeated, *others], config=SurvivorshipConfig(rules={"city": Rule.MOST_FREQUENT})
    )
    assert frequent["city"].value == "Leeds" and frequent["city"].observations == 5
    assert frequent["city"].origin_id == 30  # the latest statement of the winning value
    first = unify([repeated, *others], config=SurvivorshipConfig(rules={"city": Rule.FIRST_SEEN}))
    assert first["city"].value == "Leeds"
    assert (first["city"].origin_id, first["city"].observed_at) == (10, T0)
    recent = unify([repeated, *others])
    assert recent["city"].value == "Hull"


def test_an_aggregated_observation_must_be_consistent() -> None:
    with pytest.raises(ValueError, match="count"):
        Observation(
            name="a",
            value=1,
            observed_at=T0,
            source="web",
            origin="event",
            origin_id=1,
            observation_id=1,
            count=0,
        )
    with pytest.raises(ValueError, match="after"):
        Observation(
            name="a",
            value=1,
            observed_at=T0,
            first_observed_at=T0 + timedelta(minutes=1),
            source="web",
            origin="event",
            origin_id=1,
            observation_id=1,
        )
