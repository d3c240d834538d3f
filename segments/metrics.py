"""Computed traits (``segments_profilemetrics``): what segment definitions read as
``{"computed": NAME, ...}``, maintained by the segment workers from the profiles' events.

A profile's events are those anchored on its identifiers (``ingestion_event.identifier_id`` ->
``identity_identifier.profile_id``), so merges and unmerges move them with the identifiers and a
refresh after the change recounts the sides. Every statement is set-based (one ``INSERT ...
SELECT ... GROUP BY ... ON CONFLICT DO UPDATE`` per batch of profiles); a profile merged away
(or gone) loses its row, a current profile without events gets zeros, and one left without
orders loses its RFM scores (NULL) at once.

- ``metrics_refresh``: the profiles of one batch (the incremental run, after resolution);
- ``metrics_rebuild``: every profile, in one pass (a repair, or after loading data in bulk);
- ``metrics_rfm_recompute``: the RFM quintile scores over every profile with orders.

Settings: ``CDP_SEGMENTS["REVENUE_PROPERTY"]`` (a numeric property of the order events; other
values are ignored, as are absurd ones past ``MAX_REVENUE``), ``CDP_SEGMENTS["ORDER_EVENTS"]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

# Larger revenue values of one event are ignored: total_spend is numeric(18, 4), and one bad
# event must not make every refresh of its profile fail.
MAX_REVENUE = Decimal("1e12")
# work_mem of the full rebuild's one statement (one sort / hash of every profile's events).
REBUILD_WORK_MEM = "256MB"

# The aggregates of the events of the profiles in ``scope`` (the CTE before it: live profile
# ids), then one row per profile. Parameters (named): orders, revenue, max_revenue, now.
_UPSERT = """
, per_name AS (
    SELECT i.profile_id, e.event_name, count(*) AS n,
           count(*) FILTER (WHERE e.event_name = ANY(%(orders)s)) AS orders,
           sum((e.properties ->> %(revenue)s)::numeric) FILTER (
               WHERE e.event_name = ANY(%(orders)s)
                 AND jsonb_typeof(e.properties -> %(revenue)s) = 'number'
                 AND abs((e.properties ->> %(revenue)s)::numeric) < %(max_revenue)s
           ) AS spend,
           min(e.timestamp) AS first_at,
           max(e.timestamp) AS last_at,
           max(e.timestamp) FILTER (WHERE e.event_name = ANY(%(orders)s)) AS last_order_at
    FROM scope s
    JOIN identity_identifier i ON i.profile_id = s.id
    JOIN ingestion_event e ON e.identifier_id = i.id
    GROUP BY i.profile_id, e.event_name
)
INSERT INTO segments_profilemetrics AS m (
    profile_id, total_spend, order_count, event_count, first_seen_at, last_seen_at,
    last_order_at, event_counts, updated_at
)
SELECT s.id,
       coalesce(sum(pn.spend), 0),
       coalesce(sum(pn.orders), 0),
       coalesce(sum(pn.n), 0),
       min(pn.first_at),
       max(pn.last_at),
       max(pn.last_order_at),
       coalesce(jsonb_object_agg(pn.event_name, pn.n) FILTER (WHERE pn.event_name IS NOT NULL),
                '{}'::jsonb),
       %(now)s
FROM scope s
LEFT JOIN per_name pn ON pn.profile_id = s.id
GROUP BY s.id
ON CONFLICT (profile_id) DO UPDATE SET
    total_spend = EXCLUDED.total_spend,
    order_count = EXCLUDED.order_count,
    event_count = EXCLUDED.event_count,
    first_seen_at = EXCLUDED.first_seen_at,
    last_seen_at = EXCLUDED.last_seen_at,
    last_order_at = EXCLUDED.last_order_at,
    event_counts = EXCLUDED.event_counts,
    -- No orders left (an unmerge took them away): no RFM scores, as for any profile without
    -- orders; otherwise the scores stay until the next metrics_rfm_recompute.
    rfm_recency = CASE WHEN EXCLUDED.order_count = 0 THEN NULL ELSE m.rfm_recency END,
    rfm_frequency = CASE WHEN EXCLUDED.order_count = 0 THEN NULL ELSE m.rfm_frequency END,
    rfm_monetary = CASE WHEN EXCLUDED.order_count = 0 THEN NULL ELSE m.rfm_monetary END,
    updated_at = EXCLUDED.updated_at
WHERE (m.total_spend, m.order_count, m.event_count, m.first_seen_at, m.last_seen_at,
       m.last_order_at, m.event_counts)
      IS DISTINCT FROM
      (EXCLUDED.total_spend, EXCLUDED.order_count, EXCLUDED.event_count, EXCLUDED.first_seen_at,
       EXCLUDED.last_seen_at, EXCLUDED.last_order_at, EXCLUDED.event_counts)
   OR (EXCLUDED.order_count = 0
       AND (m.rfm_recency IS NOT NULL OR m.rfm_frequency IS NOT NULL
            OR m.rfm_monetary IS NOT NULL))
