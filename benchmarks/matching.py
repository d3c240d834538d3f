"""Probabilistic matching on the Febrl data sets that ship with recordlinkage, and at scale.

* febrl1, febrl2, febrl3: deduplication of one CRM source. The records are imported through
  the normal ingestion path (``records_upsert``, then the resolver), matched by a full pass
  (``matching_full``: blocking -> compare -> ECM -> clustering -> auto-merge), and evaluated
  pairwise on the resulting profiles (two records are predicted to match when they end up in
  the same profile, so the identity graph's clustering is what is measured).
* febrl4: two sources (``crm_a`` and ``crm_b``) of the same people, linked the same way.
* Beside each, a plain recordlinkage baseline in the same run: the library's tutorial setup
  (block on given name + sorted neighbourhood on surname, threshold string comparisons,
  ECMClassifier), evaluated on its predicted pairs.
* Scale: ``BENCH_MATCH_RECORDS`` (100,000) synthetic CRM records, about 20 % of them noisy
  duplicates, imported the same way; ``manage.py match_profiles`` is timed in a child process
  whose peak memory (max RSS) is read back.

The matcher never sees ``soc_sec_id`` (CRM records have no such field); neither does the
baseline. Febrl birth dates that are not valid dates (a few per cent) are imported empty, as
ingestion would reject them. Knobs: ``BENCH_MATCH_DB`` (cdp_bench_match),
``BENCH_MATCH_SERVER`` (postgres://postgres@127.0.0.1:5432), ``BENCH_MATCH_RECORDS``.
"""

from __future__ import annotations

import os
import random
import resource
import subprocess
import sys
import time
from datetime import date
from itertools import combinations
from typing import Any

import pandas as pd
import psycopg
from psycopg import sql

from benchmarks import ROOT, Result, env_int

TITLE = "Probabilistic matching: Febrl data sets and 100,000 CRM records"
F1_TARGET = 0.95
PRECISION_TARGET = 0.98
SCALE_SECONDS = 300.0
SCALE_MEMORY_GIB = 4.0
_context: dict[str, str] = {}


def context() -> dict[str, str]:
    return dict(_context)


