"""Candidate pairs by blocking: several blocking keys, unioned, plus a sorted neighbourhood.

Comparing every pair is quadratic; blocking compares only profiles that share a key:

* ``surname_year``: the surname's Soundex code and the birth year (typos in the name),
* ``names``: both names' Soundex codes in sorted order (first and last name swapped),
* ``birth_date``: the whole birth date (a changed surname, a name in the wrong field),
* ``postcode_surname``: the postcode and the surname's first letter,
* ``email_local``: the email's local part (``jon.smith@work`` vs ``jon.smith@home``),
* ``phone_suffix``: the phone's last seven digits (with and without a country code),
* and, in a full pass, a sorted neighbourhood over the surname + first name key, which finds
  pairs whose every key differs by one typo.

A key shared by more than ``max_block`` profiles (a default postcode, ``info@``) says nothing
about a person and would blow up the pair count: it is dropped.

Keys are written to the database only as keyed digests (``key_digests``), never in clear: the
incremental matcher finds a changed profile's block-mates through them.
"""

from __future__ import annotations

from collections.abc import Iterable

import jellyfish
import numpy as np
import pandas as pd
import recordlinkage as rl

from cdp.crypto.blind_index import keyed_digest

BLOCKING_KEYS = (
    "surname_year",
    "names",
    "birth_date",
    "postcode_surname",
    "email_local",
    "phone_suffix",
)
DIGEST_PURPOSE = "match-block"
DIGEST_CHARS = 32
SORTED_NEIGHBOURHOOD_WINDOW = 7


def _soundex(value: str | None) -> str | None:
    return jellyfish.soundex(value) if value else None


def block_keys(prepared: pd.DataFrame) -> pd.DataFrame:
    """One column per blocking key (None where a profile lacks the fields)."""
    keys = pd.DataFrame(index=prepared.index)
    surname = prepared["last_name"].map(_soundex)
    first = prepared["first_name"].map(_soundex)
    year = prepared["birth_year"].astype("string")
    keys["surname_year"] = _joined(surname, year)
    keys["names"] = [
        "|".join(sorted((a, b))) if a and b else None for a, b in zip(first, surname, strict=True)
    ]
    keys["birth_date"] = prepared["birth_date"]
    keys["postcode_surname"] = _joined(prepared["postcode"], prepared["last_name"].str[:1])
    keys["email_local"] = prepared["email_local"].where(prepared["email_local"].str.len() >= 4)
    keys["phone_suffix"] = prepared["phone_suffix"]
    keys["sort_key"] = prepared["last_name"].fillna("") + " " + prepared["first_name"].fillna("")
    keys.loc[keys["sort_key"].str.strip() == "", "sort_key"] = None
    return keys


def _joined(a: pd.Series, b: pd.Series) -> pd.Series:
    joined = a.astype("string") + "|" + b.astype("string")
    return joined.astype(object).where(joined.notna(), None)


def capped(keys: pd.DataFrame, *, max_block: int) -> tuple[pd.DataFrame, int]:
    """``keys`` with every value shared by more than ``max_block`` profiles removed; returns how
    many such blocks were dropped."""
    out = keys.copy()
    dropped = 0
    for name in BLOCKING_KEYS:
        counts = out[name].value_counts()
        large = counts[counts > max_block].index
        dropped += len(large)
        if len(large):
            out.loc[out[name].isin(large), name] = None
    return out, dropped


def candidate_pairs(keys: pd.DataFrame, *, sorted_neighbourhood: bool = True) -> pd.MultiIndex:
    """Every pair of rows sharing a blocking key (or near in sort order), each once, with the
    smaller label first."""
    indexer = rl.Index()
    for name in BLOCKING_KEYS:
        if keys[name].notna().sum() > 1:
            indexer.block(name)
    if sorted_neighbourhood and keys["sort_key"].notna().sum() > 1:
        indexer.sortedneighbourhood("sort_key", window=SORTED_NEIGHBOURHOOD_WINDOW)
    if not indexer.algorithms:
        return _empty()
    pairs = indexer.index(keys)
    return ordered(pairs)


def pairs_with(keys: pd.DataFrame, *, focus: Iterable[object]) -> pd.MultiIndex:
    """The blocked pairs with at least one row in ``focus``: the incremental matcher compares a
    changed profile with its block-mates only (no sorted neighbourhood: it needs every key)."""
    wanted = set(focus)
    pairs = candidate_pairs(keys, sorted_neighbourhood=False)
    if not len(pairs):
        return pairs
    left = pairs.get_level_values(0).isin(wanted)
    right = pairs.get_level_values(1).isin(wanted)
    return pairs[left | right]


def ordered(pairs: pd.MultiIndex) -> pd.MultiIndex:
    """Each pair once, smaller label first, in first-seen order (vectorized: a full pass has
    millions of pairs)."""
    left = np.asarray(pairs.get_level_values(0))
    right = np.asarray(pairs.get_level_values(1))
    low, high = np.minimum(left, right), np.maximum(left, right)
    distinct = low != high
    frame = pd.DataFrame({"a": low[distinct], "b": high[distinct]}).drop_duplicates()
    return pd.MultiIndex.from_arrays([frame["a"].to_numpy(), frame["b"].to_numpy()])


def _empty() -> pd.MultiIndex:
    return pd.MultiIndex.from_arrays([[], []])


def key_digests(keys: pd.DataFrame) -> dict[object, list[str]]:
    """Row label -> the keyed digests of its blocking keys (what the database may hold)."""
    out: dict[object, list[str]] = {}
    for label, row in keys[list(BLOCKING_KEYS)].iterrows():
        out[label] = sorted(
            keyed_digest(DIGEST_PURPOSE, f"{name}:{value}".encode())[:DIGEST_CHARS]
            for name, value in row.items()
            if value is not None and not (isinstance(value, float) and pd.isna(value))
        )
    return out
