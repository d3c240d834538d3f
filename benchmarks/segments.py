"""Segments: full recompute of the VIP rule and a behavioural segment beside hand-written SQL,
incremental membership lag under ingestion, members API latency.

What it does (``.venv/bin/python -m benchmarks segments``), in a child process on a snapshot of
the working tree (as ``benchmarks.identity``), on a fresh database ``cdp_bench_segments``
(dropped first; ``BENCH_SEGMENTS_DB``), migrated:

1. Loads ``BENCH_SEGMENTS_PROFILES`` (1,000,000) profiles with 1-3 identifiers each and
   ``BENCH_SEGMENTS_EVENTS`` (10,000,000) events over the last 90 days with COPY straight into
   the tables (``benchmarks/_segments_data.py`` says exactly what, and which data keys are real:
   the random wrapped keys are never unwrapped here), consent states, and PII (email, name)
   through the real ingest + resolver path for the first ``BENCH_SEGMENTS_PII_PROFILES``
   (3,000) people; ``VACUUM ANALYZE``. Then ``segments.metrics.metrics_rebuild`` and
   ``metrics_rfm_recompute`` (timed on their own), ``ANALYZE`` again.
2. Creates the segments with ``segment_create``: ``vip`` (total spend > 500 and seen in the last
   7 days; purpose marketing_email), ``behavioural`` (more than 3 Product Viewed and at least 2
   Product Added in 30 days and no Order Completed in 30 days; purpose analytics), ``pro``
   (plan = pro; analytics: the members pages with PII). For vip and behavioural: the compiled
   ``members_query`` executed alone, and the hand-written SQL baseline (one statement over the
   same tables, checked to return the same people), alternated, ``BENCH_SEGMENTS_REPEAT`` (2)
   times each (the table shows the median); ``EXPLAIN (ANALYZE, BUFFERS)`` of each compiled
   query (summary in the context and the log); then ``segment_recompute`` twice (all enter; no
   change).
3. Members API (``benchmarks/_segments_live.py``): gunicorn; ``GET
   /v1/segments/{id}/members?limit=100`` then ``BENCH_SEGMENTS_PAGES`` (5) pages deep by
   cursor, ``BENCH_SEGMENTS_API_ROUNDS`` (40) rounds per segment and token (segments:read; with
   pii:read), one connection, back to back.
4. Incremental lag: a Celery worker (concurrency 2: the resolver task and the segments task
   at once) fed by ingestion's enqueue-on-commit and the resolver's debounced segments enqueue;
   gunicorn serves ``/v1/batch`` at ``BENCH_SEGMENTS_LAG_LOW_RATE`` (300) and then
   ``BENCH_SEGMENTS_LAG_RATE`` (5,000) events/s for ``BENCH_SEGMENTS_LAG_DURATION`` (30) s
   (open loop, 100-event batches of track events of known people); sampled requests carry a
   probe: a new person's 4 Product Viewed and 2 Product Added, which put them in
   ``behavioural``. Polled every 100 ms: when the probe's events are resolved, and when the
   person's open membership appears. Lag = membership seen - request returned; the segments
   step alone = membership seen - resolved seen. Probes not in the segment
   ``BENCH_SEGMENTS_LAG_DRAIN`` (60) s after the load count as infinitely late.

Quick run: ``BENCH_SEGMENTS_PROFILES=100000 BENCH_SEGMENTS_EVENTS=1000000``.
``BENCH_SEGMENTS_REUSE=1`` measures again on the database an earlier run loaded (migrated first;
the three segments' stays deleted so the first recompute is "all enter" again; a new source for
the live load), ``BENCH_SEGMENTS_PHASES`` (``full,api,lag``) picks the phases,
``BENCH_SEGMENTS_OWN_QUEUE=1`` runs the segments tasks on their own queue and worker
(``CDP_SEGMENTS_QUEUE=segments``) beside a resolver worker, one process each. Other knobs:
``BENCH_SEGMENTS_DAYS`` (90), ``BENCH_SEGMENTS_WORK_MEM`` (unset: the server's),
``BENCH_CLIENT_PROCS`` (2), ``BENCH_REDIS_URL`` with ``BENCH_SEGMENTS_REDIS_DB`` (11: broker;
12: cache; both flushed).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from benchmarks import Result, env_int

TITLE = "Segments: full recompute vs hand-written SQL, incremental lag, members API"
TARGET_FULL_S = 30.0
TARGET_LAG_P95_S = 5.0
TARGET_API_P95_MS = 50.0

VIP = {
    "all": [
        {"computed": "total_spend", "op": "gt", "value": 500},
        {"computed": "last_seen_at", "op": "gte", "value": "-7d"},
    ]
}
BEHAVIOURAL = {
    "all": [
        {"event": "Product Viewed", "op": "gt", "value": 3, "within": "30d"},
        {"event": "Product Added", "op": "gte", "value": 2, "within": "30d"},
        {"not": {"event": "Order Completed", "within": "30d"}},
    ]
}
PRO = {"trait": "plan", "op": "eq", "value": "pro"}

BASELINE_VIP = """
SELECT m.profile_id FROM segments_profilemetrics m
JOIN identity_profile p ON p.id = m.profile_id
WHERE p.merged_into_id IS NULL AND m.total_spend > 500 AND m.last_seen_at >= %(week)s
"""
BASELINE_BEHAVIOURAL = """
SELECT i.profile_id FROM ingestion_event e
JOIN identity_identifier i ON i.id = e.identifier_id
JOIN identity_profile p ON p.id = i.profile_id AND p.merged_into_id IS NULL
WHERE e.timestamp >= %(month)s AND e.timestamp <= %(now)s
  AND e.event_name IN ('Product Viewed', 'Product Added', 'Order Completed')