def _log(message: str) -> None:
    print(f"[matching {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _server() -> str:
    return os.environ.get("BENCH_MATCH_SERVER", "postgres://postgres@127.0.0.1:5432")


def _fresh_database(name: str) -> str:
    with psycopg.connect(f"{_server()}/postgres", autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return f"{_server()}/{name}"


def _django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdp.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _reset() -> None:
    """Empty the identity graph and the records between data sets (same schema)."""
    from django.db import connection

    tables = [
        "identity_matchcandidate",
        "identity_matchprofile",
        "identity_matchmodel",
        "identity_mergeledgerentry",
        "identity_profilechange",
        "identity_traitobservation",
        "identity_edge",
        "identity_identifier",
        "identity_profile",
        "ingestion_record",
    ]
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")


# --- febrl as CRM records ---------------------------------------------------------------------
def _birth(value: Any) -> str | None:
    if not isinstance(value, str) or len(value) != 8:
        return None
    try:
        return date(int(value[:4]), int(value[4:6]), int(value[6:])).isoformat()
    except ValueError:
        return None


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for rec_id, row in df.iterrows():
        street = " ".join(str(v) for v in (row.street_number, row.address_1) if isinstance(v, str))
        record = {
            "external_id": str(rec_id),
            "first_name": row.given_name if isinstance(row.given_name, str) else None,
            "last_name": row.surname if isinstance(row.surname, str) else None,
            "street": street or None,
            "city": row.suburb if isinstance(row.suburb, str) else None,
            "postcode": row.postcode if isinstance(row.postcode, str) else None,
            "birth_date": _birth(row.date_of_birth),
        }
        out.append({k: v for k, v in record.items() if v is not None})
    return out


def _import(source: str, records: list[dict[str, Any]]) -> float:
    from cdp.ingestion.services import records_upsert, source_create
    from identity.services.resolution import resolve_pending

    started = time.perf_counter()
    source_id = source_create(name=source).source.pk
    for start in range(0, len(records), 1000):
        result = records_upsert(source_id=source_id, records=records[start : start + 1000])
        assert not result.rejected, result.rejected[:3]
    resolve_pending(batch_size=1000)
    return time.perf_counter() - started


def _profile_pairs(sources: list[str]) -> set[tuple[str, str]]:
    """Record pairs (external ids) that share a profile after matching."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT DISTINCT r.external_id, i.profile_id FROM ingestion_record r
            JOIN ingestion_source s ON s.id = r.source_id
            JOIN identity_traitobservation o ON o.record_id = r.id
            JOIN identity_identifier i ON i.id = o.identifier_id
            WHERE s.name = ANY(%s)
            """,
            [sources],
        )
        rows = cursor.fetchall()
    profile_of = dict(rows)
    by_profile: dict[int, list[str]] = {}
    for external_id, profile_id in profile_of.items():
        by_profile.setdefault(profile_id, []).append(external_id)
    return {
        tuple(sorted(pair))  # type: ignore[misc]
        for members in by_profile.values()
        for pair in combinations(members, 2)
    }


def _prf(predicted: set[Any], true: set[Any]) -> tuple[float, float, float]:
    tp = len(predicted & true)
    precision = tp / len(predicted) if predicted else 0.0
    recall = tp / len(true) if true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _true_pairs(links: pd.MultiIndex) -> set[tuple[str, str]]:
    return {tuple(sorted((str(a), str(b)))) for a, b in links}  # type: ignore[misc]


def _blocking_completeness(frames: list[pd.DataFrame], true: set[tuple[str, str]]) -> float:
    """Pairs completeness of the matcher's blocking on the same fields (pure, no database)."""
    from identity.matching import blocking, features

    df = pd.concat(frames)
    raw = pd.DataFrame(_records(df)).set_index("external_id").reindex(columns=list(features.FIELDS))
    keys, _ = blocking.capped(blocking.block_keys(features.prepare(raw)), max_block=500)
    pairs = {tuple(sorted(p)) for p in blocking.candidate_pairs(keys)}
    return len(pairs & true) / len(true)


def _baseline(
    frames: list[pd.DataFrame], true: set[tuple[str, str]]
) -> tuple[float, float, float, float]:
    """recordlinkage's tutorial setup, on the same fields the matcher gets."""
    import recordlinkage as rl

    started = time.perf_counter()
    indexer = rl.Index()
    indexer.block("given_name")
    indexer.sortedneighbourhood("surname")
    compare = rl.Compare()
    compare.string("given_name", "given_name", method="jarowinkler", threshold=0.85)
    compare.string("surname", "surname", method="jarowinkler", threshold=0.85)
    compare.exact("street_number", "street_number")
    compare.string("address_1", "address_1", threshold=0.85)
    compare.string("suburb", "suburb", threshold=0.85)
    compare.exact("postcode", "postcode")
    compare.exact("date_of_birth", "date_of_birth")
    if len(frames) == 1:
        pairs = indexer.index(frames[0])
        features = compare.compute(pairs, frames[0])
    else:
        pairs = indexer.index(frames[0], frames[1])
        features = compare.compute(pairs, frames[0], frames[1])
    matches = rl.ECMClassifier(binarize=None).fit_predict(features.astype(int))
    seconds = time.perf_counter() - started
    predicted = {tuple(sorted((str(a), str(b)))) for a, b in matches}
    return (*_prf(predicted, true), seconds)


def _febrl(
    name: str, frames: list[pd.DataFrame], sources: list[str], links: pd.MultiIndex
) -> list[Result]:
    from identity.matching.services import matching_full

    _reset()
    true = _true_pairs(links)
    imported = sum(
        _import(source, _records(df)) for source, df in zip(sources, frames, strict=True)
    )
    started = time.perf_counter()
    report = matching_full()
    seconds = time.perf_counter() - started
    precision, recall, f1 = _prf(_profile_pairs(sources), true)
    completeness = _blocking_completeness(frames, true)
    b_precision, b_recall, b_f1, b_seconds = _baseline(frames, true)
    _log(f"{name}: {report.routes} model {report.model}; P {precision:.4f} R {recall:.4f}")
    strict = name in {"febrl3", "febrl4"}
    records = sum(len(df) for df in frames)
    return [
        Result(
            f"{name}: pairs completeness of blocking",
            completeness,
            "ratio",
            note=f"{report.pairs:,} candidate pairs, {records:,} records",
        ),
        Result(
            f"{name}: precision (after clustering)",
            precision,
            "ratio",
            target=">= 0.98" if strict else "",
            met=precision >= PRECISION_TARGET if strict else None,
        ),
        Result(f"{name}: recall (after clustering)", recall, "ratio"),
        Result(
            f"{name}: F1 (after clustering)",
            f1,
            "ratio",
            target=">= 0.95" if strict else "",
            met=f1 >= F1_TARGET if strict else None,
            note=f"review queue {report.routes.get('pending', 0):,} pairs",
        ),
        Result(f"{name}: match wall time", seconds, "s", note=f"import + resolve {imported:.1f} s"),
        Result(f"{name}: baseline recordlinkage ECM precision", b_precision, "ratio"),
        Result(f"{name}: baseline recall", b_recall, "ratio"),
        Result(f"{name}: baseline F1", b_f1, "ratio", note=f"{b_seconds:.1f} s"),
    ]


# --- scale ------------------------------------------------------------------------------------
_FIRST = [
    "james",
    "mary",
    "john",
    "patricia",
    "robert",
    "jennifer",
    "michael",
    "linda",
    "william",
    "elizabeth",
    "david",
    "barbara",
    "richard",
    "susan",
    "joseph",
    "jessica",
    "thomas",
    "sarah",
    "charles",
    "karen",
    "oliver",
    "amelia",
    "jack",
    "isla",
    "harry",
    "ava",
    "jacob",
    "mia",
    "noah",
    "emily",
    "leo",
    "grace",
    "oscar",
    "chloe",
    "lucas",
    "ella",
]
_LAST_ROOTS = [
    "smith",
    "jones",
    "taylor",
    "brown",
    "williams",
    "wilson",
    "johnson",
    "davies",
    "robinson",
    "wright",
    "thompson",
    "evans",
    "walker",
    "white",
    "roberts",
    "green",
    "hall",
    "wood",
    "jackson",
    "clarke",
    "patel",
    "khan",
    "lewis",
    "james",
    "phillips",
    "mason",
    "mitchell",
    "rose",
    "davis",
    "rodriguez",
    "cox",
    "alexander",
    "garden",
    "campbell",
    "johnston",
    "moore",
]
_STREETS = [
    "high street",
    "station road",
    "main street",
    "park road",
    "church lane",
    "victoria road",
    "green lane",
    "manor road",
    "church street",
    "park avenue",
    "queens road",
    "new road",
    "grange road",
    "kings road",
    "north street",
    "mill lane",
]
_TOWNS = [
    "london",
    "leeds",
    "bristol",
    "york",
    "bath",
    "derby",
    "leicester",
    "norwich",
    "oxford",
    "cambridge",
    "exeter",
    "truro",
    "durham",
    "carlisle",
    "preston",
    "reading",
]


def _typo(rng: random.Random, text: str) -> str:
    if len(text) < 3:
        return text
    i = rng.randrange(len(text) - 1)
    kind = rng.random()
    if kind < 0.33:
        return text[:i] + text[i + 1] + text[i] + text[i + 2 :]
    if kind < 0.66:
        return text[:i] + text[i + 1 :]
    return text[:i] + rng.choice("aeiourstn") + text[i + 1 :]


def _postcode(rng: random.Random) -> str:
    area = rng.choice("ABCDEFGHKLMNPRS")
    unit = f"{rng.randrange(10)}{rng.choice('ABDEFG')}{rng.choice('HJLNPQ')}"
    return f"{area}{rng.randrange(1, 99)} {unit}"


def _people(count: int, seed: int = 20261201) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    lasts = [a + b for a in _LAST_ROOTS for b in ("", "son", "ley", "ford", "er", "ton", "field")]
    originals = []
    for i in range(int(count * 0.8)):
        born = date(1940 + rng.randrange(65), 1 + rng.randrange(12), 1 + rng.randrange(28))
        originals.append(
            {
                "external_id": f"p{i}",
                "first_name": rng.choice(_FIRST),
                "last_name": rng.choice(lasts),
                "street": f"{1 + rng.randrange(300)} {rng.choice(_STREETS)}",
                "city": rng.choice(_TOWNS),
                "postcode": _postcode(rng),
                "birth_date": born.isoformat(),
                "phone": f"+4479{rng.randrange(10**8):08d}",
            }
        )
    duplicates = []
    for j in range(count - len(originals)):
        dup = dict(rng.choice(originals), external_id=f"d{j}")
        field = rng.choice(["first_name", "last_name", "street", "city"])
        dup[field] = _typo(rng, dup[field])
        if rng.random() < 0.3:
            dup.pop(rng.choice(["phone", "postcode", "street"]), None)
        if rng.random() < 0.2:
            dup["street"] = (
                dup.get("street", "1 high street").replace("street", "st").replace("road", "rd")
            )
        duplicates.append(dup)
    return originals + duplicates


def _scale() -> list[Result]:
    count = env_int("BENCH_MATCH_RECORDS", 100_000)
    _reset()
    imported = _import("scale", _people(count))
    _log(f"scale: {count:,} records imported and resolved in {imported:.0f} s; matching")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    taskset = ["taskset", "-c", "0,1"] if os.path.exists("/usr/bin/taskset") else []
    done = subprocess.run(
        [*taskset, sys.executable, "manage.py", "match_profiles", "--verbosity", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    seconds = time.perf_counter() - started
    peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 / 1024
    _log(done.stdout[-1500:])
    return [
        Result(
            f"{count:,} CRM records: full match pass",
            seconds,
            "s",
            target="< 300 s",
            met=seconds < SCALE_SECONDS,
            note=f"import + resolve {imported:.0f} s (not counted)",
        ),
        Result(
            f"{count:,} CRM records: peak memory of the pass",
            peak_gib,
            "GiB",
            target="< 4 GiB",
            met=peak_gib < SCALE_MEMORY_GIB,
            note="max RSS of the match_profiles process",
        ),
    ]


def run() -> list[Result]:
    from recordlinkage.datasets import load_febrl1, load_febrl2, load_febrl3, load_febrl4

    url = _fresh_database(os.environ.get("BENCH_MATCH_DB", "cdp_bench_match"))
    _django(url)
    results: list[Result] = []
    for name, loader in (("febrl1", load_febrl1), ("febrl2", load_febrl2), ("febrl3", load_febrl3)):
        df, links = loader(return_links=True)
        _log(f"{name}: {len(df):,} records, {len(links):,} true pairs")
        results += _febrl(name, [df], [name], links)
    a, b, links = load_febrl4(return_links=True)
    results += _febrl("febrl4", [a, b], ["febrl4-a", "febrl4-b"], links)
    if env_int("BENCH_MATCH_RECORDS", 100_000) > 0:
        results += _scale()
    _context["setup"] = (
        "one process, the bench database on the local PostgreSQL; defaults of CDP_MATCHING"
    )
    return results
