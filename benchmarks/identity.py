"""Identity resolution: resolver throughput, ``rebuild_identity``, profile lookup, ingest lag.

What it does (``.venv/bin/python -m benchmarks identity``), in a child process of its own (it
needs Django set up on its own database, and ``python -m benchmarks`` may already have set it up
for another module):

1. Creates a fresh database ``cdp_bench_identity`` (dropped first; ``BENCH_IDENTITY_DB``) on the
   server ``benchmarks.ingest`` picks, migrates it, creates a web and a CRM source.
2. Generates a seeded population (default 300,000 people: 60 % identified with a user id, 1-4
   anonymous ids each, emails with shared family addresses and second addresses, phones) and
   1,000,000 events for them (track/page ~72 %, identify 20 %, alias 3 %, group 5 %) plus 50,000
   CRM records (85 % match a web person by email), and loads them through the real ingestion
   path in-process: ``events_ingest`` in batches of 500 and ``records_upsert`` (PII encrypted at
   ingest). The loaded database is kept as a template (``<db>_seed``); every resolver run gets a
   fresh copy of it (``CREATE DATABASE ... TEMPLATE``), so each run starts from the same state.
3. Resolver: ``resolve_pending(batch_size=...)`` in one process on the first
   ``BENCH_IDENTITY_TRIAL_EVENTS`` events for each batch size (``BENCH_IDENTITY_BATCH_SIZES``,
   1000 and 5000), then two worker processes at once with the best batch size on the first
   ``BENCH_IDENTITY_RESOLVE_EVENTS`` (0: all; the default keeps the run under 20 minutes at the
   resolver's present speed). Records are claimed next to events, one batch size of each per
   transaction, so the first batches resolve the CRM records too. Baseline: on another fresh
   copy, one plain SQL ``UPDATE ingestion_event SET identifier_id = ...`` joined from the
   (event -> identifier) mapping the resolver produced, in transactions of the same size: what
   PostgreSQL alone costs for the one write every resolved event needs.
4. ``identity_rebuild()`` on the resolved data: seconds per step (graph is the target).
5. gunicorn (``deploy/gunicorn.conf.py``) serving ``GET /v1/profiles/lookup`` (``user_id`` or
   ``email`` of resolved events, bearer token with ``profiles:read``), driven open-loop from
   separate processes at ``BENCH_LOOKUP_LOW_RATE`` and then ``BENCH_LOOKUP_RATE`` req/s; latency
   counts from the scheduled send time (queueing included), achieved rate is the answers that
   arrived inside the measured window.
6. Event -> profile lag: events the resolver did not reach are deleted first (the lag is for new
   events, not an old backlog); gunicorn serves ``/v1/batch`` at ``BENCH_LAG_LOW_RATE`` and then
   ``BENCH_LAG_RATE`` events/s (open-loop, 100-event batches) while the resolver runs next to it:
   a Celery worker (``celery -A cdp worker``, Redis broker) when ingestion enqueues the resolver
   on commit, else a process calling ``resolve_batch`` in a loop. Each sampled request carries
   one probe event with a fresh ``anonymousId`` (``ingestion_event`` has no index on
   ``message_id``; it has one on ``anonymous_id``); the probes are polled every
   ``BENCH_LAG_POLL_MS`` and lag is the time the probe's ``identifier_id`` was seen set minus
   the time its request returned. Probes still unresolved ``BENCH_LAG_DRAIN`` s after the load
   count as infinitely late.

Everything runs on a snapshot of the working tree taken at the start (``.venv`` and ``.cdp``
linked), so code edited meanwhile cannot mix into one run.

Knobs (environment): ``BENCH_IDENTITY_SCALE`` (1.0; 0.05 is a quick run) scales
``BENCH_IDENTITY_PEOPLE`` (300,000), ``BENCH_IDENTITY_EVENTS`` (1,000,000),
``BENCH_IDENTITY_RECORDS`` (50,000), ``BENCH_IDENTITY_TRIAL_EVENTS`` (20,000) and
``BENCH_IDENTITY_RESOLVE_EVENTS`` (150,000); ``BENCH_IDENTITY_BATCH_SIZES`` (``1000,5000``);
``BENCH_LOOKUP_LOW_RATE`` / ``BENCH_LOOKUP_RATE`` (100 / 500 req/s), ``BENCH_LOOKUP_DURATION``
(15 s), ``BENCH_LOOKUP_CONNECTIONS`` (24 per process); ``BENCH_LAG_LOW_RATE`` /
``BENCH_LAG_RATE`` (1,000 / 10,000 events/s), ``BENCH_LAG_DURATION`` (30 s), ``BENCH_LAG_DRAIN``
(15 s), ``BENCH_LAG_CONNECTIONS`` (8 per process), ``BENCH_LAG_POLL_MS`` (50);
``BENCH_CLIENT_PROCS`` (2); ``BENCH_IDENTITY_DB`` (``cdp_bench_identity``; also ``<db>_seed``
and ``<db>_raw``); ``BENCH_REDIS_URL`` (``redis://127.0.0.1:6379``) with ``BENCH_REDIS_DB``
(11: the broker; the cache uses the next one; both are flushed).
"""

from __future__ import annotations

import http.client
import itertools
import json
import multiprocessing as mp
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from base64 import b64encode
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import psycopg
from psycopg import sql

from benchmarks import ROOT, Result, env_int
from benchmarks.ingest import (
    PYTHON,
    _django_env,
    _free_port,
    _percentile,
    cpu_snapshot,
    recreate_database,
    server_url,
    start_gunicorn,
    stop_gunicorn,
    stop_process_group,
)

TITLE = "Identity: resolver, rebuild_identity, profile lookup, event -> profile lag"

CELERY = str(ROOT / ".venv" / "bin" / "celery")
INGEST_BATCH = 500
LAG_BATCH = 100
PROBE_SLOT = "probe-@@@@@@@@@@@@@@@@"  # the anonymousId of each request's first event
ID_SLOT = "@@@@@@@@"  # the first 8 hex digits of each messageId, re-randomised per request

TARGET_RESOLVE_PER_S = 20_000
TARGET_GRAPH_S = 5.0
TARGET_LOOKUP_P95_MS = 20.0
TARGET_LOOKUP_RATE = 500
TARGET_LAG_P95_S = 2.0


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "")
    return float(value) if value.strip() else default


def _scaled(name: str, full: int) -> int:
    return env_int(name, max(1, round(full * _env_float("BENCH_IDENTITY_SCALE", 1.0))))