GROUP BY i.profile_id
HAVING count(*) FILTER (WHERE e.event_name = 'Product Viewed') > 3
   AND count(*) FILTER (WHERE e.event_name = 'Product Added') >= 2
   AND count(*) FILTER (WHERE e.event_name = 'Order Completed') = 0
"""


@dataclass(frozen=True)
class Settings:
    profiles: int = field(default_factory=lambda: env_int("BENCH_SEGMENTS_PROFILES", 1_000_000))
    events: int = field(default_factory=lambda: env_int("BENCH_SEGMENTS_EVENTS", 10_000_000))
    days: int = field(default_factory=lambda: env_int("BENCH_SEGMENTS_DAYS", 90))
    pii_profiles: int = field(default_factory=lambda: env_int("BENCH_SEGMENTS_PII_PROFILES", 3_000))
    repeat: int = field(default_factory=lambda: env_int("BENCH_SEGMENTS_REPEAT", 2))
    pages: int = field(default_factory=lambda: env_int("BENCH_SEGMENTS_PAGES", 5))
    api_rounds: int = field(default_factory=lambda: env_int("BENCH_SEGMENTS_API_ROUNDS", 40))
    lag_low_rate: int = field(default_factory=lambda: env_int("BENCH_SEGMENTS_LAG_LOW_RATE", 300))
    lag_rate: int = field(default_factory=lambda: env_int("BENCH_SEGMENTS_LAG_RATE", 5_000))
    lag_duration: int = field(default_factory=lambda: env_int("BENCH_SEGMENTS_LAG_DURATION", 30))
    lag_drain: int = field(default_factory=lambda: env_int("BENCH_SEGMENTS_LAG_DRAIN", 60))
    own_queue: bool = field(default_factory=lambda: bool(env_int("BENCH_SEGMENTS_OWN_QUEUE", 0)))
    client_procs: int = field(default_factory=lambda: env_int("BENCH_CLIENT_PROCS", 2))
    work_mem: str = field(default_factory=lambda: os.environ.get("BENCH_SEGMENTS_WORK_MEM", ""))
    redis_url: str = field(
        default_factory=lambda: os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")
    )
    redis_db: int = field(default_factory=lambda: env_int("BENCH_SEGMENTS_REDIS_DB", 11))
    database: str = field(
        default_factory=lambda: os.environ.get("BENCH_SEGMENTS_DB", "cdp_bench_segments")
    )


_context: dict[str, str] = {}


def context() -> dict[str, str]:
    """Run details for BENCHMARKS.md (filled in by ``run``)."""
    return dict(_context)


def _log(message: str) -> None:
    print(f"[segments {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def bench_env(cfg: Settings, url: str) -> dict[str, str]:
    from benchmarks.ingest import _django_env

    return (
        _django_env(url)
        | {
            "DJANGO_SETTINGS_MODULE": "cdp.settings",
            "CDP_API_RATE_LIMIT": "1000000/s",
            "CDP_INGEST_RATE_LIMIT": "0",
            "CELERY_BROKER_URL": f"{cfg.redis_url}/{cfg.redis_db}",
            "CACHE_URL": f"{cfg.redis_url}/{cfg.redis_db + 1}",
            "PYTHONUNBUFFERED": "1",
        }
        | ({"CDP_SEGMENTS_QUEUE": "segments"} if cfg.own_queue else {})
    )


# --- full recompute ---------------------------------------------------------------------------
def _execute(url: str, sql: str, params: Any, work_mem: str) -> tuple[float, set[int]]:
    with psycopg.connect(url, autocommit=True) as conn:
        if work_mem:
            conn.execute(f"SET work_mem = '{work_mem}'")
        started = time.perf_counter()
        rows = conn.execute(sql, params).fetchall()
        return time.perf_counter() - started, {row[0] for row in rows}


def _explain(url: str, sql: str, params: Any, work_mem: str) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        if work_mem:
            conn.execute(f"SET work_mem = '{work_mem}'")
        rows = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params).fetchall()
    return "\n".join(row[0] for row in rows)


def plan_summary(plan: str) -> str:
    """The plan's node lines (without per-worker detail) and its totals, for the context."""
    keep = []
    for line in plan.splitlines():
        stripped = line.strip()
        if stripped.startswith("->") or line == plan.splitlines()[0]:
            keep.append(stripped.split("  (actual")[0][:90] + _actual(stripped))
        elif stripped.startswith(("Execution Time", "Planning Time", "Buffers")) and (
            line is plan.splitlines()[1] or stripped.startswith(("Execution", "Planning"))
        ):
            keep.append(stripped)
    return " / ".join(keep[:14] + keep[-2:]) if len(keep) > 16 else " / ".join(keep)


