"""The matcher's pure parts on small generated data: blocking recall, scoring order, routing and
weak bridges; and the supervised model trained from decisions."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pandas as pd
import pytest

from identity.matching import blocking, clustering, comparing, features, scoring

FIRST = ["oliver", "amelia", "jack", "isla", "harry", "ava", "noah", "emily", "leo", "grace"]
LAST = ["smith", "jones", "taylor", "brown", "wilson", "evans", "walker", "wright", "green", "hall"]


def _typo(rng: random.Random, text: str) -> str:
    i = rng.randrange(len(text) - 1)
    return text[:i] + text[i + 1] + text[i] + text[i + 2 :]


def generated(people: int = 300, seed: int = 7) -> tuple[pd.DataFrame, set[tuple[int, int]]]:
    """People and one noisy duplicate of each third; returns the rows and the true pairs."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    true = set()
    for i in range(people):
        person = {
            "first_name": rng.choice(FIRST),
            "last_name": rng.choice(LAST) + rng.choice(["", "son", "ley", "ford"]),
            "street": f"{rng.randrange(1, 200)} {rng.choice(['high', 'mill', 'park'])} street",
            "city": rng.choice(["leeds", "york", "bath"]),
            "postcode": f"LS{rng.randrange(1, 30)} {rng.randrange(10)}AB",
            "birth_date": f"{rng.randrange(1940, 2000)}-{rng.randrange(1, 13):02d}-"
            f"{rng.randrange(1, 29):02d}",
            "email": None,
            "phone": f"0113{rng.randrange(10**6):06d}",
        }
        rows.append(person)
        if i % 3 == 0:
            dup = dict(person)
            field = rng.choice(["first_name", "last_name", "street"])
            dup[field] = _typo(rng, str(dup[field]))
            dup["phone"] = None
            rows.append(dup)
            true.add((len(rows) - 2, len(rows) - 1))
    return pd.DataFrame(rows, dtype=object), true


def test_blocking_finds_nearly_every_duplicate_without_comparing_everything() -> None:
    raw, true = generated()
    keys, _ = blocking.capped(blocking.block_keys(features.prepare(raw)), max_block=500)
    pairs = set(blocking.candidate_pairs(keys))
    assert len(true & pairs) / len(true) >= 0.95
    assert len(pairs) < len(raw) * (len(raw) - 1) / 2 / 10


def test_one_blocking_key_alone_misses_pairs_the_union_finds() -> None:
    raw, true = generated()
    keys = blocking.block_keys(features.prepare(raw))
    alone = keys.copy()
    for name in blocking.BLOCKING_KEYS:
        if name != "postcode_surname":
            alone[name] = None
    union = set(blocking.candidate_pairs(keys, sorted_neighbourhood=False))
    single = set(blocking.candidate_pairs(alone, sorted_neighbourhood=False))
    assert len(true & union) > len(true & single)


def test_oversized_blocks_are_dropped() -> None:
    raw = pd.DataFrame([{**dict.fromkeys(features.FIELDS), "postcode": "X1", "last_name": "a"}] * 6)
    keys, dropped = blocking.capped(blocking.block_keys(features.prepare(raw)), max_block=5)
    assert dropped == 1 and keys["postcode_surname"].isna().all()


def test_scores_order_exact_above_typo_above_stranger() -> None:
    base = {
        "first_name": "Jon",
        "last_name": "Smith",
        "street": "12 High Street",
        "city": "Leeds",
        "postcode": "LS1 4AB",
        "birth_date": "1980-04-07",
        "email": "jon@example.com",
        "phone": "01131234567",
    }
    rows = [
        base,
        dict(base),  # an exact copy
        {**base, "last_name": "Smiht", "email": None, "birth_date": "1980-07-04"},  # typos
        {
            **base,
            "first_name": "Maria",
            "last_name": "Garcia",
            "street": "4 Elm Road",
            "email": None,
            "phone": None,
            "birth_date": "1991-11-30",
        },  # same town and postcode
    ]
    prepared = features.prepare(pd.DataFrame(rows, dtype=object))
    pairs = pd.MultiIndex.from_tuples([(0, 1), (0, 2), (0, 3)])
    scores = scoring.default_model().score(comparing.compare(pairs, prepared)).scores
    assert scores[0] > scores[1] > scores[2]
    assert scores[1] >= 0.9 and scores[2] < 0.3