@dataclass(frozen=True)
class Settings:
    people: int = field(default_factory=lambda: _scaled("BENCH_IDENTITY_PEOPLE", 300_000))
    events: int = field(default_factory=lambda: _scaled("BENCH_IDENTITY_EVENTS", 1_000_000))
    records: int = field(default_factory=lambda: _scaled("BENCH_IDENTITY_RECORDS", 50_000))
    # Each batch size is tried with one worker on the first this many events (a fresh copy
    # each time); the two-worker run resolves the first ``resolve_events`` (0: all of them).
    # At the ~400-900 events/s measured, all of 1,000,000 would take 20-40 minutes alone.
    trial_events: int = field(
        default_factory=lambda: _scaled("BENCH_IDENTITY_TRIAL_EVENTS", 20_000)
    )
    resolve_events: int = field(
        default_factory=lambda: _scaled("BENCH_IDENTITY_RESOLVE_EVENTS", 150_000)
    )
    batch_sizes: tuple[int, ...] = field(
        default_factory=lambda: tuple(
            int(size)
            for size in os.environ.get("BENCH_IDENTITY_BATCH_SIZES", "1000,5000").split(",")
        )
    )
    client_procs: int = field(default_factory=lambda: env_int("BENCH_CLIENT_PROCS", 2))
    lookup_rate: int = field(default_factory=lambda: env_int("BENCH_LOOKUP_RATE", 500))
    lookup_duration: int = field(default_factory=lambda: env_int("BENCH_LOOKUP_DURATION", 15))
    lookup_low_rate: int = field(default_factory=lambda: env_int("BENCH_LOOKUP_LOW_RATE", 100))
    lookup_connections: int = field(default_factory=lambda: env_int("BENCH_LOOKUP_CONNECTIONS", 24))
    lag_rate: int = field(default_factory=lambda: env_int("BENCH_LAG_RATE", 10_000))
    lag_duration: int = field(default_factory=lambda: env_int("BENCH_LAG_DURATION", 30))
    lag_low_rate: int = field(default_factory=lambda: env_int("BENCH_LAG_LOW_RATE", 1_000))
    lag_drain: int = field(default_factory=lambda: env_int("BENCH_LAG_DRAIN", 15))
    lag_connections: int = field(default_factory=lambda: env_int("BENCH_LAG_CONNECTIONS", 8))
    lag_poll_ms: int = field(default_factory=lambda: env_int("BENCH_LAG_POLL_MS", 50))
    redis_url: str = field(
        default_factory=lambda: os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")
    )
    redis_db: int = field(default_factory=lambda: env_int("BENCH_REDIS_DB", 11))
    database: str = field(
        default_factory=lambda: os.environ.get("BENCH_IDENTITY_DB", "cdp_bench_identity")
    )
    seed: int = 20261124


_context: dict[str, str] = {}


def context() -> dict[str, str]:
    """Run details for BENCHMARKS.md (filled in by ``run``)."""
    return dict(_context)