"""

_BATCH_SCOPE = """
WITH scope AS (
    SELECT p.id FROM identity_profile p
    WHERE p.id = ANY(%(ids)s::bigint[]) AND p.merged_into_id IS NULL
)
"""
_ALL_SCOPE = """
WITH scope AS (SELECT p.id FROM identity_profile p WHERE p.merged_into_id IS NULL)
"""

# RFM scores by rank, ties sharing a score: 1 + floor(5 * (rank - 1) / n). NTILE(5) would split
# ties arbitrarily (most people have one order: they would get frequency 1, 2 or 3 by chance).
_RFM = """
WITH scored AS (
    SELECT profile_id,
           1 + (5 * (rank() OVER (ORDER BY last_order_at) - 1)) / count(*) OVER () AS r,
           1 + (5 * (rank() OVER (ORDER BY order_count) - 1)) / count(*) OVER () AS f,
           1 + (5 * (rank() OVER (ORDER BY total_spend) - 1)) / count(*) OVER () AS m
    FROM segments_profilemetrics
    WHERE order_count > 0
)
UPDATE segments_profilemetrics pm
SET rfm_recency = s.r, rfm_frequency = s.f, rfm_monetary = s.m
FROM scored s
WHERE pm.profile_id = s.profile_id
  AND (pm.rfm_recency, pm.rfm_frequency, pm.rfm_monetary) IS DISTINCT FROM (s.r, s.f, s.m)
"""
_RFM_CLEAR = """
UPDATE segments_profilemetrics
SET rfm_recency = NULL, rfm_frequency = NULL, rfm_monetary = NULL
WHERE order_count = 0
  AND (rfm_recency IS NOT NULL OR rfm_frequency IS NOT NULL OR rfm_monetary IS NOT NULL)
"""


@dataclass
class MetricsResult:
    upserted: int = 0  # rows inserted or changed
    deleted: int = 0  # rows of profiles merged away or gone


def _params(now: datetime) -> dict[str, Any]:
    config = settings.CDP_SEGMENTS
    return {
        "orders": list(config["ORDER_EVENTS"]),
        "revenue": config["REVENUE_PROPERTY"],
        "max_revenue": MAX_REVENUE,
        "now": now,
    }


@transaction.atomic
def metrics_refresh(*, profile_ids: Sequence[int], now: datetime | None = None) -> MetricsResult:
    """Recount the computed traits of these profiles from their events: current profiles get
    their row (zeros without events), merged-away or deleted ones lose theirs."""
    ids = sorted(set(profile_ids))
    result = MetricsResult()
    if not ids:
        return result
    params = {**_params(now or timezone.now()), "ids": ids}
    with connection.cursor() as cursor:
        jit_off(cursor)
        cursor.execute(_BATCH_SCOPE + _UPSERT, params)
        result.upserted = cursor.rowcount
        cursor.execute(
            """
            DELETE FROM segments_profilemetrics m
            WHERE m.profile_id = ANY(%(ids)s::bigint[])
              AND NOT EXISTS (SELECT 1 FROM identity_profile p
                              WHERE p.id = m.profile_id AND p.merged_into_id IS NULL)
            """,
            {"ids": ids},
        )
        result.deleted = cursor.rowcount
    return result


@transaction.atomic
def metrics_rebuild(*, now: datetime | None = None) -> MetricsResult:
    """Recount every profile's computed traits in one statement (one pass over the events:
    a statement per range of profiles would read every event once per range), then drop the
    rows of profiles merged away. One transaction: incremental refreshes of the same rows wait
    for it."""
    result = MetricsResult()
    with connection.cursor() as cursor:
        jit_off(cursor)
        # Grouping every (profile, event name) in memory instead of spilling to disk.
        cursor.execute(f"SET LOCAL work_mem = '{REBUILD_WORK_MEM}'")
        cursor.execute(_ALL_SCOPE + _UPSERT, _params(now or timezone.now()))
        result.upserted = cursor.rowcount
        cursor.execute(
            """
            DELETE FROM segments_profilemetrics m
            WHERE NOT EXISTS (SELECT 1 FROM identity_profile p
                              WHERE p.id = m.profile_id AND p.merged_into_id IS NULL)
            """
        )
        result.deleted = cursor.rowcount
    return result


def jit_off(cursor: Any) -> None:
    """For the rest of the transaction: these statements are planned with estimates far off
    (a CTE of ids, grouped events), and JIT compiling them cost seconds for nothing."""
    cursor.execute("SET LOCAL jit = off")


@transaction.atomic
def metrics_rfm_recompute() -> int:
    """Score recency (last order), frequency (order count) and monetary value (total spend)
    1..5 over every profile with orders, in one statement; profiles without orders get NULLs.
    Returns the number of rows changed."""
    with connection.cursor() as cursor:
        jit_off(cursor)
        cursor.execute(_RFM)
        changed = cursor.rowcount
        cursor.execute(_RFM_CLEAR)
        return changed + cursor.rowcount