def _actual(line: str) -> str:
    if "(actual time=" not in line:
        return ""
    part = line.split("(actual time=")[1].split(")")[0]
    return f" [{part}]"


def full_recompute(
    cfg: Settings, url: str, segments: dict[str, int], now: datetime
) -> list[Result]:
    from segments.dsl import definition_parse, members_query
    from segments.services.recompute import segment_recompute

    results: list[Result] = []
    baselines = {"vip": (BASELINE_VIP, VIP), "behavioural": (BASELINE_BEHAVIOURAL, BEHAVIOURAL)}
    params = {"now": now, "week": now - timedelta(days=7), "month": now - timedelta(days=30)}
    for name, (baseline, doc) in baselines.items():
        sql, args = members_query(definition_parse(doc), now=now)
        compiled_s, baseline_s = [], []
        for _ in range(cfg.repeat):
            seconds, compiled_ids = _execute(url, sql, args, cfg.work_mem)
            compiled_s.append(seconds)
            _log(f"{name}: compiled query {seconds:.2f} s, {len(compiled_ids):,} people")
            seconds, baseline_ids = _execute(url, baseline, params, cfg.work_mem)
            baseline_s.append(seconds)
            _log(f"{name}: baseline SQL {seconds:.2f} s, {len(baseline_ids):,} people")
        same = compiled_ids == baseline_ids
        plan = _explain(url, sql, args, cfg.work_mem)
        _log(f"{name}: EXPLAIN (ANALYZE, BUFFERS) of the compiled query:\n{plan}")
        _context[f"plan of {name} (compiled)"] = plan_summary(plan)
        first = segment_recompute(segment_id=segments[name], now=now)
        second = segment_recompute(segment_id=segments[name], now=now)
        _log(f"{name}: segment_recompute {first.seconds:.2f} s, then {second.seconds:.2f} s")
        compiled, base = statistics.median(compiled_s), statistics.median(baseline_s)
        people = f"{len(compiled_ids):,} people"
        results += [
            Result(
                f"{name}: members_query alone",
                compiled,
                "s",
                f"< {TARGET_FULL_S:.0f}",
                compiled < TARGET_FULL_S,
                note=f"median of {cfg.repeat}; {people}",
            ),
            Result(
                f"{name}: hand-written SQL baseline",
                base,
                "s",
                note=f"median of {cfg.repeat}; {'same people' if same else '**different people**'}",
            ),
            Result(f"{name}: compiled / baseline", compiled / base, "x"),
            Result(
                f"{name}: segment_recompute, first (all enter)",
                first.seconds,
                "s",
                f"< {TARGET_FULL_S:.0f}",
                first.seconds < TARGET_FULL_S,
                note=f"{first.entered:,} entered",
            ),
            Result(
                f"{name}: segment_recompute, second (no change)",
                second.seconds,
                "s",
                f"< {TARGET_FULL_S:.0f}",
                second.seconds < TARGET_FULL_S,
                note=f"{second.entered:,} entered, {second.exited:,} exited",
            ),
        ]
    return results


