"""Members API measurements, for a segments benchmark's child process (Django set up on a
migrated benchmark database) or on their own:

    DATABASE_URL=postgres://.../cdp_bench_x .venv/bin/python manage.py migrate
    DATABASE_URL=postgres://.../cdp_bench_x .venv/bin/python -m benchmarks._segments_api

``members_api_pages``: ``BENCH_MEMBERS_PROFILES`` (1,000,000) profiles written with one
``INSERT ... SELECT generate_series`` (traits: a plan, a number, and an email marked PII as a
resolved profile carries it), every other one a member of one segment (``analytics``: allowed
by default, so the consent filter's NOT EXISTS runs for every row). Then pages of
``GET /v1/segments/{id}/members`` through Django's test client (the whole stack: bearer token,
scopes, segment and guardrail, consent filter, cursor, traits, rendering; no network), followed
from the first page through ``next``, at ``limit=100`` and ``limit=1000``, and ``as_of`` pages.
PII stays masked (the token lacks pii:read), so no decryption is timed.
"""

from __future__ import annotations

import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from benchmarks import Result, env_int

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
TARGET_MS = 50.0


def _log(message: str) -> None:
    print(f"[segments-api {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _load(profiles: int) -> int:
    from django.db import connection

    from segments.models import Segment

    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO identity_profile (created_at, updated_at, event_count, traits) "
            "SELECT %s, %s, 0, jsonb_build_object("
            "'plan', jsonb_build_object('value', CASE WHEN g %% 2 = 0 THEN 'pro' ELSE 'free' END,"
            " 'pii', false), 'n', jsonb_build_object('value', g, 'pii', false),"
            " 'email', jsonb_build_object('pii', true)) "
            "FROM generate_series(1, %s) AS g",
            [T0, T0, profiles],
        )
        segment = Segment.objects.create(
            name=f"bench members {time.time_ns()}",
            purpose="analytics",
            min_size=100,
            definition={"trait": "plan", "op": "eq", "value": "pro"},
            member_count=profiles // 2,
            too_small=False,
            computed_at=T0,
            computed_version=1,
        )
        cursor.execute(
            "INSERT INTO segments_membership (segment_id, profile_id, entered_at, exit_reason) "
            "SELECT %s, id, %s, '' FROM identity_profile "
            "WHERE (traits -> 'plan' ->> 'value') = 'pro'",
            [segment.pk, T0 + timedelta(days=1)],
        )
        entry_id = _one_consent_entry()
        # A third of the people chose for analytics, one in ten of them denied: the consent
        # filter then reads real index entries (every state points at one real entry: the
        # filter reads states only).
        cursor.execute(
            "INSERT INTO consent_consentstate "
            "(profile_id, purpose, status, entry_id, given_at, opted_out_identifiers, updated_at) "
            "SELECT id, 'analytics', CASE WHEN id %% 30 = 0 THEN 'denied' ELSE 'granted' END, "
            "%s, %s, '[]'::jsonb, %s FROM identity_profile WHERE id %% 3 = 0 "
            "ON CONFLICT DO NOTHING",
            [entry_id, T0, T0],
        )
        for table in ("identity_profile", "segments_membership", "consent_consentstate"):
            cursor.execute(f"ANALYZE {table}")
    return segment.pk


def _one_consent_entry() -> int:
    """A consent entry recorded through the real services (ingest, resolve, consent_record)."""
    import uuid

    from cdp.audit.models import AuditAction
    from cdp.ingestion.services import events_ingest, source_create
    from consent.models import ConsentChannel, ConsentEntry
    from consent.services import ChoiceInput, consent_record
    from identity.selectors import identifier_find
    from identity.services.resolution import resolve_pending

    source = source_create(name=f"bench-{uuid.uuid4().hex[:8]}").source
    message = {"type": "identify", "messageId": uuid.uuid4().hex, "userId": "bench-consent"}
    events_ingest(source_id=source.pk, messages=[message], received_at=T0)
    resolve_pending(batch_size=10)
    identifier = identifier_find(kind="user_id", raw_value="bench-consent")
    assert identifier is not None
    choice = ChoiceInput(purpose="analytics", status="granted", channel=ConsentChannel.API)
    consent_record(
        identifier_id=identifier.pk,
        choices=[choice],
        actor="bench",
        audit_action=AuditAction.CONSENT_RECORDED,
    )
    return ConsentEntry.objects.filter(identifier_id=identifier.pk).values_list("pk", flat=True)[0]


def _pages(client: Any, url: str, pages: int) -> list[float]:
    timings: list[float] = []
    next_url: str | None = url
    while next_url and len(timings) < pages:
        started = time.perf_counter()
        response = client.get(next_url)
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.content[:200]
        next_url = response.json()["next"]
    return timings


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def members_api_pages() -> list[Result]:
    from django.test import Client

    from cdp.api.services import api_token_create

    profiles = env_int("BENCH_MEMBERS_PROFILES", 1_000_000)
    pages = env_int("BENCH_MEMBERS_PAGES", 200)
    _log(f"loading {profiles:,} profiles, half of them members")
    started = time.perf_counter()
    segment_id = _load(profiles)
    _log(f"loaded in {time.perf_counter() - started:.1f} s")
    token = api_token_create(name="bench", scopes=["segments:read"]).plaintext
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}", SERVER_NAME="127.0.0.1")
    base = f"/v1/segments/{segment_id}/members"
    _pages(client, f"{base}?limit=100", 5)  # warm: the token's first use, caches, plans
    runs = {
        "limit=100": _pages(client, f"{base}?limit=100", pages),
        "limit=1000": _pages(client, f"{base}?limit=1000", max(pages // 4, 20)),
        "as_of, limit=100": _pages(
            client, f"{base}?limit=100&as_of={(T0 + timedelta(days=2)):%Y-%m-%dT%H:%M:%SZ}", pages
        ),
    }
    results = []
    for name, timings in runs.items():
        p95 = _p95(timings)
        results.append(
            Result(
                metric=f"members API page ({name}) p95",
                value=p95,
                unit="ms",
                target=f"< {TARGET_MS:.0f} ms" if name == "limit=100" else "",
                met=p95 < TARGET_MS if name == "limit=100" else None,
                note=f"{len(timings)} pages, p50 {statistics.median(timings):.1f} ms, "
                f"{profiles // 2:,} members of {profiles:,} profiles",
            )
        )
    return results


MEASUREMENTS = [members_api_pages]

if __name__ == "__main__":
    import os

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdp.settings")
    django.setup()
    from benchmarks import table

    print(table(members_api_pages()))
