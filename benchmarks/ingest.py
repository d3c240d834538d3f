"""Ingestion throughput: gunicorn + PostgreSQL, against a raw ``COPY`` of the same rows.

What it does (``.venv/bin/python -m benchmarks ingest``):

1. Creates a fresh database ``cdp_bench`` (dropped first) on the server of ``DATABASE_URL``, or on
   ``postgres://postgres@127.0.0.1:5432`` when that answers, or else on the embedded server, and
   migrates it; creates a source and its write key.
2. Raw baseline: psycopg ``COPY`` of validated rows (same columns as the ingest insert) into a
   fresh table shaped like ``ingestion_event`` (same indexes, foreign key and partitions), from one
   process: 100 rows per transaction, then one big ``COPY``.
3. Starts gunicorn with ``deploy/gunicorn.conf.py`` (``CDP_ENV=development``, ``DEBUG=0``) and
   drives it from separate load-generator processes (``http.client`` keep-alive connections) with
   pre-generated Segment-SDK-like messages: 100-event ``/v1/batch`` requests, then single
   ``/v1/track`` requests, each for a warm-up and then a fixed measured duration.
4. Durable throughput is rows committed in ``ingestion_event`` (``count(*)`` at the start and at
   the end of the measured window), latency is per request as the client sees it.

Knobs (environment): ``BENCH_DURATION`` (20 s), ``BENCH_WARMUP`` (5 s), ``BENCH_TRACK_DURATION``
(10 s), ``BENCH_CLIENT_PROCS`` (2), ``BENCH_BATCH_CONNECTIONS`` / ``BENCH_TRACK_CONNECTIONS`` per
process (4 / 8), ``BENCH_RAW_ROWS`` (200,000), ``BENCH_DB`` (``cdp_bench``), and gunicorn's own
``GUNICORN_WORKERS`` / ``GUNICORN_THREADS``.
"""

from __future__ import annotations

import http.client
import multiprocessing as mp
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from base64 import b64encode
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import psycopg
from psycopg import sql

from benchmarks import ROOT, Result, env_int

TITLE = "Ingestion: /v1/batch and /v1/track vs raw COPY"

PYTHON = str(ROOT / ".venv" / "bin" / "python")
GUNICORN = str(ROOT / ".venv" / "bin" / "gunicorn")
DEFAULT_SERVER = "postgres://postgres@127.0.0.1:5432"
ID_SLOT = b"@@@@@@@@"  # the first 8 hex digits of each messageId, re-randomised per request
BATCH_SIZE = 100
TEMPLATES_PER_PROCESS = 64

TARGET_EVENTS_PER_S = 50_000
TARGET_RATIO = 0.5
TARGET_P99_MS = 50.0
TARGET_TRACK_PER_S = 1_500


@dataclass(frozen=True)
class Settings:
    duration: int = env_int("BENCH_DURATION", 20)
    warmup: int = env_int("BENCH_WARMUP", 5)
    track_duration: int = env_int("BENCH_TRACK_DURATION", 10)
    client_procs: int = env_int("BENCH_CLIENT_PROCS", 2)
    batch_connections: int = env_int("BENCH_BATCH_CONNECTIONS", 4)
    track_connections: int = env_int("BENCH_TRACK_CONNECTIONS", 8)
    raw_rows: int = env_int("BENCH_RAW_ROWS", 200_000)
    database: str = os.environ.get("BENCH_DB", "cdp_bench")


_context: dict[str, str] = {}


def context() -> dict[str, str]:
    """Run details for BENCHMARKS.md (filled in by ``run``)."""
    return dict(_context)


# --- database -----------------------------------------------------------------------------------
def server_url() -> str:
    """The PostgreSQL server to use, as a URL without a database name."""
    configured = os.environ.get("DATABASE_URL")
    if configured:
        return configured.rsplit("/", 1)[0] if configured.count("/") > 2 else configured
    try:
        psycopg.connect(f"{DEFAULT_SERVER}/postgres", connect_timeout=2).close()
        return DEFAULT_SERVER
    except psycopg.OperationalError:
        pass
    from cdp.embedded_db import ensure_running

    params = ensure_running(ROOT)  # listens on a Unix socket: the host is a directory
    return f"postgres://{params['USER']}@{quote(params['HOST'], safe='')}"