# --- the run ----------------------------------------------------------------------------------
def _load(cfg: Settings, url: str, now: datetime) -> tuple[list[Result], Any]:
    from django.db import connection

    from benchmarks import _segments_data as data
    from segments.metrics import metrics_rebuild, metrics_rfm_recompute

    loaded = data.load(
        url,
        profiles=cfg.profiles,
        events=cfg.events,
        days=cfg.days,
        real_key_profiles=min(cfg.pii_profiles, cfg.profiles),
        now=now,
        timer=lambda step, s: _log(f"load: {step}: {s:.1f} s"),
    )
    load_s = sum(loaded.seconds.values())
    _context["data"] = (
        f"{loaded.profiles:,} profiles, {loaded.identifiers:,} identifiers, {loaded.events:,} "
        f"events over {cfg.days} days, {loaded.consent_states:,} consent states; "
        + "; ".join(f"{k} {v:.0f} s" for k, v in loaded.seconds.items())
    )
    results = [Result("load (COPY + partitions + indexes + ANALYZE)", load_s, "s", note="total")]
    connection.close()
    started = time.perf_counter()
    rebuilt = metrics_rebuild(now=now)
    metrics_s = time.perf_counter() - started
    started = time.perf_counter()
    metrics_rfm_recompute()
    rfm_s = time.perf_counter() - started
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE segments_profilemetrics")
    _log(f"metrics_rebuild {metrics_s:.1f} s ({rebuilt.upserted:,} rows), RFM {rfm_s:.1f} s")
    results += [
        Result(
            "metrics_rebuild (every profile)", metrics_s, "s", note=f"{rebuilt.upserted:,} rows"
        ),
        Result("metrics_rfm_recompute", rfm_s, "s"),
    ]
    return results, loaded


def _reused(url: str) -> Any:
    """What the live phases need from a database loaded by an earlier run (BENCH_SEGMENTS_REUSE):
    a new source (its write key is only known when created) and the people's user ids."""
    from benchmarks._segments_data import Loaded
    from cdp.ingestion.services import source_create

    created = source_create(name=f"web-{int(time.time())}")
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT profile_id FROM identity_identifier WHERE kind = 'user_id'"
            " AND profile_id IS NOT NULL ORDER BY id LIMIT 200000"
        ).fetchall()
    return Loaded(
        profiles=0,
        identifiers=0,
        events=0,
        consent_states=0,
        seconds={},
        source_id=created.source.pk,
        write_key=created.write_key,
        now=datetime.now(UTC),
        user_ids=[f"user-{p:08d}" for (p,) in rows],
    )