def test_ecm_learns_weights_that_rank_true_pairs_first() -> None:
    raw, true = generated(people=600)
    prepared = features.prepare(raw)
    keys, _ = blocking.capped(blocking.block_keys(prepared), max_block=500)
    pairs = blocking.candidate_pairs(keys)
    compared = comparing.compare(pairs, prepared)
    model = scoring.ecm_fit(compared)
    assert model.weights["birth_date"][0] > 0 > model.weights["birth_date"][1]
    scores = pd.Series(model.score(compared).scores, index=pairs)
    is_true = np.array([pair in true for pair in pairs])
    assert scores[is_true].median() > 0.9 > scores[~is_true].median()
    # Fitted on a sample of the pairs (what large passes do), the model ranks the same way.
    sampled = scoring.ecm_fit(compared, max_pairs=len(compared) // 3)
    sampled_scores = pd.Series(sampled.score(compared).scores, index=pairs)
    assert sampled_scores[is_true].median() > 0.9 > sampled_scores[~is_true].median()
    assert sampled.weights.keys() == model.weights.keys()


def test_thresholds_route_and_weak_bridges_go_to_review() -> None:
    thresholds = clustering.Thresholds(upper=0.9, lower=0.3, bridge_score=0.99)
    pairs = [(1, 2), (3, 4), (5, 6), (7, 8), (8, 9), (9, 10), (10, 7), (9, 11), (11, 12)]
    scores = [0.95, 0.5, 0.1, 0.999, 0.999, 0.999, 0.999, 0.92, 0.999]
    routed = clustering.route_pairs(pairs, scores, thresholds)
    assert [r.route for r in routed[:3]] == ["merge", "review", "drop"]
    # 9-11 alone holds {7, 8, 9, 10} to {11, 12} with a score under 0.99: a weak bridge
    assert routed[7] == clustering.Routed("review", weak_bridge=True)
    assert all(r.route == "merge" for r in routed[3:7] + routed[8:])
    strong = clustering.route_pairs(pairs, [*scores[:7], 0.995, 0.999], thresholds)
    assert strong[7].route == "merge"


def test_model_parameters_round_trip_as_json() -> None:
    model = scoring.default_model()
    again = scoring.model_from_json(model.as_json())
    assert again.weights == model.weights and again.prior == model.prior


@pytest.mark.django_db
def test_a_logistic_model_is_trained_from_decisions_and_becomes_current() -> None:
    from identity.matching.decisions import match_model_train
    from identity.matching.services import current_model

    raw, true = generated(people=240)
    prepared = features.prepare(raw)
    keys, _ = blocking.capped(blocking.block_keys(prepared), max_block=500)
    pairs = blocking.candidate_pairs(keys)
    compared = comparing.compare(pairs, prepared)
    labels = np.array([pair in true for pair in pairs], dtype=int)
    model = scoring.logistic_fit(compared, labels)
    evaluation = scoring.logistic_evaluate(compared, labels, threshold=0.9)
    assert evaluation["f1"] > 0.8 and evaluation["roc_auc"] > 0.95
    assert model.weights["birth_date"][0] > 0
    with pytest.raises(Exception, match="Not enough decisions"):
        match_model_train()
    assert current_model()[1] is None


def test_comparing_in_chunks_gives_the_same_features(monkeypatch: pytest.MonkeyPatch) -> None:
    raw, _ = generated(people=200)
    prepared = features.prepare(raw)
    keys, _ = blocking.capped(blocking.block_keys(prepared), max_block=500)
    pairs = blocking.candidate_pairs(keys)
    whole = comparing.compare(pairs, prepared)
    monkeypatch.setattr(comparing, "COMPARE_CHUNK", max(1, len(pairs) // 7))
    chunked = comparing.compare(pairs, prepared)
    pd.testing.assert_frame_equal(whole, chunked)