def recreate_database(server: str, name: str) -> str:
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = f"{server}/{name}"
    _manage(url, "migrate", "--no-input", "-v", "0")
    return url


def _django_env(url: str) -> dict[str, str]:
    env = dict(os.environ, DATABASE_URL=url, CDP_ENV="development", DEBUG="0")
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


def _manage(url: str, *args: str) -> str:
    done = subprocess.run(
        [PYTHON, "manage.py", *args],
        cwd=ROOT,
        env=_django_env(url),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def count_events(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM ingestion_event").fetchone()
        return int(row[0]) if row else 0


# --- realistic Segment messages -----------------------------------------------------------------
_PRODUCTS = ["sneakers", "backpack", "water-bottle", "headphones", "rain-jacket", "yoga-mat"]
_EVENTS = ["Product Viewed", "Product Added", "Checkout Started", "Order Completed", "Signed Up"]
_PAGES = ["/", "/pricing", "/blog/customer-data", "/products", "/cart", "/account/settings"]
_AGENTS = [
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 Version/17.1 Safari",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0.0.0 Safari",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
]


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sdk_message(rng: random.Random, now: datetime) -> dict[str, Any]:
    """One message as analytics.js would send it: track 60%, page 25%, identify 15%."""
    user = rng.randrange(200_000)
    sent = now - timedelta(milliseconds=rng.randrange(50, 3000))
    page = rng.choice(_PAGES)
    message: dict[str, Any] = {
        "messageId": ID_SLOT.decode() + str(uuid.UUID(int=rng.getrandbits(128), version=4))[8:],
        "anonymousId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "timestamp": _iso(sent - timedelta(milliseconds=rng.randrange(0, 2000))),
        "sentAt": _iso(sent),
        "context": {
            "library": {"name": "analytics.js", "version": "npm:next-1.64.0"},
            "page": {"path": page, "referrer": "https://www.google.com/"},
            "userAgent": rng.choice(_AGENTS),
            "locale": rng.choice(["en-US", "de-DE", "fr-FR"]),
        },
    }
    if rng.random() < 0.7:
        message["userId"] = f"user-{user}"
    roll = rng.random()
    if roll < 0.6:
        product = rng.choice(_PRODUCTS)
        message.update(
            type="track",
            event=rng.choice(_EVENTS),
            properties={
                "product_id": f"{product}-{rng.randrange(1000)}",
                "category": "outdoor",
                "price": round(rng.uniform(5, 300), 2),
                "currency": "USD",
                "quantity": rng.randrange(1, 4),
            },
        )
    elif roll < 0.85:
        message.update(type="page", name=page.strip("/") or "home", properties={"title": "Shop"})
    else:
        message.setdefault("userId", f"user-{user}")
        message.update(
            type="identify",
            traits={
                "email": f"user{user}@example.com",
                "firstName": "Ada",
                "plan": rng.choice(["free", "pro", "enterprise"]),
            },
        )
    return message


def batch_templates(seed: int, count: int) -> list[bytes]:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    return [
        orjson.dumps(
            {"batch": [sdk_message(rng, now) for _ in range(BATCH_SIZE)], "sentAt": _iso(now)}
        )
        for _ in range(count)
    ]


def track_templates(seed: int, count: int) -> list[bytes]:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    bodies: list[bytes] = []
    while len(bodies) < count:
        message = sdk_message(rng, now)
        if message["type"] == "track":
            bodies.append(orjson.dumps(message))
    return bodies


# --- CPU accounting (robust to a busy machine, unlike throughput) ---------------------------------
_TICK = os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds used) of one process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK


def cpu_snapshot(gunicorn_pid: int, database: str) -> dict[str, float]:
    """CPU seconds so far: gunicorn workers, this database's PostgreSQL backends, whole machine."""
    app = db = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _proc_stat(int(entry.name))
        if stat is None:
            continue
        if stat[0] == gunicorn_pid or int(entry.name) == gunicorn_pid:
            app += stat[1]
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.startswith(b"postgres: ") and f" {database} ".encode() in cmdline:
            db += stat[1]
    busy = (
        sum(int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:4]) / _TICK
    )
    return {"app": app, "db": db, "machine": busy}