def _log(message: str) -> None:
    print(f"[identity {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- environment --------------------------------------------------------------------------------
def _bench_env(cfg: Settings, url: str) -> dict[str, str]:
    """Django's environment for every process here: the bench database, this benchmark's own
    Redis databases as broker and cache (what ingestion enqueues stays here), no rate limits
    (they would cap the load generator, not measure the server; a one-second window keeps the
    token throttle's history short)."""
    return _django_env(url) | {
        "DJANGO_SETTINGS_MODULE": "cdp.settings",
        "CDP_API_RATE_LIMIT": "1000000/s",
        "CDP_INGEST_RATE_LIMIT": "0",
        "CELERY_BROKER_URL": f"{cfg.redis_url}/{cfg.redis_db}",
        "CACHE_URL": f"{cfg.redis_url}/{cfg.redis_db + 1}",
    }


def _django_ready() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdp.settings")
    import django

    django.setup()


def _close_django() -> None:
    from django.db import connections

    connections.close_all()


def _scalar(conn: psycopg.Connection[Any], query: str) -> Any:
    row = conn.execute(query).fetchone()
    return None if row is None else row[0]


def _drop_database(server: str, name: str) -> None:
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def clone_database(server: str, template: str, name: str) -> str:
    """A fresh copy of ``template`` named ``name`` (file copy: no WAL for the whole database)."""
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    return f"{server}/{name}"


# --- a seeded population ----------------------------------------------------------------------
_FIRST = [
    "ada",
    "grace",
    "alan",
    "edsger",
    "barbara",
    "ken",
    "linus",
    "margaret",
    "donald",
    "radia",
]
_LAST = ["lovelace", "hopper", "turing", "dijkstra", "liskov", "thompson", "hamilton", "knuth"]
_AREAS = ["206", "312", "415", "503", "617", "646", "718", "919"]
_PAGES = ["/", "/pricing", "/blog/customer-data", "/products", "/cart", "/account/settings"]
_EVENTS = ["Product Viewed", "Product Added", "Checkout Started", "Order Completed", "Signed Up"]
_AGENTS = [
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 Version/17.1 Safari",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0.0.0 Safari",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
]


@dataclass
class Person:
    user_id: str | None
    anonymous_ids: list[str]
    emails: list[str]
    phone: str | None
    first_name: str
    last_name: str


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def population(people: int, rng: random.Random) -> list[Person]:
    """60 % identified (user id, 1-2 emails, some a family email shared with another person,
    35 % a phone); the others anonymous, a quarter of them with a newsletter email."""
    persons: list[Person] = []
    for index in range(people):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        devices = [_uuid(rng) for _ in range(rng.choices((1, 2, 3, 4), (45, 30, 15, 10))[0])]
        identified = rng.random() < 0.6
        emails: list[str] = []
        phone = None
        if identified:
            emails.append(f"{first}.{last}.{index}@example.com")
            if rng.random() < 0.12:
                emails.append(f"{first[0]}{last}{index}@work.example.org")
            if rng.random() < 0.35:
                phone = (
                    f"+1{rng.choice(_AREAS)}{rng.randrange(200, 1000)}{rng.randrange(10000):04d}"
                )
        elif rng.random() < 0.25:
            emails.append(f"{first}{index}@mail.example.net")
        persons.append(
            Person(
                user_id=f"user-{index:07d}" if identified else None,
                anonymous_ids=devices,
                emails=emails,
                phone=phone,
                first_name=first.title(),
                last_name=last.title(),
            )
        )
    # Families: 4 % of identified people share an address with another identified person (the
    # merge rules refuse joining two user ids: a conflict, kept on the edge).
    identified_people = [p for p in persons if p.user_id is not None]
    for family in range(len(identified_people) // 50):
        a, b = rng.sample(identified_people, 2)
        shared = f"family.{family}@home.example.net"
        a.emails.append(shared)
        b.emails.append(shared)
    return persons


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def person_message(person: Person, rng: random.Random, moment: datetime) -> dict[str, Any]:
    """One analytics.js-like message of this person at ``moment``."""
    device = rng.choice(person.anonymous_ids)
    page = rng.choice(_PAGES)
    message: dict[str, Any] = {
        "messageId": _uuid(rng),
        "anonymousId": device,
        "timestamp": _iso(moment),
        "sentAt": _iso(moment + timedelta(milliseconds=rng.randrange(5, 900))),
        "context": {
            "library": {"name": "analytics.js", "version": "npm:next-1.64.0"},
            "page": {"path": page, "referrer": "https://www.google.com/"},
            "userAgent": rng.choice(_AGENTS),
            "locale": rng.choice(["en-US", "de-DE", "fr-FR"]),
        },
    }
    logged_in = person.user_id is not None and rng.random() < 0.65
    roll = rng.random()
    if roll < 0.20:
        traits: dict[str, Any] = {"plan": rng.choice(["free", "pro", "enterprise"])}
        if person.emails:
            traits["email"] = rng.choice(person.emails)
        if person.user_id is not None:
            message["userId"] = person.user_id
            traits.update(firstName=person.first_name, lastName=person.last_name)
            if person.phone and rng.random() < 0.5:
                traits["phone"] = person.phone
        message.update(type="identify", traits=traits)
        return message
    if roll < 0.23 and person.user_id is not None:
        message.update(type="alias", userId=person.user_id, previousId=device)
        return message
    if logged_in:
        message["userId"] = person.user_id
    if roll < 0.28:
        message.update(type="group", groupId=f"account-{rng.randrange(5000)}")
    elif roll < 0.78:
        message.update(
            type="track",
            event=rng.choice(_EVENTS),
            properties={
                "product_id": f"sku-{rng.randrange(1000)}",
                "price": round(rng.uniform(5, 300), 2),
                "currency": "USD",
            },
        )
    else:
        message.update(type="page", name=page.strip("/") or "home", properties={"title": "Shop"})
    return message


@dataclass
class Dataset:
    persons: list[Person]
    order: list[int]  # person index of each event, in event order
    start: datetime
    step: timedelta
    seed: int
    # Position of the first event carrying each user id / email (lookups ask for resolved ones).
    user_ids: dict[str, int] = field(default_factory=dict)
    emails: dict[str, int] = field(default_factory=dict)

    def batches(self, size: int) -> Iterator[list[dict[str, Any]]]:
        """The events in order, ``size`` at a time; remembers the user ids and emails sent."""
        rng = random.Random(self.seed + 1)
        batch: list[dict[str, Any]] = []
        for position, person_index in enumerate(self.order):
            message = person_message(
                self.persons[person_index], rng, self.start + self.step * position
            )
            if "userId" in message:
                self.user_ids.setdefault(message["userId"], position)
            email = message.get("traits", {}).get("email")
            if email:
                self.emails.setdefault(email, position)
            batch.append(message)
            if len(batch) == size:
                yield batch
                batch = []
        if batch:
            yield batch


def dataset(cfg: Settings) -> Dataset:
    rng = random.Random(cfg.seed)
    persons = population(cfg.people, rng)
    # Every person has at least one event; the rest are spread with a long tail.
    weights = [rng.expovariate(1.0) ** 2 for _ in persons]
    extra = rng.choices(range(len(persons)), weights, k=max(0, cfg.events - len(persons)))
    order = (list(range(len(persons))) + extra)[: cfg.events]
    rng.shuffle(order)
    start = datetime.now(UTC) - timedelta(days=30)
    return Dataset(persons, order, start, timedelta(days=29) / max(1, cfg.events), cfg.seed)


def crm_records(data: Dataset, count: int, rng: random.Random) -> list[dict[str, Any]]:
    """85 % for a web person with an email (sometimes written differently), 15 % new people."""
    with_email = [p for p in data.persons if p.emails]
    records = []
    for index in range(count):
        record: dict[str, Any] = {"external_id": f"crm-{index:07d}", "country": "US"}
        if rng.random() < 0.85 and with_email:
            person = rng.choice(with_email)
            email = person.emails[0]
            record["email"] = email.upper() if rng.random() < 0.1 else email
            record.update(first_name=person.first_name, last_name=person.last_name)
            if person.phone and rng.random() < 0.5:
                record["phone"] = person.phone
        else:
            record.update(email=f"lead.{index}@corp.example", first_name="Lead", last_name="Crm")
        record["city"] = rng.choice(["Seattle", "Chicago", "Boston", "Portland"])
        records.append(record)
    return records


# --- load through the ingestion path --------------------------------------------------------------
@dataclass
class Loaded:
    events: int
    event_seconds: float
    records: int
    record_seconds: float
    web_source: int
    write_key: str


def load(cfg: Settings, data: Dataset) -> Loaded:
    from cdp.ingestion.services import events_ingest, records_upsert, source_create

    web = source_create(name="web")
    crm = source_create(name="crm")
    accepted, seconds = 0, 0.0
    for number, batch in enumerate(data.batches(INGEST_BATCH)):
        started = time.perf_counter()
        result = events_ingest(source_id=web.source.pk, messages=batch)
        seconds += time.perf_counter() - started
        if result.rejected:
            raise RuntimeError(f"events rejected: {[e.as_dict() for e in result.rejected[:3]]}")
        accepted += result.accepted
        if number % 200 == 0:
            _log(f"loaded {accepted:,} events ({accepted / max(seconds, 1e-9):,.0f}/s)")
    records = crm_records(data, cfg.records, random.Random(cfg.seed + 2))
    stored, record_seconds = 0, 0.0
    for start in range(0, len(records), INGEST_BATCH):
        started = time.perf_counter()
        upserted = records_upsert(source_id=crm.source.pk, records=records[start : start + 500])
        record_seconds += time.perf_counter() - started
        if upserted.rejected:
            raise RuntimeError(f"records rejected: {[e.as_dict() for e in upserted.rejected[:3]]}")
        stored += upserted.created + upserted.updated
    return Loaded(accepted, seconds, stored, record_seconds, web.source.pk, web.write_key)


# --- resolver runs (each in a fresh process: no key cache from another copy of the data) ---------
def _resolver_process(
    batch_size: int, max_batches: int | None, ready: Any, go: Any, out: Any, release: Any
) -> None:
    _django_ready()
    from django.db import connection

    from identity.normalization import identity_config
    from identity.services.resolution import resolve_pending

    connection.ensure_connection()
    identity_config()
    ready.put(os.getpid())
    go.wait()
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        result = resolve_pending(batch_size=batch_size, max_batches=max_batches)
        error = ""
    except Exception as exc:  # reported in the table, not lost in a child's stderr
        result, error = None, f"{type(exc).__name__}: {str(exc)[:200]}"
    out.put(
        {
            "seconds": time.perf_counter() - wall,
            "cpu": time.process_time() - cpu,
            "result": {} if result is None else dict(vars(result)),
            "error": error,
        }
    )
    release.wait(timeout=600)  # keep the backend alive until its CPU time is read


@dataclass
class ResolverRun:
    workers: int
    batch_size: int
    events: int
    seconds: float
    python_cpu: float
    db_cpu: float
    results: list[dict[str, Any]]
    errors: list[str]

    @property
    def per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    @property
    def records(self) -> int:
        return sum(r.get("records", 0) for r in self.results)


def resolver_run(
    *, workers: int, batch_size: int, database: str, events: int | None = None
) -> ResolverRun:
    """``workers`` processes running ``resolve_pending`` at once; with ``events``, each stops
    after its share of that many events (whole batches)."""
    ctx = mp.get_context("spawn")
    ready, out = ctx.Queue(), ctx.Queue()
    go, release = ctx.Event(), ctx.Event()
    max_batches = None if events is None else max(1, round(events / batch_size / workers))
    procs = [
        ctx.Process(
            target=_resolver_process,
            args=(batch_size, max_batches, ready, go, out, release),
            daemon=True,
        )
        for _ in range(workers)
    ]
    for proc in procs:
        proc.start()
    for _ in procs:
        ready.get(timeout=120)
    db_before = cpu_snapshot(0, database)["db"]
    started = time.perf_counter()
    go.set()
    reports = [out.get(timeout=3600) for _ in procs]
    seconds = time.perf_counter() - started
    db_cpu = cpu_snapshot(0, database)["db"] - db_before
    release.set()
    for proc in procs:
        proc.join(timeout=30)
    return ResolverRun(
        workers=workers,
        batch_size=batch_size,
        events=sum(r["result"].get("events", 0) for r in reports),
        seconds=seconds,
        python_cpu=sum(r["cpu"] for r in reports),
        db_cpu=db_cpu,
        results=[r["result"] for r in reports],
        errors=[r["error"] for r in reports if r["error"]],
    )


def event_mapping(url: str) -> bytes:
    """(id, received_at, identifier_id) of every resolved event, as COPY text."""
    buffer = bytearray()
    with (
        psycopg.connect(url) as conn,
        conn.cursor() as cursor,
        cursor.copy(
            "COPY (SELECT id, received_at, identifier_id FROM ingestion_event"
            " WHERE identifier_id IS NOT NULL) TO STDOUT"
        ) as copy,
    ):
        for chunk in copy:
            buffer += chunk
    return bytes(buffer)


def raw_update_baseline(url: str, mapping: bytes, batch_size: int) -> tuple[float, int, float]:
    """Events/s for ``UPDATE ingestion_event SET identifier_id`` from a precomputed mapping, one
    transaction per ``batch_size`` events in id order; also returns rows and backend CPU s."""
    database = url.rsplit("/", 1)[1]
    with psycopg.connect(url) as conn:
        conn.execute(
            "CREATE UNLOGGED TABLE bench_map (id bigint PRIMARY KEY, received_at timestamptz,"
            " identifier_id bigint)"
        )
        with conn.cursor() as cursor, cursor.copy("COPY bench_map FROM STDIN") as copy:
            copy.write(mapping)
        conn.execute("ANALYZE bench_map")
        conn.commit()
        ids = [row[0] for row in conn.execute("SELECT id FROM bench_map ORDER BY id").fetchall()]
        conn.commit()
        conn.execute("CHECKPOINT")
        conn.commit()
        bounds = [ids[i] for i in range(0, len(ids), batch_size)] + [ids[-1] + 1]
        cpu_before = cpu_snapshot(0, database)["db"]
        started = time.perf_counter()
        for low, high in itertools.pairwise(bounds):
            conn.execute(
                "UPDATE ingestion_event AS e SET identifier_id = m.identifier_id FROM bench_map m"
                " WHERE m.id >= %s AND m.id < %s AND e.id = m.id AND e.received_at = m.received_at",
                [low, high],
            )
            conn.commit()
        seconds = time.perf_counter() - started
        db_cpu = cpu_snapshot(0, database)["db"] - cpu_before
    return len(ids) / seconds, len(ids), db_cpu


def _rebuild_process(out: Any) -> None:
    _django_ready()
    from identity.services.rebuild import identity_rebuild

    started = time.perf_counter()
    result = identity_rebuild()
    out.put(
        {
            "total": time.perf_counter() - started,
            "seconds": result.seconds,
            "identifiers": result.identifiers,
            "edges": result.edges,
            "edges_added": result.edges_added,
            "components": result.components,
            "identifiers_moved": result.identifiers_moved,
            "edges_flipped": result.edges_flipped,
        }
    )


def rebuild_run() -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_rebuild_process, args=(out,), daemon=True)
    proc.start()
    report: dict[str, Any] = out.get(timeout=3600)
    proc.join(timeout=30)
    return report


def graph_counts(url: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        queries = {
            "identifiers": "SELECT count(*) FROM identity_identifier",
            "edges": "SELECT count(*) FROM identity_edge",
            "conflicts": "SELECT count(*) FROM identity_edge WHERE NOT applied",
            "profiles": "SELECT count(*) FROM identity_profile WHERE merged_into_id IS NULL",
            "unresolved": "SELECT count(*) FROM ingestion_event WHERE identifier_id IS NULL",
        }
        return {name: int(_scalar(conn, query)) for name, query in queries.items()}


# --- open-loop HTTP load ----------------------------------------------------------------------
def _schedule(rate_per_thread: float, offset: float, start: float, stop: float) -> Iterator[float]:
    """Send times of one thread: evenly spaced, never skipped when behind (open loop)."""
    interval = 1.0 / rate_per_thread
    moment = start + offset * interval
    while moment < stop:
        yield moment
        moment += interval


def _lookup_process(
    index: int,
    port: int,
    token: str,
    paths: list[str],
    connections: int,
    rate: float,
    ready: Any,
    go: Any,
    times: Any,
    out: Any,
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    ready.put(index)
    go.wait()
    start, measure_from, stop = times[0], times[1], times[2]
    latencies: list[list[float]] = [[] for _ in range(connections)]
    service: list[list[float]] = [[] for _ in range(connections)]
    completed = [0] * connections  # 200s that arrived inside the measured window
    errors: list[str] = []

    def drive(slot: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        rng = random.Random(index * 1000 + slot)
        offset = (index * connections + slot) / (times[3] * connections)
        for scheduled in _schedule(rate / connections, offset, start, stop):
            delay = scheduled - time.time()
            if delay > 0:
                time.sleep(delay)
            elif time.time() > stop:
                break  # behind schedule past the end: what is left was never served in time
            path = paths[rng.randrange(len(paths))]
            sent = time.time()
            try:
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                body = response.read()
                status = response.status
            except (OSError, http.client.HTTPException) as exc:
                status, body = 0, repr(exc).encode()
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            done = time.time()
            if status == 200 and measure_from <= done < stop:
                completed[slot] += 1
            if scheduled < measure_from:
                continue
            if status == 200:
                latencies[slot].append((done - scheduled) * 1000)
                service[slot].append((done - sent) * 1000)
            elif len(errors) < 5:
                errors.append(f"{status} {body[:200]!r}")
            else:
                errors.append("")
        conn.close()

    threads = [threading.Thread(target=drive, args=(slot,)) for slot in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.put(
        {
            "latencies": [ms for part in latencies for ms in part],
            "service": [ms for part in service for ms in part],
            "completed": sum(completed),
            "errors": errors,
        }
    )


@dataclass
class LookupPhase:
    per_s: float
    p50: float
    p95: float
    p99: float
    service_p95: float
    errors: int
    error_sample: str
    app_cpu_ms: float
    db_cpu_ms: float
    machine_busy: float


def lookup_load(
    cfg: Settings,
    *,
    rate: int,
    duration: int,
    port: int,
    token: str,
    paths: list[str],
    gunicorn_pid: int,
) -> LookupPhase:
    ctx = mp.get_context("spawn")
    ready, out = ctx.Queue(), ctx.Queue()
    go = ctx.Event()
    times = ctx.Array("d", 4)
    per_proc = rate / cfg.client_procs
    procs = [
        ctx.Process(
            target=_lookup_process,
            args=(
                i,
                port,
                token,
                paths[i :: cfg.client_procs],
                cfg.lookup_connections,
                per_proc,
                ready,
                go,
                times,
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
    warmup = 3
    start = time.time() + 0.3
    times[0], times[1] = start, start + warmup
    times[2], times[3] = start + warmup + duration, cfg.client_procs
    go.set()
    time.sleep(max(0.0, times[1] - time.time()))
    cpu_before = cpu_snapshot(gunicorn_pid, cfg.database)
    time.sleep(max(0.0, times[2] - time.time()))
    cpu_after = cpu_snapshot(gunicorn_pid, cfg.database)
    reports = [out.get(timeout=300) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    latencies = sorted(ms for r in reports for ms in r["latencies"])
    service = sorted(ms for r in reports for ms in r["service"])
    errors = [e for r in reports for e in r["errors"]]
    ok = max(sum(r["completed"] for r in reports), 1)
    return LookupPhase(
        per_s=sum(r["completed"] for r in reports) / duration,
        p50=_percentile(latencies, 0.50),
        p95=_percentile(latencies, 0.95),
        p99=_percentile(latencies, 0.99),
        service_p95=_percentile(service, 0.95),
        errors=len(errors),
        error_sample=next((e for e in errors if e), ""),
        app_cpu_ms=(cpu_after["app"] - cpu_before["app"]) / ok * 1000,
        db_cpu_ms=(cpu_after["db"] - cpu_before["db"]) / ok * 1000,
        machine_busy=(cpu_after["machine"] - cpu_before["machine"]) / duration,
    )


def lag_templates(data: Dataset, seed: int, count: int) -> list[str]:
    """Batch bodies of new events of known people; the first event's anonymousId and the first
    digits of every messageId are slots filled per request."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    bodies = []
    for _ in range(count):
        batch = [
            person_message(rng.choice(data.persons), rng, now - timedelta(seconds=1))
            for _ in range(LAG_BATCH)
        ]
        for message in batch:
            message["messageId"] = ID_SLOT + message["messageId"][8:]
        batch[0] = {
            "type": "track",
            "event": "Probe",
            "messageId": ID_SLOT + _uuid(rng)[8:],
            "anonymousId": PROBE_SLOT,
            "timestamp": _iso(now),
        }
        bodies.append(orjson.dumps({"batch": batch, "sentAt": _iso(now)}).decode())
    return bodies


def _lag_process(
    index: int,
    port: int,
    write_key: str,
    bodies: list[str],
    connections: int,
    rate: float,
    sample_every: int,
    ready: Any,
    go: Any,
    times: Any,
    probes: Any,
    out: Any,
) -> None:
    auth = "Basic " + b64encode(f"{write_key}:".encode()).decode()
    headers = {"Content-Type": "application/json", "Authorization": auth}
    ready.put(index)
    go.wait()
    start, stop = times[0], times[1]
    counts = [[0, 0] for _ in range(connections)]  # ok, errors
    errors: list[str] = []

    def drive(slot: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        rng = random.Random(index * 1000 + slot)
        offset = (index * connections + slot) / (times[2] * connections)
        for number, scheduled in enumerate(_schedule(rate / connections, offset, start, stop)):
            delay = scheduled - time.time()
            if delay > 0:
                time.sleep(delay)
            elif time.time() > stop:
                break  # behind schedule past the end: the server did not take the offered rate
            probe = f"probe-{index}-{slot}-{number}-{rng.getrandbits(32):08x}"
            body = (
                bodies[rng.randrange(len(bodies))]
                .replace(PROBE_SLOT, probe)
                .replace(ID_SLOT, os.urandom(4).hex())
            )
            try:
                conn.request("POST", "/v1/batch", body.encode(), headers)
                response = conn.getresponse()
                payload = response.read()
                status = response.status
            except (OSError, http.client.HTTPException) as exc:
                status, payload = 0, repr(exc).encode()
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            returned = time.time()
            if status == 200:
                counts[slot][0] += 1
                if number % sample_every == 0:
                    probes.put((probe, returned))
            else:
                counts[slot][1] += 1
                if len(errors) < 3:
                    errors.append(f"{status} {payload[:200]!r}")
        conn.close()

    threads = [threading.Thread(target=drive, args=(slot,)) for slot in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.put(
        {"ok": sum(c[0] for c in counts), "errors": sum(c[1] for c in counts), "sample": errors}
    )


@dataclass
class LagPhase:
    mode: str
    requests_per_s: float
    events_per_s: float
    probes: int
    unresolved: int
    p50: float
    p95: float
    p99: float
    max_lag: float
    backlog_end: int
    errors: int
    error_sample: str


def _poll_probes(
    url: str, probes: Any, *, load_done: Any, load_end: float, drain_until: float, poll_s: float
) -> tuple[list[float], int, int, int]:
    """Poll the probe events until the load is over and every probe is resolved (or
    ``drain_until`` passes); returns the lags, the probes never resolved, and the events stored
    and the unresolved ones when the load ended."""
    pending: dict[str, float] = {}
    lags: list[float] = []
    backlog = stored = -1
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            try:
                while True:
                    probe, returned = probes.get_nowait()
                    pending[probe] = returned
            except queue.Empty:
                pass
            if pending:
                rows = conn.execute(
                    "SELECT anonymous_id FROM ingestion_event"
                    " WHERE anonymous_id = ANY(%s) AND identifier_id IS NOT NULL",
                    [list(pending)],
                ).fetchall()
                seen = time.time()
                for (probe,) in rows:
                    lags.append(seen - pending.pop(probe))
            if backlog < 0 and time.time() >= load_end + 0.5:  # the last requests' answers
                stored = int(_scalar(conn, "SELECT count(*) FROM ingestion_event"))
                backlog = int(
                    _scalar(
                        conn, "SELECT count(*) FROM ingestion_event WHERE identifier_id IS NULL"
                    )
                )
            if backlog >= 0 and load_done() and (not pending or time.time() > drain_until):
                return lags, len(pending), stored, backlog
            time.sleep(poll_s)


def enqueue_hook_in_place() -> bool:
    """Whether ingestion schedules the resolver after it stores events."""
    sources = (ROOT / "cdp" / "ingestion").rglob("*.py")
    return any("resolution_schedule" in path.read_text() for path in sources)


def start_resolver_service(
    cfg: Settings, url: str, log: Path
) -> tuple[str, subprocess.Popen[bytes]]:
    """A Celery worker when ingestion enqueues resolver runs, else a resolve_batch loop."""
    env = _bench_env(cfg, url)
    broker = env["CELERY_BROKER_URL"]
    _redis_flush(cfg)  # the runs enqueued while loading, with no worker listening
    if enqueue_hook_in_place():
        command = [CELERY, "-A", "cdp", "worker", "-Q", "celery", "--concurrency", "1"]
        command += ["-l", "warning", "--without-gossip", "--without-mingle"]
        mode = f"Celery worker (concurrency 1, broker {broker}) fed by ingestion's enqueue hook"
    else:
        command = [PYTHON, "-m", "benchmarks.identity", "--resolve-loop"]
        mode = "a process calling resolve_batch in a loop (no enqueue-on-commit hook yet)"
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return mode, process


def _redis_flush(cfg: Settings) -> None:
    import redis

    for number in (cfg.redis_db, cfg.redis_db + 1):
        redis.Redis.from_url(f"{cfg.redis_url}/{number}").flushdb()


def stop_process(process: subprocess.Popen[bytes]) -> None:
    # A resolver worker finishes its batch on SIGTERM: give it longer than gunicorn.
    stop_process_group(process, timeout=40)


def resolve_loop() -> None:
    """The fallback resolver service: ``resolve_batch`` back to back, a short nap when idle."""
    _django_ready()
    from django.conf import settings

    from identity.services.resolution import resolve_batch

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    batch_size = settings.CDP_RESOLVER["BATCH_SIZE"]
    while not stopping.is_set():
        if resolve_batch(batch_size=batch_size).empty:
            time.sleep(0.02)


def lag_load(
    cfg: Settings,
    *,
    rate: int,
    duration: int,
    url: str,
    port: int,
    write_key: str,
    data: Dataset,
    mode: str,
) -> LagPhase:
    ctx = mp.get_context("spawn")
    ready, out, probes = ctx.Queue(), ctx.Queue(), ctx.Queue()
    go = ctx.Event()
    times = ctx.Array("d", 3)
    batches_per_s = rate / LAG_BATCH
    per_proc = batches_per_s / cfg.client_procs
    sample_every = max(1, round(batches_per_s / 20 / cfg.client_procs / cfg.lag_connections))
    procs = [
        ctx.Process(
            target=_lag_process,
            args=(
                i,
                port,
                write_key,
                lag_templates(data, cfg.seed + 100 + i, 64),
                cfg.lag_connections,
                per_proc,
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
        before = int(_scalar(conn, "SELECT count(*) FROM ingestion_event"))
    start = time.time() + 0.3
    times[0], times[1], times[2] = start, start + duration, cfg.client_procs
    go.set()
    reports: list[dict[str, Any]] = []

    def load_done() -> bool:
        while len(reports) < len(procs):
            try:
                reports.append(out.get_nowait())
            except queue.Empty:
                return False
        return probes.empty()

    lags, unresolved, after, backlog = _poll_probes(
        url,
        probes,
        load_done=load_done,
        load_end=times[1],
        drain_until=times[1] + cfg.lag_drain,
        poll_s=cfg.lag_poll_ms / 1000,
    )
    for proc in procs:
        proc.join(timeout=30)
    lags.sort()
    ok = sum(r["ok"] for r in reports)
    censored = lags + [float("inf")] * unresolved
    return LagPhase(
        mode=mode,
        requests_per_s=ok / duration,
        events_per_s=(after - before) / duration,
        probes=len(censored),
        unresolved=unresolved,
        p50=_percentile(censored, 0.50),
        p95=_percentile(censored, 0.95),
        p99=_percentile(censored, 0.99),
        max_lag=lags[-1] if lags else float("nan"),
        backlog_end=backlog,
        errors=sum(r["errors"] for r in reports),
        error_sample=next((s for r in reports for s in r["sample"]), ""),
    )


def lookup_paths(data: Dataset, seed: int, count: int, *, resolved: int) -> list[str]:
    """Lookups of identifiers that exist: user ids and emails of the first ``resolved`` events
    (with a margin: two workers resolve in id order only roughly), half each."""
    rng = random.Random(seed)
    before = int(resolved * 0.95)
    user_ids = sorted(value for value, first in data.user_ids.items() if first < before)
    emails = sorted(value for value, first in data.emails.items() if first < before)
    paths = [
        f"/v1/profiles/lookup?user_id={quote(value)}"
        for value in rng.sample(user_ids, min(count // 2, len(user_ids)))
    ]
    paths += [
        f"/v1/profiles/lookup?email={quote(value)}"
        for value in rng.sample(emails, min(count // 2, len(emails)))
    ]
    rng.shuffle(paths)
    return paths


def lookup_route_in_place() -> bool:
    urls = ROOT / "identity" / "api" / "urls.py"
    return urls.exists() and "profiles/lookup" in urls.read_text()


# --- the benchmark ----------------------------------------------------------------------------
def _fmt(value: float) -> str:
    return f"{value:,.0f}"


def _measure() -> tuple[list[Result], dict[str, str]]:
    cfg = Settings()
    server = server_url()
    seed_db = f"{cfg.database}_seed"
    _log(f"{cfg.people:,} people, {cfg.events:,} events, {cfg.records:,} records")
    url = recreate_database(server, cfg.database)
    _redis_flush(cfg)
    os.environ.update(_bench_env(cfg, url))
    _django_ready()

    data = dataset(cfg)
    loaded = load(cfg, data)
    _log(f"loaded in {loaded.event_seconds:.0f} s + {loaded.record_seconds:.0f} s")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
        conn.execute("CHECKPOINT")
        size = str(_scalar(conn, "SELECT pg_size_pretty(pg_database_size(current_database()))"))
        pg_version = str(_scalar(conn, "SHOW server_version"))
    _close_django()
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(seed_db))
        )
        conn.execute(
            sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                sql.Identifier(cfg.database), sql.Identifier(seed_db)
            )
        )

    runs: list[ResolverRun] = []
    for batch_size in cfg.batch_sizes:
        clone_database(server, seed_db, cfg.database)
        trial = resolver_run(
            workers=1, batch_size=batch_size, database=cfg.database, events=cfg.trial_events
        )
        runs.append(trial)
        _log(f"1 worker, batch {batch_size}: {trial.per_s:,.0f} events/s {trial.errors}")
    if all(r.errors for r in runs):
        raise RuntimeError(f"every resolver run failed: {runs[0].errors}")
    best = max(runs, key=lambda r: r.per_s)

    clone_database(server, seed_db, cfg.database)
    two = resolver_run(
        workers=2,
        batch_size=best.batch_size,
        database=cfg.database,
        events=cfg.resolve_events or None,
    )
    _log(f"2 workers, batch {best.batch_size}: {two.per_s:,.0f} events/s {two.errors}")
    counts = graph_counts(url)

    mapping = event_mapping(url)
    if not mapping:
        raise RuntimeError(f"the two-worker run resolved nothing: {two.errors}")
    raw_url = clone_database(server, seed_db, f"{cfg.database}_raw")
    raw_per_s, raw_rows, raw_db_cpu = raw_update_baseline(raw_url, mapping, best.batch_size)
    _drop_database(server, f"{cfg.database}_raw")
    _log(f"raw UPDATE baseline: {raw_per_s:,.0f} rows/s")

    rebuild = rebuild_run()
    _log(f"rebuild: {rebuild}")

    results = _resolver_results(cfg, loaded, runs, best, two, raw_per_s, raw_db_cpu / raw_rows)
    results += _rebuild_results(rebuild)

    log_dir = ROOT / ".cdp"
    log_dir.mkdir(exist_ok=True)
    if lookup_route_in_place():
        from cdp.api.services import api_token_create

        token = api_token_create(name="bench-lookup", scopes=["profiles:read"]).plaintext
        _close_django()
        paths = lookup_paths(data, cfg.seed + 3, 20_000, resolved=two.events)
        port = _free_port()
        server_process = start_gunicorn(url, port, log_dir / "bench-identity-gunicorn.log")
        try:
            for rate, duration in (
                (cfg.lookup_low_rate, min(cfg.lookup_duration, 8)),
                (cfg.lookup_rate, cfg.lookup_duration),
            ):
                lookup = lookup_load(
                    cfg,
                    rate=rate,
                    duration=duration,
                    port=port,
                    token=token,
                    paths=paths,
                    gunicorn_pid=server_process.pid,
                )
                _log(f"lookup at {rate} req/s: {lookup}")
                results += _lookup_results(lookup, offered=rate)
        finally:
            stop_gunicorn(server_process)
    else:
        results.append(Result("lookup", float("nan"), "", note="GET /v1/profiles/lookup missing"))

    if counts["unresolved"]:
        # The lag is for new events, not for a backlog the resolver never reached.
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DELETE FROM ingestion_event WHERE identifier_id IS NULL")
            conn.execute("VACUUM ANALYZE ingestion_event")
    mode, resolver_process = start_resolver_service(
        cfg, url, log_dir / "bench-identity-resolver.log"
    )
    port = _free_port()
    server_process = start_gunicorn(url, port, log_dir / "bench-identity-gunicorn.log")
    try:
        for rate, duration in (
            (cfg.lag_low_rate, min(cfg.lag_duration, 20)),
            (cfg.lag_rate, cfg.lag_duration),
        ):
            lag = lag_load(
                cfg,
                rate=rate,
                duration=duration,
                url=url,
                port=port,
                write_key=loaded.write_key,
                data=data,
                mode=mode,
            )
            _log(f"lag at {rate} events/s: {lag}")
            results += _lag_results(cfg, lag, offered=rate)
    finally:
        stop_gunicorn(server_process)
        stop_process(resolver_process)

    workers = os.environ.get("GUNICORN_WORKERS") or f"{(os.cpu_count() or 1) + 1} (default)"
    details = {
        "PostgreSQL": f"{pg_version} at {server.split('@')[-1]} (database {cfg.database}, "
        f"{size} after loading; each resolver run on a fresh copy of it)",
        "data": f"{cfg.people:,} people (seed {cfg.seed}), {loaded.events:,} events, "
        f"{loaded.records:,} CRM records; resolved: {counts.get('identifiers', 0):,} "
        f"identifiers, {counts.get('edges', 0):,} edges ({counts.get('conflicts', 0):,} refused"
        f" by a merge rule), {counts.get('profiles', 0):,} live profiles, "
        f"{counts.get('unresolved', 0):,} events left unresolved (deleted before the lag test)",
        "resolver runs": f"1 worker: the first {cfg.trial_events:,} events per batch size "
        f"({', '.join(map(str, cfg.batch_sizes))}); 2 workers: the first "
        f"{two.events:,} events; each run on a fresh copy of the loaded database; records are "
        "claimed next to events, up to one batch size of each per transaction",
        "server": f"gunicorn gthread, workers {workers}, threads "
        f"{os.environ.get('GUNICORN_THREADS', '2')}; CDP_ENV=development, DEBUG=0, rate limits "
        "off (CDP_API_RATE_LIMIT, CDP_INGEST_RATE_LIMIT=0)",
        "load": f"{cfg.client_procs} load-generator processes on the same machine (they share the"
        f" 2 cores): lookups open-loop at {cfg.lookup_low_rate} then {cfg.lookup_rate} req/s "
        f"over {cfg.lookup_connections} connections each, 3 s warm-up + up to "
        f"{cfg.lookup_duration} s; ingest open-loop at {cfg.lag_low_rate:,} then "
        f"{cfg.lag_rate:,} events/s ({LAG_BATCH}-event batches, {cfg.lag_connections} "
        f"connections each) for up to {cfg.lag_duration} s, probes polled for up to "
        f"{cfg.lag_drain} s more",
        "lag resolver": lag.mode,
        "code": "a snapshot of the working tree taken at the start (edits made meanwhile stay out)",
        "noise": "other work runs on this machine; throughput and latency move by tens of %"
        " between identical runs, the CPU-per-event rows less",
    }
    return results, details


def _resolver_results(
    cfg: Settings,
    loaded: Loaded,
    runs: list[ResolverRun],
    best: ResolverRun,
    two: ResolverRun,
    raw_per_s: float,
    raw_db_cpu_per_row: float,
) -> list[Result]:
    others = "; ".join(f"batch {r.batch_size}: {_fmt(r.per_s)}/s" for r in runs if r is not best)
    errors = "; ".join(best.errors + two.errors)
    return [
        Result(
            "load: events_ingest (500/call, in-process)",
            loaded.events / loaded.event_seconds,
            "events/s",
            note="context: validation + PII encryption + insert, one process",
        ),
        Result(
            "load: records_upsert (500/call)", loaded.records / loaded.record_seconds, "records/s"
        ),
        Result(
            "resolver: 1 worker",
            best.per_s,
            "events/s",
            note=f"best batch size {best.batch_size}; {others}; {_fmt(best.events)} events "
            f"(+ {_fmt(best.records)} CRM records) in {best.seconds:.0f} s",
        ),
        Result(
            "resolver: 2 worker processes",
            two.per_s,
            "events/s",
            f">= {TARGET_RESOLVE_PER_S:,}",
            two.per_s >= TARGET_RESOLVE_PER_S and not two.errors,
            note=f"batch {two.batch_size}; {_fmt(two.events)} events (+ {_fmt(two.records)} "
            f"records) in {two.seconds:.0f} s; lock retries "
            f"{sum(r.get('lock_retries', 0) for r in two.results)} {errors}".strip(),
        ),
        Result(
            "resolver: Python CPU per 1,000 events + records",
            best.python_cpu / max(best.events + best.records, 1) * 1e6,
            "ms",
            note=f"1 worker, batch {best.batch_size}",
        ),
        Result(
            "resolver: PostgreSQL CPU per 1,000 events + records",
            best.db_cpu / max(best.events + best.records, 1) * 1e6,
            "ms",
            note="backends of the bench database",
        ),
        Result(
            "raw SQL: UPDATE identifier_id from a mapping",
            raw_per_s,
            "events/s",
            note=f"one connection, {best.batch_size} rows per transaction; "
            f"{raw_db_cpu_per_row * 1e6:.0f} ms backend CPU per 1,000",
        ),
        Result("resolver (1 worker) / raw UPDATE", best.per_s / raw_per_s, "x"),
    ]


def _rebuild_results(rebuild: dict[str, Any]) -> list[Result]:
    seconds = rebuild["seconds"]
    graph = float(seconds.get("graph", float("nan")))
    return [
        Result(
            "rebuild_identity: graph step",
            graph,
            "s",
            f"< {TARGET_GRAPH_S:.0f}",
            graph < TARGET_GRAPH_S,
            note=f"{rebuild['identifiers']:,} identifiers, {rebuild['edges']:,} edges, "
            f"{rebuild['components']:,} components",
        ),
        Result(
            "rebuild_identity: evidence step",
            float(seconds.get("evidence", 0)),
            "s",
            note=f"{rebuild['edges_added']:,} edges added",
        ),
        Result("rebuild_identity: load step", float(seconds.get("load", 0)), "s"),
        Result(
            "rebuild_identity: write step",
            float(seconds.get("write", 0)),
            "s",
            note=f"{rebuild['identifiers_moved']:,} identifiers moved, "
            f"{rebuild['edges_flipped']:,} edges flipped",
        ),
        Result("rebuild_identity: total", float(rebuild["total"]), "s"),
    ]


def _lookup_results(lookup: LookupPhase, *, offered: int) -> list[Result]:
    at = f"lookup @ {offered} req/s"
    if offered < TARGET_LOOKUP_RATE:
        return [
            Result(f"{at}: achieved", lookup.per_s, "req/s", note=f"{lookup.errors} errors"),
            Result(f"{at}: p50 / p95 latency", lookup.p50, "ms", note=f"p95 {lookup.p95:.1f} ms"),
            Result(f"{at}: gunicorn CPU per request", lookup.app_cpu_ms, "ms"),
            Result(f"{at}: PostgreSQL CPU per request", lookup.db_cpu_ms, "ms"),
        ]
    fast_enough = lookup.per_s >= TARGET_LOOKUP_RATE * 0.98
    return [
        Result(
            f"{at}: achieved",
            lookup.per_s,
            "req/s",
            f">= {TARGET_LOOKUP_RATE}",
            fast_enough,
            note=f"{lookup.errors} errors {lookup.error_sample}".strip(),
        ),
        Result(f"{at}: p50 latency", lookup.p50, "ms", note="from the scheduled send time"),
        Result(
            f"{at}: p95 latency",
            lookup.p95,
            "ms",
            f"< {TARGET_LOOKUP_P95_MS:.0f} at >= {TARGET_LOOKUP_RATE} req/s",
            lookup.p95 < TARGET_LOOKUP_P95_MS and fast_enough,
            note=f"sent to answered: p95 {lookup.service_p95:.1f} ms",
        ),
        Result(f"{at}: p99 latency", lookup.p99, "ms"),
        Result(f"{at}: gunicorn CPU per request", lookup.app_cpu_ms, "ms"),
        Result(f"{at}: PostgreSQL CPU per request", lookup.db_cpu_ms, "ms"),
        Result(
            f"{at}: machine CPU busy",
            lookup.machine_busy,
            "cores",
            note=f"of {os.cpu_count()}; includes the load generator and other processes",
        ),
    ]


def _lag_results(cfg: Settings, lag: LagPhase, *, offered: int) -> list[Result]:
    at = f"lag @ {offered:,} events/s"
    target = offered >= cfg.lag_rate
    unresolved = f", {lag.unresolved} unresolved {cfg.lag_drain} s after the load" * bool(
        lag.unresolved
    )
    return [
        Result(
            f"{at}: ingest achieved",
            lag.events_per_s,
            "events/s",
            note=f"{lag.errors} errors {lag.error_sample}".strip(),
        ),
        Result(f"{at}: p50 event -> profile", lag.p50, "s"),
        Result(
            f"{at}: p95 event -> profile",
            lag.p95,
            "s",
            f"< {TARGET_LAG_P95_S:.0f}" if target else "",
            lag.p95 < TARGET_LAG_P95_S if target else None,
            note=f"{lag.probes:,} probes{unresolved}; polled every {cfg.lag_poll_ms} ms",
        ),
        Result(f"{at}: p99 event -> profile", lag.p99, "s", note=f"max seen {lag.max_lag:.1f} s"),
        Result(f"{at}: events unresolved at the end", float(lag.backlog_end), "events"),
    ]


def snapshot_tree(into: Path) -> None:
    """Copy the working tree (tracked and untracked files, as they are now) into ``into``, with
    ``.venv`` and ``.cdp`` linked: every process of the run then imports the same code and
    migrates the same schema, even while the tree is being edited meanwhile."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        source = ROOT / name.decode()
        if source.is_file():
            target = into / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    (ROOT / ".cdp").mkdir(exist_ok=True)
    for linked in (".venv", ".cdp"):
        (into / linked).symlink_to(ROOT / linked)


def run() -> list[Result]:
    """Measure in a child process (Django set up on this benchmark's database only), on a
    snapshot of the working tree."""
    with tempfile.TemporaryDirectory(prefix="cdp-bench-identity-") as tmp:
        tree = Path(tmp) / "tree"
        snapshot_tree(tree)
        out = Path(tmp) / "identity.json"
        python = str(tree / ".venv" / "bin" / "python")
        done = subprocess.run(
            [python, "-m", "benchmarks.identity", "--child", str(out)],
            cwd=tree,
            check=False,
        )
        if done.returncode or not out.exists():
            raise RuntimeError(f"benchmarks.identity child failed ({done.returncode})")
        payload = json.loads(out.read_text())
    _context.clear()
    _context.update(payload["context"])
    return [Result(**row) for row in payload["results"]]


def _child(out: Path) -> None:
    results, details = _measure()
    out.write_text(
        json.dumps({"results": [vars(r) for r in results], "context": details}, default=str)
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--resolve-loop"]:
        resolve_loop()
    elif sys.argv[1:2] == ["--child"]:
        _child(Path(sys.argv[2]))
    else:
        from benchmarks import table

        print(table(run()))
        print("\n".join(f"- {key}: {value}" for key, value in context().items()))
