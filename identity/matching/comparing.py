"""Comparison features of candidate pairs: binary agreement per feature, NaN when a side lacks
the field (a missing field is no evidence either way: it weighs 0).

Strings are compared with recordlinkage's similarity measures (Jaro-Winkler for names and city,
Damerau-Levenshtein for street) and an agreement threshold; exact comparisons for postcode, birth
date, email and phone; and a few fields get a second, weaker "near" feature that holds only when
the exact one does not (birth date with day and month swapped or one part off, the same email
local part at another domain, the same phone suffix, a name that is the other side's email local
part). The similarity behind each agreement is kept, so a steward sees why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jellyfish
import numpy as np
import pandas as pd
import recordlinkage as rl
from recordlinkage.base import BaseCompareFeature


@dataclass(frozen=True)
class Feature:
    name: str
    field: str  # the person field it compares (what the review queue shows side by side)
    how: str


FEATURES: tuple[Feature, ...] = (
    Feature("first_name", "first_name", "Jaro-Winkler >= 0.88, or one a prefix of the other"),
    Feature("last_name", "last_name", "Jaro-Winkler >= 0.88"),
    Feature("street", "street", "Damerau-Levenshtein similarity >= 0.75"),
    Feature("city", "city", "Jaro-Winkler >= 0.88"),
    Feature("postcode", "postcode", "equal"),
    Feature("birth_date", "birth_date", "equal"),
    Feature("birth_date_near", "birth_date", "day and month swapped, or one part differs"),
    Feature("email", "email", "equal"),
    Feature("email_local", "email", "local parts Jaro-Winkler >= 0.92 (not the same address)"),
    Feature("name_email", "email", "one side's name is the other's email local part (JW >= 0.9)"),
    Feature("phone", "phone", "equal digits"),
    Feature("phone_suffix", "phone", "same last 7 digits (not the same number)"),
)
FEATURE_NAMES = tuple(feature.name for feature in FEATURES)
NAME_THRESHOLD = 0.88
COMPARE_CHUNK = 250_000
# Similarities measured per string field: Jaro-Winkler for names, Damerau-Levenshtein (as
# recordlinkage normalizes it: 1 - distance / longer length) for streets.
STREET_THRESHOLD = 0.75


def _jaro_winkler(a: str, b: str) -> float:
    return float(jellyfish.jaro_winkler_similarity(a, b))


def _damerau_levenshtein(a: str, b: str) -> float:
    longest = max(len(a), len(b))
    return 1.0 - jellyfish.damerau_levenshtein_distance(a, b) / longest if longest else 1.0


def similarity(
    left: pd.Series | np.ndarray,
    right: pd.Series | np.ndarray,
    measure: Callable[[str, str], float],
) -> np.ndarray:
    """``measure`` of each pair of strings (NaN when a side is missing), computed once per
    distinct pair of values: names, cities and streets repeat across pairs, so a pass over
    millions of pairs measures a fraction of them (the string measures are the pass's cost)."""
    a, b = np.asarray(left, dtype=object), np.asarray(right, dtype=object)
    codes, values = pd.factorize(np.concatenate([a, b]), use_na_sentinel=True)
    left_codes, right_codes = codes[: len(a)], codes[len(a) :]
    present = (left_codes >= 0) & (right_codes >= 0)
    out = np.full(len(a), np.nan)
    if not present.any():
        return out
    pairs = left_codes[present].astype(np.int64) * len(values) + right_codes[present]
    distinct, inverse = np.unique(pairs, return_inverse=True)
    measured = np.fromiter(
        (
            measure(str(values[code // len(values)]), str(values[code % len(values)]))
            for code in distinct
        ),
        dtype=float,
        count=len(distinct),
    )
    out[present] = measured[inverse]
    return out


STRING_MEASURES: dict[str, Callable[[str, str], float]] = {
    "first_name": _jaro_winkler,
    "last_name": _jaro_winkler,
    "city": _jaro_winkler,
    "street": _damerau_levenshtein,
    "email_local": _jaro_winkler,
}


class _Near(BaseCompareFeature):
    """Birth dates that are not equal but close: day/month swapped or one of y/m/d differs."""

    def _compute_vectorized(self, y1, m1, d1, y2, m2, d2):
        missing = (y1.isna() | y2.isna()).to_numpy()
        y1, m1, d1, y2, m2, d2 = (
            s.fillna(-1).to_numpy(dtype=np.int64) for s in (y1, m1, d1, y2, m2, d2)
        )
        exact = (y1 == y2) & (m1 == m2) & (d1 == d2)
        swapped = (y1 == y2) & (m1 == d2) & (d1 == m2)
        one_off = ((y1 == y2).astype(int) + (m1 == m2) + (d1 == d2)) == 2
        near = (~exact & (swapped | one_off)).astype(float)
        near[missing] = np.nan
        return near


class _Similar(BaseCompareFeature):
    """Jaro-Winkler agreement of two fields (NaN when either is missing), optionally only where
    ``unless`` (a pair of exact fields) differs."""

    def __init__(self, left: str, right: str, *, threshold: float, label: str) -> None:
        super().__init__(left, right, label=label)
        self.threshold = threshold

    def _compute_vectorized(self, s1, s2):
        return _agreement(s1, s2, self.threshold)


class _Prefix(BaseCompareFeature):
    """One first name starts the other (Jon / Jonathan, Chris / Christopher), 3 letters or more."""

    def _compute_vectorized(self, s1, s2):
        out = np.zeros(len(s1))
        for i, (a, b) in enumerate(zip(s1.to_numpy(), s2.to_numpy(), strict=True)):
            if isinstance(a, str) and isinstance(b, str) and min(len(a), len(b)) >= 3:
                out[i] = float(a.startswith(b) or b.startswith(a))
        return out


def _agreement(s1: pd.Series, s2: pd.Series, threshold: float) -> np.ndarray:
    values = similarity(s1, s2, _jaro_winkler)
    out = (values >= threshold).astype(float)
    out[np.isnan(values)] = np.nan
    return out


def _exact(left: pd.Series, right: pd.Series) -> np.ndarray:
    a, b = left.to_numpy(), right.to_numpy()
    missing = pd.isna(a) | pd.isna(b)
    out = (a == b).astype(float)
    out[missing] = np.nan
    return out


def compare(pairs: pd.MultiIndex, prepared: pd.DataFrame) -> pd.DataFrame:
    """One row per pair (same index), one column per feature: 1.0 agree, 0.0 disagree, NaN
    unknown; plus ``<feature>__sim`` similarities for the string features. Pairs are compared
    ``COMPARE_CHUNK`` at a time: both sides' fields are copied per pair, and a full pass over
    millions of pairs would otherwise hold several such copies at once."""
    if not len(pairs):
        return pd.DataFrame(index=pairs, columns=list(FEATURE_NAMES), dtype=float)
    if len(pairs) > COMPARE_CHUNK:
        return pd.concat(
            [
                _compare(pairs[start : start + COMPARE_CHUNK], prepared)
                for start in range(0, len(pairs), COMPARE_CHUNK)
            ]
        )
    return _compare(pairs, prepared)


def _compare(pairs: pd.MultiIndex, prepared: pd.DataFrame) -> pd.DataFrame:
    comparer = rl.Compare()
    comparer.add(
        _Near(
            ["birth_year", "birth_month", "birth_day"],
            ["birth_year", "birth_month", "birth_day"],
            label="birth_date_near",
        )
    )
    comparer.add(_Prefix("first_name", "first_name", label="first_name__prefix"))
    comparer.add(_Similar("name", "email_local", threshold=0.9, label="name_email_lr"))
    comparer.add(_Similar("email_local", "name", threshold=0.9, label="name_email_rl"))
    out = comparer.compute(pairs, prepared)
    left = prepared.loc[pairs.get_level_values(0)]
    right = prepared.loc[pairs.get_level_values(1)]
    for name, measure in STRING_MEASURES.items():
        out[f"{name}__sim"] = similarity(left[name], right[name], measure)
    features = pd.DataFrame(index=pairs)
    for name in ("first_name", "last_name", "city"):
        features[name] = _threshold(out[f"{name}__sim"], NAME_THRESHOLD)
    prefix = out["first_name__prefix"].to_numpy() == 1.0
    features.loc[prefix, "first_name"] = 1.0
    features["street"] = _threshold(out["street__sim"], STREET_THRESHOLD)
    for name in ("postcode", "birth_date", "email", "phone"):
        features[name] = _exact(left[name], right[name])
    features["birth_date_near"] = out["birth_date_near"].to_numpy()
    same_email = features["email"].to_numpy() == 1.0
    email_local = _threshold(out["email_local__sim"], 0.92)
    email_local[same_email] = 0.0
    features["email_local"] = email_local
    features["name_email"] = np.fmax(
        out["name_email_lr"].to_numpy(), out["name_email_rl"].to_numpy()
    )
    suffix = _exact(left["phone_suffix"], right["phone_suffix"])
    suffix[features["phone"].to_numpy() == 1.0] = 0.0
    features["phone_suffix"] = suffix
    for name in ("first_name", "last_name", "city", "street", "email_local"):
        features[f"{name}__sim"] = out[f"{name}__sim"].to_numpy()
    return features[[*FEATURE_NAMES, *(c for c in features.columns if c.endswith("__sim"))]]


def _threshold(similarity: pd.Series, threshold: float) -> np.ndarray:
    values = similarity.to_numpy(dtype=float)
    out = (values >= threshold).astype(float)
    out[np.isnan(values)] = np.nan
    return out