# --- load generator (separate processes) ------------------------------------------------------
@dataclass
class LoadResult:
    ok: int = 0
    errors: int = 0
    error_sample: str = ""
    latencies_ms: list[float] | None = None


def _load_process(
    index: int,
    port: int,
    path: str,
    write_key: str,
    connections: int,
    ready: Any,
    go: Any,
    times: Any,
    out: Any,
) -> None:
    templates = (batch_templates if path == "/v1/batch" else track_templates)(
        seed=1000 + index, count=TEMPLATES_PER_PROCESS * (1 if path == "/v1/batch" else 16)
    )
    auth = "Basic " + b64encode(f"{write_key}:".encode()).decode()
    headers = {"Content-Type": "application/json", "Authorization": auth}
    ready.put(index)
    go.wait()
    start, measure_from, stop = times[0], times[1], times[2]
    results = [LoadResult(latencies_ms=[]) for _ in range(connections)]

    def drive(slot: int) -> None:
        result = results[slot]
        rng = random.Random(index * 1000 + slot)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        i = rng.randrange(len(templates))
        while time.time() < start:
            time.sleep(0.001)
        while True:
            began = time.time()
            if began >= stop:
                break
            body = templates[i % len(templates)].replace(ID_SLOT, os.urandom(4).hex().encode())
            i += 1
            t0 = time.perf_counter()
            try:
                conn.request("POST", path, body, headers)
                response = conn.getresponse()
                payload = response.read()
                status = response.status
            except (OSError, http.client.HTTPException) as exc:
                status, payload = 0, repr(exc).encode()
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            elapsed_ms = (time.perf_counter() - t0) * 1000
            if began < measure_from or time.time() > stop:
                continue
            if status == 200:
                result.ok += 1
                assert result.latencies_ms is not None
                result.latencies_ms.append(elapsed_ms)
            else:
                result.errors += 1
                result.error_sample = result.error_sample or f"{status} {payload[:300]!r}"
        conn.close()

    threads = [threading.Thread(target=drive, args=(slot,)) for slot in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    merged = LoadResult(latencies_ms=[])
    for result in results:
        merged.ok += result.ok
        merged.errors += result.errors
        merged.error_sample = merged.error_sample or result.error_sample
        assert merged.latencies_ms is not None and result.latencies_ms is not None
        merged.latencies_ms.extend(result.latencies_ms)
    out.put(merged)


@dataclass
class Phase:
    cpu: dict[str, float]
    requests_per_s: float
    events_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    error_sample: str


def drive_load(
    *,
    port: int,
    path: str,
    write_key: str,
    url: str,
    procs: int,
    connections: int,
    warmup: int,
    duration: int,
    gunicorn_pid: int,
    database: str,
) -> Phase:
    ctx = mp.get_context("spawn")
    ready, out = ctx.Queue(), ctx.Queue()
    go = ctx.Event()
    times = ctx.Array("d", 3)
    workers = [
        ctx.Process(
            target=_load_process,
            args=(i, port, path, write_key, connections, ready, go, times, out),
            daemon=True,
        )
        for i in range(procs)
    ]
    for worker in workers:
        worker.start()
    for _ in workers:
        ready.get(timeout=120)
    start = time.time() + 0.2
    times[0], times[1], times[2] = start, start + warmup, start + warmup + duration
    go.set()
    time.sleep(max(0.0, times[1] - time.time()))
    before = count_events(url)
    cpu_before = cpu_snapshot(gunicorn_pid, database)
    time.sleep(max(0.0, times[2] - time.time()))
    cpu_after = cpu_snapshot(gunicorn_pid, database)
    after = count_events(url)
    merged = [out.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    latencies = sorted(ms for result in merged for ms in (result.latencies_ms or []))
    ok = sum(result.ok for result in merged)
    return Phase(
        cpu={key: (cpu_after[key] - cpu_before[key]) / max(ok, 1) * 1000 for key in cpu_after}
        | {"machine_busy": (cpu_after["machine"] - cpu_before["machine"]) / duration},
        requests_per_s=ok / duration,
        events_per_s=(after - before) / duration,
        p50_ms=_percentile(latencies, 0.50),
        p99_ms=_percentile(latencies, 0.99),
        errors=sum(result.errors for result in merged),
        error_sample=next((r.error_sample for r in merged if r.error_sample), ""),
    )


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


# --- raw COPY baseline --------------------------------------------------------------------------
COLUMNS = (
    "source_id",
    "message_id",
    "type",
    "event_name",
    "user_id",
    "anonymous_id",
    "previous_id",
    "group_id",
    "timestamp",
    "original_timestamp",
    "sent_at",
    "received_at",
    "clock_skew_clamped",
    "properties",
    "traits",
    "context",
    "integrations",
)


def raw_rows(source_id: int, count: int) -> list[tuple[Any, ...]]:
    """The rows the ingest path inserts for the benchmark's messages, validated the same way."""
    from cdp.ingestion.services import ingest_limits
    from cdp.ingestion.validation import EventRow, validate_event

    limits, received = ingest_limits(), datetime.now(UTC)
    rng = random.Random(7)
    rows = []
    for index in range(count):
        raw = sdk_message(rng, received)
        raw["messageId"] = raw["messageId"].replace(ID_SLOT.decode(), f"{rng.getrandbits(32):08x}")
        row = validate_event(raw, index=index, call_type=None, received_at=received, limits=limits)
        assert isinstance(row, EventRow), row
        rows.append(
            (
                source_id,
                row.message_id,
                row.type,
                row.event_name,
                row.user_id,
                row.anonymous_id,
                row.previous_id,
                row.group_id,
                row.timestamp,
                row.original_timestamp,
                row.sent_at,
                received,
                row.clock_skew_clamped,
                row.properties,
                row.traits,
                row.context,
                row.integrations,
            )
        )
    return rows


def create_raw_table(conn: psycopg.Connection[Any]) -> None:
    """``raw_event``: ``ingestion_event``'s columns, indexes, foreign key and partitions."""
    conn.execute("DROP TABLE IF EXISTS raw_event")
    conn.execute(
        "CREATE TABLE raw_event (LIKE ingestion_event INCLUDING DEFAULTS INCLUDING CONSTRAINTS"
        " INCLUDING IDENTITY INCLUDING INDEXES) PARTITION BY RANGE (received_at)"
    )
    conn.execute(
        "ALTER TABLE raw_event ADD FOREIGN KEY (source_id) REFERENCES ingestion_source (id)"
        " DEFERRABLE INITIALLY DEFERRED"
    )
    bounds = conn.execute(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
        " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'ingestion_event'::regclass"
    ).fetchall()
    for name, bound in bounds:
        conn.execute(
            sql.SQL("CREATE TABLE {} PARTITION OF raw_event " + bound).format(
                sql.Identifier("raw_" + name)
            )
        )
    conn.commit()


def copy_text(rows: list[tuple[Any, ...]]) -> bytes:
    """Rows in COPY text format, encoded before timing (as the HTTP payloads are)."""
    lines = []
    for row in rows:
        fields = []
        for value in row:
            if value is None:
                fields.append("\\N")
            elif isinstance(value, bool):
                fields.append("t" if value else "f")
            elif isinstance(value, datetime):
                fields.append(value.isoformat())
            else:
                fields.append(str(value).translate(_COPY_ESCAPES))
        lines.append("\t".join(fields))
    return ("\n".join(lines) + "\n").encode()


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def raw_copy(url: str, rows: list[tuple[Any, ...]], total: int, per_transaction: int) -> float:
    """Rows/s for ``total`` rows copied ``per_transaction`` at a time (cycling ``rows``)."""
    statement = f"COPY raw_event ({', '.join(COLUMNS)}) FROM STDIN"
    chunks = [
        copy_text([rows[i % len(rows)] for i in range(start, min(start + per_transaction, total))])
        for start in range(0, total, per_transaction)
    ]
    with psycopg.connect(url) as conn:
        create_raw_table(conn)
        conn.execute("CHECKPOINT")
        conn.commit()
        started = time.perf_counter()
        for chunk in chunks:
            with conn.cursor() as cursor, cursor.copy(statement) as copy:
                copy.write(chunk)
            conn.commit()
        elapsed = time.perf_counter() - started
        conn.execute("DROP TABLE raw_event")
        conn.commit()
    return total / elapsed


# --- in-process CPU cost (no HTTP server, no concurrency) ----------------------------------------
def in_process_cpu_ms(write_key: str, path: str, requests: int) -> float:
    """Python CPU ms per request through Django's WSGI handler, one request at a time.

    Unlike throughput this hardly moves when other processes compete for the cores, so it is the
    figure to compare before and after a change to the request path.
    """
    import io

    from django.core.wsgi import get_wsgi_application

    app = get_wsgi_application()
    bodies = batch_templates(9, 16) if path == "/v1/batch" else track_templates(9, 256)
    auth = "Basic " + b64encode(f"{write_key}:".encode()).decode()

    def call(body: bytes) -> None:
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": path,
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80",
            "HTTP_HOST": "127.0.0.1",
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_AUTHORIZATION": auth,
            "wsgi.input": io.BytesIO(body),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
        }
        status: list[str] = []
        b"".join(app(environ, lambda s, h, e=None: status.append(s)))  # type: ignore[arg-type]
        if not status[0].startswith("200"):
            raise RuntimeError(f"{path} answered {status[0]}")

    def body(i: int) -> bytes:
        return bodies[i % len(bodies)].replace(ID_SLOT, os.urandom(4).hex().encode())

    for i in range(20):
        call(body(i))
    started = time.process_time()
    for i in range(requests):
        call(body(i))
    return (time.process_time() - started) / requests * 1000


# --- gunicorn ---------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_gunicorn(url: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = _django_env(url) | {"GUNICORN_BIND": f"127.0.0.1:{port}"}
    process = subprocess.Popen(
        [GUNICORN, "-c", str(ROOT / "deploy" / "gunicorn.conf.py"), "cdp.wsgi:application"],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited; see {log}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                return process
        except OSError:
            time.sleep(0.2)
    stop_gunicorn(process)
    raise RuntimeError(f"gunicorn did not answer /healthz within 60 s; see {log}")


def stop_gunicorn(process: subprocess.Popen[bytes]) -> None:
    stop_process_group(process, timeout=25)


def stop_process_group(process: subprocess.Popen[bytes], *, timeout: float) -> None:
    """SIGTERM to the process group of a process started with ``start_new_session``; SIGKILL
    when it has not exited after ``timeout`` seconds."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


# --- the benchmark ----------------------------------------------------------------------------
def run() -> list[Result]:
    cfg = Settings()
    server = server_url()
    url = recreate_database(server, cfg.database)
    write_key = _manage(url, "create_source", "bench").strip().splitlines()[-1]
    os.environ.update(_django_env(url))
    os.environ["DJANGO_SETTINGS_MODULE"] = "cdp.settings"
    import django

    django.setup()
    from cdp.ingestion.models import Source

    source_id = Source.objects.get(name="bench").pk
    from django.db import connections

    connections.close_all()

    rows = raw_rows(source_id, 20_000)
    raw_100 = raw_copy(url, rows, cfg.raw_rows, BATCH_SIZE)
    raw_one = raw_copy(url, rows, cfg.raw_rows, cfg.raw_rows)

    log = ROOT / ".cdp" / "bench-gunicorn.log"
    log.parent.mkdir(exist_ok=True)
    port = _free_port()
    server_process = start_gunicorn(url, port, log)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
        batch = drive_load(
            port=port,
            path="/v1/batch",
            write_key=write_key,
            url=url,
            procs=cfg.client_procs,
            connections=cfg.batch_connections,
            warmup=cfg.warmup,
            duration=cfg.duration,
            gunicorn_pid=server_process.pid,
            database=cfg.database,
        )
        track = drive_load(
            port=port,
            path="/v1/track",
            write_key=write_key,
            url=url,
            procs=cfg.client_procs,
            connections=cfg.track_connections,
            warmup=min(cfg.warmup, 3),
            duration=cfg.track_duration,
            gunicorn_pid=server_process.pid,
            database=cfg.database,
        )
    finally:
        stop_gunicorn(server_process)

    batch_cpu = in_process_cpu_ms(write_key, "/v1/batch", 300)
    track_cpu = in_process_cpu_ms(write_key, "/v1/track", 3000)
    connections.close_all()

    with psycopg.connect(url, autocommit=True) as conn:
        pg_version = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
    sample = batch_templates(seed=1, count=4)
    event_bytes = sum(len(body) for body in sample) / (len(sample) * BATCH_SIZE)
    workers = os.environ.get("GUNICORN_WORKERS") or f"{(os.cpu_count() or 1) + 1} (default)"
    _context.update(
        {
            "PostgreSQL": f"{pg_version} at {server.split('@')[-1]} (database {cfg.database})",
            "server": f"gunicorn gthread, workers {workers}, threads "
            f"{os.environ.get('GUNICORN_THREADS', '2')}; CDP_ENV=development, DEBUG=0",
            "load": f"{cfg.client_procs} load-generator processes x {cfg.batch_connections} (batch)"
            f" / {cfg.track_connections} (track) keep-alive connections, on the same machine: they"
            " share the CPU cores with gunicorn and PostgreSQL",
            "timing": f"batch: {cfg.warmup} s warm-up + {cfg.duration} s measured; track: "
            f"{min(cfg.warmup, 3)} s + {cfg.track_duration} s",
            "payload": f"{BATCH_SIZE} events per batch, {event_bytes:.0f} bytes per event on avg."
            " (track 60% / page 25% / identify 15%)",
            "raw baseline": f"{cfg.raw_rows:,} rows from one process, COPY into a new table shaped"
            " like ingestion_event",
        }
    )
    return [
        Result(
            "batch: committed events/s",
            batch.events_per_s,
            "events/s",
            f">= {TARGET_EVENTS_PER_S:,}",
            batch.events_per_s >= TARGET_EVENTS_PER_S,
        ),
        Result(
            "batch: requests/s",
            batch.requests_per_s,
            "batches/s",
            note=f"{batch.errors} errors {batch.error_sample}".strip(),
        ),
        Result("batch: p50 latency", batch.p50_ms, "ms"),
        Result(
            "batch: p99 latency",
            batch.p99_ms,
            "ms",
            f"< {TARGET_P99_MS:.0f}",
            batch.p99_ms < TARGET_P99_MS,
        ),
        Result(
            "track: requests/s",
            track.requests_per_s,
            "req/s",
            f">= {TARGET_TRACK_PER_S:,}",
            track.requests_per_s >= TARGET_TRACK_PER_S,
            note=f"{track.errors} errors {track.error_sample}".strip(),
        ),
        Result("track: committed events/s", track.events_per_s, "events/s"),
        Result("track: p50 latency", track.p50_ms, "ms"),
        Result("track: p99 latency", track.p99_ms, "ms"),
        Result("batch: gunicorn CPU per batch", batch.cpu["app"], "ms"),
        Result("batch: PostgreSQL CPU per batch", batch.cpu["db"], "ms", note="backends only"),
        Result(
            "batch: machine CPU busy",
            batch.cpu["machine_busy"],
            "cores",
            note=f"of {os.cpu_count()}; includes the load generator and other processes",
        ),
        Result("track: gunicorn CPU per request", track.cpu["app"], "ms"),
        Result("track: PostgreSQL CPU per request", track.cpu["db"], "ms"),
        Result("in-process: Python CPU per batch", batch_cpu, "ms", note="no HTTP, no concurrency"),
        Result("in-process: Python CPU per track", track_cpu, "ms", note="no HTTP, no concurrency"),
        Result("raw COPY, 100 rows/transaction", raw_100, "rows/s"),
        Result("raw COPY, one transaction", raw_one, "rows/s"),
        Result(
            "ours / raw COPY (100 rows/txn)",
            batch.events_per_s / raw_100,
            "x",
            f">= {TARGET_RATIO}",
            batch.events_per_s / raw_100 >= TARGET_RATIO,
        ),
        Result("ours / raw COPY (one txn)", batch.events_per_s / raw_one, "x"),
    ]


if __name__ == "__main__":
    from benchmarks import table

    print(table(run()))
    print("\n".join(f"- {key}: {value}" for key, value in context().items()))
    sys.exit(0)