def _segments(reuse: bool) -> dict[str, int]:
    from segments.models import Membership, Segment
    from segments.services.definitions import segment_create

    wanted = (
        ("vip", VIP, "marketing_email"),
        ("behavioural", BEHAVIOURAL, "analytics"),
        ("pro", PRO, "analytics"),
    )
    if reuse:
        found = dict(Segment.objects.filter(deleted_at__isnull=True).values_list("name", "pk"))
        if all(name in found for name, _, _ in wanted):
            # The first recompute measured is "all enter" again.
            Membership.objects.filter(segment_id__in=found.values()).delete()
            return {name: found[name] for name, _, _ in wanted}
    return {
        name: segment_create(
            name=name, definition=doc, purpose=purpose, actor="bench", min_size=1
        ).pk
        for name, doc, purpose in wanted
    }


def _measure(cfg: Settings, url: str, *, reuse: bool) -> list[Result]:
    import django

    django.setup()
    from django.db import connection

    from benchmarks import _segments_live as live
    from segments.services.recompute import segment_recompute

    phases = set(os.environ.get("BENCH_SEGMENTS_PHASES", "full,api,lag").split(","))
    now = datetime.now(UTC)
    results: list[Result] = []
    if reuse:
        _context["data"] = f"reused the database {cfg.database} an earlier run loaded"
        loaded = _reused(url)
    else:
        results, loaded = _load(cfg, url, now)
    segments = _segments(reuse)
    if "full" in phases:
        results += full_recompute(cfg, url, segments, now)
    segment_recompute(segment_id=segments["pro"])
    if reuse and "full" not in phases:
        for name in ("vip", "behavioural"):
            segment_recompute(segment_id=segments[name])
    connection.close()
    if "api" in phases:
        results += live.members_api(cfg, url, segments, _context)
    if "lag" in phases:
        results += live.incremental_lag(cfg, url, loaded, segments["behavioural"], _context)
    return results


def run() -> list[Result]:
    """Measure in a child process (Django set up on this benchmark's database only), on a
    snapshot of the working tree."""
    from benchmarks.identity import snapshot_tree

    with tempfile.TemporaryDirectory(prefix="cdp-bench-segments-") as tmp:
        tree = Path(tmp) / "tree"
        snapshot_tree(tree)
        out = Path(tmp) / "segments.json"
        python = str(tree / ".venv" / "bin" / "python")
        done = subprocess.run(
            [python, "-m", "benchmarks.segments", "--child", str(out)], cwd=tree, check=False
        )
        if done.returncode or not out.exists():
            raise RuntimeError(f"benchmarks.segments child failed ({done.returncode})")
        payload = json.loads(out.read_text())
    _context.clear()
    _context.update(payload["context"])
    return [Result(**row) for row in payload["results"]]


def _child(out: Path) -> None:
    from benchmarks.ingest import _manage, recreate_database, server_url

    cfg = Settings()
    reuse = bool(os.environ.get("BENCH_SEGMENTS_REUSE", "").strip())
    if reuse:
        url = f"{server_url()}/{cfg.database}"
        _manage(url, "migrate", "--no-input", "-v", "0")  # an index added since, say
    else:
        url = recreate_database(server_url(), cfg.database)
    os.environ.update(bench_env(cfg, url))
    results = _measure(cfg, url, reuse=reuse)
    out.write_text(
        json.dumps({"results": [vars(r) for r in results], "context": _context}, default=str)
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _child(Path(sys.argv[2]))
    else:
        from benchmarks import table

        print(table(run()))
        print("\n".join(f"- {key}: {value}" for key, value in context().items()))
