"""The segments benchmark's population, loaded with COPY straight into the tables.

``load(...)`` writes, on a migrated empty database (Django set up on it):

- ``profiles`` rows of ``identity_profile`` with non-PII traits (``plan``, ``country``) in the
  stored survivorship shape (``{"plan": {"value": "pro", "pii": false, ...}}``);
- 1-3 identifiers each in ``identity_identifier``: an ``anonymous_id`` always, a ``user_id``
  for 60 % of people, an ``email`` for 40 %; real blind indexes (the resolver finds them when
  the live phase sends events for these people), random bytes as ``value_ciphertext``;
- one ``crypto_datakey`` row per identifier (the column is unique). The identifiers of the
  first ``real_key_profiles`` profiles get real wrapped keys (``data_keys_create``); every other
  row gets 61 random bytes as ``wrapped_key`` under the newest master key id, which satisfies
  the table's check constraint (``wrapped_key`` set while not destroyed). Nothing in this
  benchmark unwraps those: segment queries never decrypt, and the PII the members API reveals
  belongs to the real-key profiles only;
- ``events`` rows of ``ingestion_event``, anchored (``identifier_id``) as the resolver would:
  on the ``user_id`` identifier for 70 % of an identified person's events, else on the
  ``anonymous_id``; a page view 40 %, ``Search`` 8 %, ``Product Viewed`` 30 %, ``Product
  Added`` 12 %, ``Checkout Started`` 5 %, ``Order Completed`` 4 % (``revenue``: lognormal,
  median ~45), ``Signed Up`` 1 %; timestamps uniform over the last ``days`` days, received a few
  seconds later; people's activity is skewed (lognormal weights, sigma 1.6: a few heavy users,
  many with one or two events; everyone has at least one). The monthly partitions of
  ``received_at`` the data needs are created like ``cdp_ensure_event_partitions`` does (``LIKE
  ingestion_event``, then ``ATTACH PARTITION``), loaded before they are attached so their
  indexes are built once. Foreign-key triggers are off while loading
  (``session_replication_role = replica``): the rows are consistent by construction;
- consent: ``marketing_email`` granted for 35 % of people (one ``consent_consententry`` and its
  ``consent_consentstate`` each), ``analytics`` withdrawn for 5 %;
- then PII for the real-key profiles through the real path: an ``identify`` with ``email`` and
  ``name`` (and their plan and country) per person through ``events_ingest`` and the resolver,
  so the members API with pii:read has values to decrypt;
- ``ANALYZE``.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg

SEED = 20261201
PAGE_NAMES = ["Home", "Pricing", "Product", "Cart", "Blog"]
# (type, name, share of events)
EVENT_MIX: list[tuple[str, str, float]] = [
    ("page", "", 0.40),
    ("track", "Search", 0.08),
    ("track", "Product Viewed", 0.30),
    ("track", "Product Added", 0.12),
    ("track", "Checkout Started", 0.05),
    ("track", "Order Completed", 0.04),
    ("track", "Signed Up", 0.01),
]
PLANS = ["free", "free", "free", "pro", "pro", "enterprise"]
COUNTRIES = ["US", "US", "US", "GB", "DE", "FR", "NL", "ES", "BR", "IN"]
CHUNK = 500_000


@dataclass
class Loaded:
    profiles: int
    identifiers: int
    events: int
    consent_states: int
    seconds: dict[str, float]
    source_id: int
    write_key: str
    now: datetime
    user_ids: list[str]  # the user_id of every identified person (for the live load)


def _log(message: str) -> None:
    import sys

    print(f"[segments {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _copy(conn: psycopg.Connection[Any], statement: str, lines: Iterable[str]) -> None:
    with conn.cursor() as cursor, cursor.copy(statement) as copy:
        buffer = io.StringIO()
        for number, line in enumerate(lines, 1):
            buffer.write(line)
            if number % 50_000 == 0:
                copy.write(buffer.getvalue())
                buffer = io.StringIO()
        copy.write(buffer.getvalue())


def _ts(values: np.ndarray) -> list[str]:
    """datetime64[us] -> COPY text timestamps in UTC."""
    return [f"{s}+00" for s in np.datetime_as_string(values, unit="us")]


def load(
    url: str,
    *,
    profiles: int,
    events: int,
    days: int,
    real_key_profiles: int,
    now: datetime,
    timer: Callable[[str, float], None],
) -> Loaded:
    from cdp.crypto.blind_index import _subkey  # the same derivation blind_index() uses
    from cdp.crypto.config import blind_index_root_key, master_key_ring
    from cdp.ingestion.services import source_create

    rng = np.random.default_rng(SEED)
    created = source_create(name="web")
    source_id, write_key = created.source.pk, created.write_key
    seconds: dict[str, float] = {}

    def step(name: str, started: float) -> None:
        seconds[name] = time.perf_counter() - started
        timer(name, seconds[name])

    # --- profiles and identifiers ----------------------------------------------------------
    started = time.perf_counter()
    n = profiles
    pid = np.arange(1, n + 1)
    has_user = rng.random(n) < 0.6
    has_email = rng.random(n) < 0.4
    plan = rng.integers(0, len(PLANS), n)
    country = rng.integers(0, len(COUNTRIES), n)
    # identifier ids: anonymous 1..n, then user ids, then emails
    user_rows = pid[has_user]
    email_rows = pid[has_email]
    anon_id = pid.copy()
    user_id = np.zeros(n + 1, dtype=np.int64)
    user_id[user_rows] = n + 1 + np.arange(len(user_rows))
    email_base = n + 1 + len(user_rows)
    ident_count = n + len(user_rows) + len(email_rows)

    # --- events (arrays first: identifier counters come from them) -------------------------
    weights = np.exp(rng.normal(0.0, 1.6, n))
    extra = rng.choice(n, size=max(events - n, 0), p=weights / weights.sum()) + 1
    owner = np.concatenate([pid[: min(n, events)], extra])
    e = len(owner)
    span_us = days * 86_400 * 1_000_000
    now64 = np.datetime64(now.replace(tzinfo=None), "us")
    at = now64 - rng.integers(60_000_000, span_us, e).astype("timedelta64[us]")
    order = np.argsort(at, kind="stable")
    owner, at = owner[order], at[order]
    received = at + rng.integers(200_000, 5_000_000, e).astype("timedelta64[us]")
    shares = np.array([share for _, _, share in EVENT_MIX])
    kind = rng.choice(len(EVENT_MIX), size=e, p=shares / shares.sum())
    on_user = (user_id[owner] > 0) & (rng.random(e) < 0.7)
    anchor = np.where(on_user, user_id[owner], anon_id[owner - 1])
    counts = np.bincount(anchor, minlength=ident_count + 1)
    first_at = np.full(ident_count + 1, np.datetime64("NaT", "us"))
    last_at = np.full(ident_count + 1, np.datetime64("NaT", "us"))
    # at is sorted: the last write per anchor wins, so reversed order gives the first
    first_at[anchor[::-1]] = at[::-1]
    last_at[anchor] = at
    prof_events = np.bincount(owner, minlength=n + 1)
    prof_first = np.full(n + 1, np.datetime64("NaT", "us"))
    prof_last = np.full(n + 1, np.datetime64("NaT", "us"))
    prof_first[owner[::-1]] = at[::-1]
    prof_last[owner] = at
    # identifiers without events (emails): seen when their profile was, no event times
    owner_of = np.concatenate([[0], pid, user_rows, email_rows])
    seen_first = np.where(counts > 0, first_at, prof_first[owner_of])
    seen_last = np.where(counts > 0, last_at, prof_last[owner_of])
    step("generate", started)

    started = time.perf_counter()
    master = master_key_ring().newest.key_id
    created_at = f"{(now - timedelta(days=days + 1)).isoformat()}"
    with psycopg.connect(url) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET maintenance_work_mem = '512MB'")
        # Foreign keys are consistent by construction: their per-row triggers (deferred to the
        # commit, three per identifier) would cost more than the COPY itself.
        conn.execute("SET session_replication_role = replica")
        _copy(
            conn,
            "COPY crypto_datakey (id, wrapped_key, master_key_id, created_at) FROM STDIN",
            (
                f"{i}\t\\\\x{os.urandom(61).hex()}\t{master}\t{created_at}\n"
                for i in range(1, ident_count + 1)
            ),
        )
        conn.execute(
            "SELECT setval(pg_get_serial_sequence('crypto_datakey', 'id'), %s)", [ident_count]
        )
        first_s, last_s = _ts(prof_first[1:]), _ts(prof_last[1:])
        _copy(
            conn,
            "COPY identity_profile (id, created_at, first_seen_at, last_seen_at, event_count,"
            " traits, updated_at) FROM STDIN",
            (
                f"{i + 1}\t{first_s[i]}\t{first_s[i]}\t{last_s[i]}\t{prof_events[i + 1]}\t"
                f'{{"plan": {{"pii": false, "rule": "latest", "value": "{PLANS[plan[i]]}", '
                f'"source": "web", "origin": "event"}}, '
                f'"country": {{"pii": false, "rule": "latest", '
                f'"value": "{COUNTRIES[country[i]]}", "source": "web", "origin": "event"}}}}'
                f"\t{last_s[i]}\n"
                for i in range(n)
            ),
        )
        conn.execute("SELECT setval(pg_get_serial_sequence('identity_profile', 'id'), %s)", [n])
        root = blind_index_root_key()
        import hmac

        keys = {kind_: _subkey(root, kind_) for kind_ in ("anonymous_id", "user_id", "email")}
        fa, la = _ts(first_at), _ts(last_at)
        sf, sl = _ts(seen_first), _ts(seen_last)
        fa = [value if value[0] != "N" else "\\N" for value in fa]
        la = [value if value[0] != "N" else "\\N" for value in la]

        def ident_line(ident: int, kind_: str, value: str, profile: int) -> str:
            index = hmac.digest(keys[kind_], value.encode(), "sha256").hex()
            return (
                f"{ident}\t{kind_}\t\\\\x{index}\t\\\\x{os.urandom(40).hex()}\t{sf[ident]}\t"
                f"{sl[ident]}\t{ident}\t{profile}\t{counts[ident]}\t{fa[ident]}\t{profile}\t"
                f"{la[ident]}\n"
            )

        def ident_lines() -> Iterable[str]:
            for p in range(1, n + 1):
                yield ident_line(p, "anonymous_id", f"anon-{p:08d}", p)
            for p in user_rows.tolist():
                yield ident_line(int(user_id[p]), "user_id", f"user-{p:08d}", p)
            for offset, p in enumerate(email_rows.tolist()):
                yield ident_line(email_base + offset, "email", f"person{p}@example.com", p)

        _copy(
            conn,
            "COPY identity_identifier (id, kind, blind_index, value_ciphertext, first_seen_at,"
            " last_seen_at, data_key_id, profile_id, event_count, first_event_at,"
            " first_profile_id, last_event_at) FROM STDIN",
            ident_lines(),
        )
        conn.execute(
            "SELECT setval(pg_get_serial_sequence('identity_identifier', 'id'), %s)",
            [ident_count],
        )
        conn.commit()
    step("load profiles, identifiers, data keys (COPY)", started)

    started = time.perf_counter()
    _real_keys(url, ident_ids=_ident_ids_of(real_key_profiles, user_id, email_rows, email_base))
    step("real data keys for the PII profiles", started)

    # --- events ----------------------------------------------------------------------------
    started = time.perf_counter()
    _events_copy(url, rng, owner, at, received, kind, anchor, on_user, source_id)
    step("load events (COPY, partitions, indexes)", started)

    started = time.perf_counter()
    states = _consent_copy(url, rng, n, now, source_id)
    step("load consent", started)

    started = time.perf_counter()
    _pii_identify(source_id, real_key_profiles, has_user, plan, country, email_rows)
    step("PII identify for the real-key profiles (ingest + resolver)", started)

    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM identity_profilechange")
        conn.execute("VACUUM ANALYZE")
    step("VACUUM ANALYZE", started)
    return Loaded(
        profiles=n,
        identifiers=ident_count,
        events=e,
        consent_states=states,
        seconds=seconds,
        source_id=source_id,
        write_key=write_key,
        now=now,
        user_ids=[f"user-{p:08d}" for p in user_rows.tolist()],
    )


def _ident_ids_of(
    count: int, user_id: np.ndarray, email_rows: np.ndarray, email_base: int
) -> list[int]:
    ids = list(range(1, count + 1))
    ids += [int(user_id[p]) for p in range(1, count + 1) if user_id[p]]
    ids += [email_base + i for i, p in enumerate(email_rows.tolist()) if p <= count]
    return ids


def _real_keys(url: str, *, ident_ids: list[int]) -> None:
    """Replace the random wrapped keys of these identifiers with real ones (same ids: a wrapped
    key is bound to its row id)."""
    from cdp.crypto.config import master_key_ring
    from cdp.crypto.services import DATA_KEY_BYTES
    from cdp.crypto.wrapping import data_key_wrap

    master = master_key_ring().newest
    with psycopg.connect(url) as conn:
        rows = [
            (data_key_wrap(os.urandom(DATA_KEY_BYTES), data_key_id=i, master_key=master), i)
            for i in ident_ids
        ]
        with conn.cursor() as cursor:
            cursor.executemany("UPDATE crypto_datakey SET wrapped_key = %s WHERE id = %s", rows)
        conn.commit()


def _events_copy(
    url: str,
    rng: np.random.Generator,
    owner: np.ndarray,
    at: np.ndarray,
    received: np.ndarray,
    kind: np.ndarray,
    anchor: np.ndarray,
    on_user: np.ndarray,
    source_id: int,
) -> None:
    revenue = np.round(rng.lognormal(3.8, 0.7, 4096), 2)
    pools: dict[int, list[str]] = {}
    for k, (type_, name, _share) in enumerate(EVENT_MIX):
        if type_ == "page":
            pools[k] = [f'{{"path": "/{p.lower()}"}}' for p in PAGE_NAMES]
        elif name == "Order Completed":
            pools[k] = [f'{{"revenue": {r}, "currency": "EUR"}}' for r in revenue]
        elif name.startswith("Product"):
            pools[k] = [
                f'{{"sku": "SKU-{s:04d}", "price": {rng.integers(5, 300)}.99, "category": '
                f'"{("shoes", "bags", "outdoor", "audio")[s % 4]}"}}'
                for s in range(512)
            ]
        elif name == "Search":
            pools[k] = [f'{{"query": "term {s}"}}' for s in range(256)]
        else:
            pools[k] = ["{}"]
    pick = rng.integers(0, 1 << 30, len(owner))
    months = received.astype("datetime64[M]")
    with psycopg.connect(url) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET maintenance_work_mem = '512MB'")
        for month in np.unique(months):
            lo = np.datetime64(month, "D")
            hi = np.datetime64(month + 1, "D")
            part = f"ingestion_event_y{str(month)[:4]}m{str(month)[5:7]}"
            exists = conn.execute("SELECT to_regclass(%s)", [part]).fetchone()
            attach = exists is None or exists[0] is None
            if attach:
                conn.execute(
                    f"CREATE TABLE {part} (LIKE ingestion_event INCLUDING DEFAULTS"
                    " INCLUDING CONSTRAINTS)"
                )
            rows = np.nonzero(months == month)[0]
            for start in range(0, len(rows), CHUNK):
                idx = rows[start : start + CHUNK]
                ts, rs = _ts(at[idx]), _ts(received[idx])
                lines = []
                for j, i in enumerate(idx.tolist()):
                    k = int(kind[i])
                    type_, name, _ = EVENT_MIX[k]
                    if type_ == "page":
                        name = PAGE_NAMES[pick[i] % len(PAGE_NAMES)]
                        props = pools[k][pick[i] % len(PAGE_NAMES)]
                    else:
                        pool = pools[k]
                        props = pool[pick[i] % len(pool)]
                    p = int(owner[i])
                    uid = f"user-{p:08d}" if on_user[i] else "\\N"
                    lines.append(
                        f"{i + 1}\t{source_id}\tm-{i + 1:010d}\t{type_}\t{name}\t{uid}\t"
                        f"anon-{p:08d}\t{ts[j]}\t{rs[j]}\t{props}\t{anchor[i]}\n"
                    )
                _copy(
                    conn,
                    f"COPY {part} (id, source_id, message_id, type, event_name, user_id,"
                    " anonymous_id, timestamp, received_at, properties, identifier_id)"
                    " FROM STDIN",
                    lines,
                )
            if attach:
                conn.execute(
                    f"ALTER TABLE ingestion_event ATTACH PARTITION {part} FOR VALUES FROM"
                    f" ('{lo} 00:00+00') TO ('{hi} 00:00+00')"
                )
            conn.commit()
            _log(f"events: {part} loaded ({len(rows):,} rows)")
        conn.execute(
            "SELECT setval(pg_get_serial_sequence('ingestion_event', 'id'), %s)", [len(owner)]
        )
        conn.commit()


def _consent_copy(url: str, rng: np.random.Generator, n: int, now: datetime, source_id: int) -> int:
    """marketing_email granted for 35 %, analytics withdrawn for 5 % (entry + state each), on
    the person's anonymous_id identifier (its id is the profile id)."""
    granted = np.nonzero(rng.random(n) < 0.35)[0] + 1
    withdrawn = np.nonzero(rng.random(n) < 0.05)[0] + 1
    given = (now - timedelta(days=30)).isoformat()
    rows = [("marketing_email", "granted", int(p)) for p in granted]
    rows += [("analytics", "withdrawn", int(p)) for p in withdrawn]
    with psycopg.connect(url) as conn:
        conn.execute("SET session_replication_role = replica")  # as for identifiers
        _copy(
            conn,
            "COPY consent_consententry (id, purpose, status, legal_basis, channel, provider,"
            " policy_version, proof_ip_digest, proof_user_agent, address_bound, actor, given_at,"
            " recorded_at, identifier_id, source_id) FROM STDIN",
            (
                f"{number}\t{purpose}\t{status}\tconsent\tweb\tbench\tv1\t\t\tf\tbench\t{given}"
                f"\t{given}\t{p}\t{source_id}\n"
                for number, (purpose, status, p) in enumerate(rows, 1)
            ),
        )
        _copy(
            conn,
            "COPY consent_consentstate (id, purpose, status, given_at, opted_out_identifiers,"
            " updated_at, entry_id, profile_id) FROM STDIN",
            (
                f"{number}\t{purpose}\t{status}\t{given}\t[]\t{given}\t{number}\t{p}\n"
                for number, (purpose, status, p) in enumerate(rows, 1)
            ),
        )
        for table in ("consent_consententry", "consent_consentstate"):
            conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), %s)", [len(rows)])
        conn.commit()
    return len(rows)


def _pii_identify(
    source_id: int,
    count: int,
    has_user: np.ndarray,
    plan: np.ndarray,
    country: np.ndarray,
    email_rows: np.ndarray,
) -> None:
    """An identify with email and name per real-key person, through ingestion and the
    resolver (PII encrypted under the identifier's real data key)."""
    from cdp.ingestion.services import events_ingest
    from identity.services.resolution import resolve_pending

    at = datetime.now(UTC)
    messages = []
    for p in range(1, count + 1):
        message: dict[str, Any] = {
            "type": "identify",
            "messageId": f"pii-{p}",
            "anonymousId": f"anon-{p:08d}",
            "timestamp": (at - timedelta(days=95)).isoformat(),
            "traits": {
                "email": f"person{p}@example.com",
                "name": f"Person {p}",
                "plan": PLANS[plan[p - 1]],
                "country": COUNTRIES[country[p - 1]],
            },
        }
        if has_user[p - 1]:
            message["userId"] = f"user-{p:08d}"
        messages.append(message)
    for start in range(0, len(messages), 500):
        events_ingest(source_id=source_id, messages=messages[start : start + 500], received_at=at)
    resolve_pending(batch_size=1000)
