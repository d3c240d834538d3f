"""Privacy requests: access (DSAR) export time and size (erasure measurements join the list).

What it does (``.venv/bin/python -m benchmarks privacy``), in a child process of its own with
Django set up on a fresh database ``cdp_bench_privacy`` (dropped first; ``BENCH_PRIVACY_DB``) on
the server ``benchmarks.ingest`` picks, migrated. Each function of ``MEASUREMENTS`` then runs in
order on that database, loads the people it needs through the real ingestion path and resolver,
and returns its rows of the table:

- ``access_export``: one person with ``BENCH_ACCESS_EVENTS`` (10,000) events, every one carrying
  PII (``context.ip``; every 20th is an identify with email, name and phone traits), plus a CRM
  record, resolved into one profile. Measured: building the zip (``access_export_write``, median
  of ``BENCH_PRIVACY_REPEAT`` = 3), the whole worker run (``access_run``: claim, build, encrypt
  under a fresh data key, store, complete, audit), the download (``access_export_open``: decrypt
  and audit) from a cold key cache, the zip's and the stored ciphertext's size, and the peak of
  Python memory allocated while building (``tracemalloc``, a separate run).

- ``erasure_one_person`` and ``erasure_batch`` (``benchmarks/_privacy_erasure.py``): one person
  with 10,000 events, and 1,000 people in one batch, each beside a plain-DELETE baseline.

Knobs: ``BENCH_ACCESS_EVENTS`` (10,000), ``BENCH_PRIVACY_REPEAT`` (3), ``BENCH_PRIVACY_DB``;
``BENCH_ERASURE_EVENTS`` (10,000), ``BENCH_ERASURE_PEOPLE`` (1,000),
``BENCH_ERASURE_PERSON_EVENTS`` (15).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks import ROOT, Result, env_int
from benchmarks._privacy_erasure import MEASUREMENTS as ERASURE_MEASUREMENTS
from benchmarks.ingest import PYTHON, recreate_database, server_url

TITLE = "Privacy: access (DSAR) export, erasure"
INGEST_BATCH = 500
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

_context: dict[str, str] = {}


def context() -> dict[str, str]:
    """Run details for BENCHMARKS.md (filled in by ``run``)."""
    return dict(_context)


def _log(message: str) -> None:
    print(f"[privacy {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _timed(call: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = call()
    return time.perf_counter() - started, value


# --- data -------------------------------------------------------------------------------------
def _person_messages(user_id: str, events: int) -> list[dict[str, Any]]:
    """``events`` messages of one person: tracks and pages with ``context.ip``, an identify with
    PII traits every 20th."""
    messages: list[dict[str, Any]] = []
    for i in range(events):
        at = (T0 + timedelta(seconds=30 * i)).isoformat()
        base: dict[str, Any] = {
            "messageId": uuid.uuid4().hex,
            "userId": user_id,
            "timestamp": at,
            "context": {"ip": f"198.51.100.{i % 250}", "locale": "en-GB"},
        }
        if i % 20 == 0:
            base |= {
                "type": "identify",
                "traits": {
                    "email": f"{user_id}@example.com",
                    "name": "Ada Lovelace",
                    "phone": "+1 415 555 0100",
                    "plan": "pro" if i % 40 else "free",
                },
            }
        elif i % 5 == 0:
            base |= {"type": "page", "name": "Pricing", "properties": {"path": "/pricing"}}
        else:
            base |= {
                "type": "track",
                "event": "Product Viewed",
                "properties": {"sku": f"SKU-{i % 97}", "price": 19.99, "currency": "EUR"},
            }
        messages.append(base)
    return messages


def _load_person(user_id: str, events: int) -> None:
    from cdp.ingestion.selectors import source_by_name
    from cdp.ingestion.services import events_ingest, records_upsert, source_create
    from identity.services.resolution import resolve_pending

    web = source_by_name("web") or source_create(name="web").source
    crm = source_by_name("crm") or source_create(name="crm").source
    messages = _person_messages(user_id, events)
    for start in range(0, len(messages), INGEST_BATCH):
        events_ingest(
            source_id=web.pk, messages=messages[start : start + INGEST_BATCH], received_at=T0
        )
    records_upsert(
        source_id=crm.pk,
        records=[{"external_id": f"C-{user_id}", "email": f"{user_id}@example.com"}],
    )
    resolve_pending(batch_size=1000)


# --- measurements -------------------------------------------------------------------------------
def access_export() -> list[Result]:
    from cdp.crypto.key_cache import data_key_cache
    from consent.models import PrivacyRequestKind
    from consent.privacy.access import access_export_write, access_subject
    from consent.privacy.access.run import access_run
    from consent.privacy.access.storage import access_export_open
    from consent.privacy.requests import privacy_request_create
    from identity.selectors import identifier_find

    events = env_int("BENCH_ACCESS_EVENTS", 10_000)
    repeat = env_int("BENCH_PRIVACY_REPEAT", 3)
    user_id = "bench-access"
    _log(f"loading a person with {events:,} events")
    load_seconds, _ = _timed(lambda: _load_person(user_id, events))
    identifier = identifier_find(kind="user_id", raw_value=user_id)
    assert identifier is not None and identifier.profile_id is not None
    subject = access_subject(profile_id=identifier.profile_id)

    builds = []
    for _ in range(repeat):
        data_key_cache.clear()
        seconds, built = _timed(lambda: access_export_write(subject))
        builds.append(seconds)
    assert built.counts["events"] == events, built.counts
    tracemalloc.start()
    access_export_write(subject)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    request = privacy_request_create(
        kind=PrivacyRequestKind.ACCESS, subject=("user_id", user_id), requested_by="bench"
    )
    data_key_cache.clear()
    run_seconds, done = _timed(lambda: access_run(request.pk))
    assert done is not None
    data_key_cache.clear()
    open_seconds, opened = _timed(lambda: access_export_open(request_id=request.pk, actor="bench"))
    stored = len(bytes(done.export_ciphertext or b""))
    build = statistics.median(builds)
    _context["access export person"] = (
        f"{events:,} events (all with PII), {built.counts['identifiers']} identifiers, "
        f"{built.counts['records']} CRM record; loaded and resolved in {load_seconds:.0f} s"
    )
    note = f"{events:,} events"
    return [
        Result("access export: build the zip", build, "s", note=f"median of {repeat}; {note}"),
        Result("access export: events per second", events / build, "events/s", note=note),
        Result(
            "access export: worker run (build, encrypt, store, audit)",
            run_seconds,
            "s",
            note=note,
        ),
        Result(
            "access export: download (decrypt, audit)", open_seconds * 1000, "ms", note="cold key"
        ),
        Result("access export: zip size", len(opened.content) / 1e3, "KB", note=note),
        Result("access export: stored ciphertext", stored / 1e3, "KB", note="zip + 37 bytes (GCM)"),
        Result(
            "access export: peak Python memory while building",
            peak / 1e6,
            "MB",
            note="tracemalloc; the zip itself included",
        ),
    ]


# Each runs in the child on the one bench database, in order, and returns its table rows.
MEASUREMENTS: list[Callable[[], list[Result]]] = [access_export, *ERASURE_MEASUREMENTS]


# --- process plumbing ---------------------------------------------------------------------------
def run() -> list[Result]:
    """Measure in a child process with Django set up on this benchmark's database only."""
    name = os.environ.get("BENCH_PRIVACY_DB", "cdp_bench_privacy")
    url = recreate_database(server_url(), name)
    env = dict(os.environ, DATABASE_URL=url, CDP_ENV="development", DEBUG="0")
    env |= {"DJANGO_SETTINGS_MODULE": "cdp.settings", "CDP_RESOLVER_ENQUEUE_ON_INGEST": "0"}
    with tempfile.TemporaryDirectory(prefix="cdp-bench-privacy-") as tmp:
        out = Path(tmp) / "privacy.json"
        done = subprocess.run(
            [PYTHON, "-m", "benchmarks.privacy", "--child", str(out)],
            cwd=ROOT,
            env=env,
            check=False,
        )
        if done.returncode or not out.exists():
            raise RuntimeError(f"benchmarks.privacy child failed ({done.returncode})")
        payload = json.loads(out.read_text())
    _context.clear()
    _context.update(payload["context"])
    return [Result(**row) for row in payload["results"]]


def _child(out: Path) -> None:
    import django

    django.setup()
    results: list[Result] = []
    for measure in MEASUREMENTS:
        results += measure()
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
