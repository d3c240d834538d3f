"""The segments benchmark's live phases (``benchmarks/segments.py`` says what each measures):
the members API against gunicorn, and ingest -> membership lag with a Celery worker."""

from __future__ import annotations

import http.client
import multiprocessing as mp
import queue
import random
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import psycopg

from benchmarks import ROOT, Result
from benchmarks.identity import ID_SLOT, LAG_BATCH, PROBE_SLOT, _lag_process
from benchmarks.ingest import (
    _free_port,
    _percentile,
    start_gunicorn,
    stop_gunicorn,
    stop_process_group,
)

CELERY = str(ROOT / ".venv" / "bin" / "celery")
QUIET = ["--without-gossip", "--without-mingle"]
PROBE_EVENTS = [("Product Viewed", 4), ("Product Added", 2)]


def _log(message: str) -> None:
    import sys

    print(f"[segments {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _start_gunicorn(cfg: Any, url: str, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    import os

    from benchmarks.segments import bench_env

    port = _free_port()
    saved = dict(os.environ)
    os.environ.update(bench_env(cfg, url))
    try:
        return start_gunicorn(url, port, log), port
    finally:
        os.environ.clear()
        os.environ.update(saved)


# --- members API ------------------------------------------------------------------------------
def _path(link: str) -> str:
    parts = urlsplit(link)
    return f"{parts.path}?{parts.query}"


def _pages(port: int, token: str, segment_id: int, pages: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {token}"}
    path: str | None = f"/v1/segments/{segment_id}/members?limit=100"
    seconds = []
    for _ in range(pages + 1):
        if path is None:
            break
        started = time.perf_counter()
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read()
        seconds.append(time.perf_counter() - started)
        if response.status != 200:
            raise RuntimeError(f"members API answered {response.status}: {body[:300]!r}")
        following = orjson.loads(body)["next"]
        path = None if not following else _path(following)
    conn.close()
    return seconds


def members_api(
    cfg: Any, url: str, segments: dict[str, int], context: dict[str, str]
) -> list[Result]:
    from cdp.api.services import api_token_create

    plain = api_token_create(name="bench-members", scopes=["segments:read"]).plaintext
    pii = api_token_create(name="bench-members-pii", scopes=["segments:read", "pii:read"]).plaintext
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="cdp-bench-seg-api-") as tmp:
        server, port = _start_gunicorn(cfg, url, Path(tmp) / "gunicorn.log")
        try:
            for name in ("vip", "pro"):
                for label, token in (("segments:read", plain), ("+ pii:read", pii)):
                    for _ in range(8):  # every gunicorn worker warm (first requests load code)
                        _pages(port, token, segments[name], cfg.pages)
                    first, deeper = [], []
                    for _ in range(cfg.api_rounds):
                        seconds = _pages(port, token, segments[name], cfg.pages)
                        first.append(seconds[0])
                        deeper += seconds[1:]
                    first.sort()
                    deeper.sort()
                    every = sorted(first + deeper)
                    p95 = _percentile(every, 0.95) * 1000
                    results.append(
                        Result(
                            f"members API {name}, {label}: p95 per page",
                            p95,
                            "ms",
                            f"< {TARGET_API_P95_MS:.0f}",
                            p95 < TARGET_API_P95_MS,
                            note=(
                                f"{len(every)} pages of 100; first page p95 "
                                f"{_percentile(first, 0.95) * 1000:.1f} ms, pages 2-"
                                f"{cfg.pages + 1} p95 "
                                f"{(_percentile(deeper, 0.95) * 1000) if deeper else 0:.1f} ms;"
                                f" p50 {_percentile(every, 0.5) * 1000:.1f} ms"
                            ),
                        )
                    )
                    _log(f"members API {name} {label}: p95 {p95:.1f} ms")
        finally:
            stop_gunicorn(server)
    context["members API"] = (
        "gunicorn (deploy/gunicorn.conf.py), one client connection, pages requested back to "
        f"back: the first page then {cfg.pages} more by cursor, {cfg.api_rounds} rounds; vip "
        "is gated by marketing_email (granted by 35 %), pro by analytics; pro's first "
        f"{cfg.pii_profiles:,} profiles hold encrypted email and name (pii:read decrypts them)"
    )
    return results


TARGET_API_P95_MS = 50.0
TARGET_LAG_P95_S = 5.0


# --- incremental lag --------------------------------------------------------------------------
def lag_templates(user_ids: list[str], seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    bodies = []
    names = ["Product Viewed", "Product Added", "Search", "Checkout Started"]
    for _ in range(count):
        batch: list[dict[str, Any]] = []
        number = 0
        for name, times in PROBE_EVENTS:
            for _ in range(times):
                batch.append(
                    {
                        "type": "track",
                        "event": name,
                        "messageId": f"{ID_SLOT}-p{number}-{rng.getrandbits(48):012x}",
                        "anonymousId": PROBE_SLOT,
                        "timestamp": now.isoformat(),
                        "properties": {"sku": "SKU-0001", "price": 9.99},
                    }
                )
                number += 1
        while len(batch) < LAG_BATCH:
            batch.append(
                {
                    "type": "track",
                    "event": rng.choice(names),
                    "messageId": f"{ID_SLOT}-{rng.getrandbits(64):016x}",
                    "userId": rng.choice(user_ids),
                    "timestamp": (now - timedelta(seconds=2)).isoformat(),
                    "properties": {"sku": f"SKU-{rng.randrange(512):04d}"},
                }
            )
        bodies.append(orjson.dumps({"batch": batch, "sentAt": now.isoformat()}).decode())
    return bodies


def _poll(
    url: str,
    segment_id: int,
    probes: Any,
    *,
    load_done: Any,
    drain_until: float,
) -> tuple[list[float], list[float], int]:
    """Until every probe is a member (or drain_until): lags from the request's return, and the
    segments step (membership seen - resolved seen)."""
    returned: dict[str, float] = {}
    resolved: dict[str, float] = {}
    lags: list[float] = []
    steps: list[float] = []
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            try:
                while True:
                    probe, at = probes.get_nowait()
                    returned[probe] = at
            except queue.Empty:
                pass
            waiting = [p for p in returned if p not in resolved]
            if waiting:
                rows = conn.execute(
                    "SELECT DISTINCT anonymous_id FROM ingestion_event"
                    " WHERE anonymous_id = ANY(%s) AND identifier_id IS NOT NULL",
                    [waiting],
                ).fetchall()
                seen = time.time()
                for (probe,) in rows:
                    resolved[probe] = seen
            if returned:
                rows = conn.execute(
                    "SELECT DISTINCT e.anonymous_id FROM ingestion_event e"
                    " JOIN identity_identifier i ON i.id = e.identifier_id"
                    " JOIN segments_membership m ON m.profile_id = i.profile_id"
                    " AND m.segment_id = %s AND m.exited_at IS NULL"
                    " WHERE e.anonymous_id = ANY(%s)",
                    [segment_id, list(returned)],
                ).fetchall()
                seen = time.time()
                for (probe,) in rows:
                    lags.append(seen - returned.pop(probe))
                    steps.append(seen - resolved.pop(probe, seen))
            if load_done() and (not returned or time.time() > drain_until):
                return lags, steps, len(returned)
            time.sleep(0.1)


def _count(conn: psycopg.Connection[Any], query: str) -> int:
    row = conn.execute(query).fetchone()
    return 0 if row is None else int(row[0])


def _lag_phase(
    cfg: Any, url: str, port: int, write_key: str, user_ids: list[str], segment_id: int, rate: int
) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    ready, out, probes = ctx.Queue(), ctx.Queue(), ctx.Queue()
    go = ctx.Event()
    times = ctx.Array("d", 3)
    connections = 8
    batches_per_s = rate / LAG_BATCH
    sample_every = max(1, round(batches_per_s / 10 / cfg.client_procs / connections))
    procs = [
        ctx.Process(
            target=_lag_process,
            args=(
                i,
                port,
                write_key,
                lag_templates(user_ids, 7000 + i, 32),
                connections,
                batches_per_s / cfg.client_procs,
                sample_every,
                ready,
                go,
                times,
                probes,
                out,
            ),
            daemon=True,
        )
        for i in range(cfg.client_procs)
    ]
    for proc in procs:
        proc.start()
    for _ in procs:
        ready.get(timeout=120)
    with psycopg.connect(url, autocommit=True) as conn:
        before = _count(conn, "SELECT count(*) FROM ingestion_event")
    start = time.time() + 0.3
    times[0], times[1], times[2] = start, start + cfg.lag_duration, cfg.client_procs
    go.set()
    reports: list[dict[str, Any]] = []
    ended: dict[str, int] = {}

    def load_done() -> bool:
        while len(reports) < len(procs):
            try:
                reports.append(out.get_nowait())
            except queue.Empty:
                return False
        if not ended:
            with psycopg.connect(url, autocommit=True) as conn:
                ended["stored"] = _count(conn, "SELECT count(*) FROM ingestion_event")
                ended["backlog"] = _count(
                    conn, "SELECT count(*) FROM ingestion_event WHERE identifier_id IS NULL"
                )
                ended["changes"] = _count(
                    conn,
                    "SELECT count(*) FROM identity_profilechange "
                    "WHERE segments_seen_at IS DISTINCT FROM changed_at",
                )
        return probes.empty()

    lags, steps, missing = _poll(
        url,
        segment_id,
        probes,
        load_done=load_done,
        drain_until=start + cfg.lag_duration + cfg.lag_drain,
    )
    for proc in procs:
        proc.join(timeout=30)
    censored = sorted(lags + [float("inf")] * missing)
    steps.sort()
    return {
        "rate": rate,
        "events_per_s": (ended["stored"] - before) / cfg.lag_duration,
        "probes": len(censored),
        "missing": missing,
        "p50": _percentile(censored, 0.5),
        "p95": _percentile(censored, 0.95),
        "step_p50": _percentile(steps, 0.5) if steps else float("nan"),
        "step_p95": _percentile(steps, 0.95) if steps else float("nan"),
        "backlog": ended["backlog"],
        "changes": ended["changes"],
        "errors": sum(r["errors"] for r in reports),
        "error_sample": next((s for r in reports for s in r["sample"]), ""),
    }


def _drop_backlog(url: str) -> None:
    """Events the resolver did not reach (the lag is of new events, not an old backlog)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM ingestion_event WHERE identifier_id IS NULL")


def incremental_lag(
    cfg: Any, url: str, loaded: Any, segment_id: int, context: dict[str, str]
) -> list[Result]:
    import os

    import redis

    from benchmarks.segments import bench_env

    for number in (cfg.redis_db, cfg.redis_db + 1):
        redis.Redis.from_url(f"{cfg.redis_url}/{number}").flushdb()
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="cdp-bench-seg-lag-") as tmp:
        env = bench_env(cfg, url)
        # One worker, two processes, one queue; or (BENCH_SEGMENTS_OWN_QUEUE) a worker per
        # queue: the resolver's and the segments' (CDP_SEGMENTS_QUEUE=segments).
        queues = [["-Q", "celery"], ["-Q", "segments"]] if cfg.own_queue else [["-Q", "celery"]]
        processes = ["--concurrency", "1" if cfg.own_queue else "2"]
        workers = [
            subprocess.Popen(
                [CELERY, "-A", "cdp", "worker", *queue_args, "-l", "warning", *QUIET, *processes],
                cwd=ROOT,
                env=env,
                stdout=(Path(tmp) / f"worker{number}.log").open("wb"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            for number, queue_args in enumerate(queues)
        ]
        server, port = _start_gunicorn(cfg, url, Path(tmp) / "gunicorn.log")
        try:
            time.sleep(3)
            for label, rate in (("resolver keeps up", cfg.lag_low_rate), ("offered", cfg.lag_rate)):
                _drop_backlog(url)
                phase = _lag_phase(
                    cfg, url, port, loaded.write_key, loaded.user_ids, segment_id, rate
                )
                _log(f"lag at {rate}/s: {phase}")
                at = f"incremental lag at {rate:,} events/s ({label})"
                note = (
                    f"{phase['probes']} probes, {phase['missing']} never in the segment within "
                    f"{cfg.lag_drain} s; stored {phase['events_per_s']:,.0f} events/s; "
                    f"{phase['backlog']:,} events unresolved and {phase['changes']:,} profile "
                    f"changes queued when the load ended"
                )
                if phase["errors"]:
                    note += f"; {phase['errors']} request errors ({phase['error_sample'][:80]})"
                results += [
                    Result(
                        f"{at}: p95 ingest -> membership",
                        phase["p95"],
                        "s",
                        f"< {TARGET_LAG_P95_S:.0f}",
                        phase["p95"] < TARGET_LAG_P95_S,
                        note=note,
                    ),
                    Result(f"{at}: p50 ingest -> membership", phase["p50"], "s"),
                    Result(
                        f"{at}: p95 segments step (resolved -> membership)",
                        phase["step_p95"],
                        "s",
                        note=f"p50 {phase['step_p50']:.1f} s; probes that became members",
                    ),
                ]
        finally:
            stop_gunicorn(server)
            for worker in workers:
                stop_process_group(worker, timeout=40)
    context["incremental lag"] = (
        (
            "two Celery workers (concurrency 1 each: queue celery, queue segments)"
            if cfg.own_queue
            else "a Celery worker (concurrency 2)"
        )
        + " fed by ingestion's enqueue-on-commit (resolver) and the "
        "resolver's debounced enqueue (segments_refresh_schedule); gunicorn serves /v1/batch; "
        f"{cfg.client_procs} load processes x 8 connections, 100-event batches, "
        f"{cfg.lag_duration} s per rate; probes polled every 100 ms"
    )
    del os
    return results
