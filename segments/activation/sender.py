"""Delivering webhook outbox rows: claim due ones, POST them signed, record each attempt.

A claim (``FOR UPDATE SKIP LOCKED``, in a short transaction) takes due rows (pending, or failed
with ``next_attempt_at`` passed), ends those whose profile is no longer allowed for the
segment's consent purpose (dead, "consent_withdrawn", never sent), counts the attempt and
pushes ``next_attempt_at`` out by a lease, so two senders never take the same row and a row
whose worker died is tried again once the lease runs out. The HTTP request happens outside any
transaction, within ``WEBHOOK_TIMEOUT_SECONDS`` in all. Its outcome is then written, unless the
row was claimed again meanwhile (a newer attempt's outcome wins): a 2xx succeeds; anything
else (another status, a redirect: never followed, a timeout, a refused address) fails and is
retried after the next wait of ``WEBHOOK_RETRY_SECONDS`` (30 s, 2 min, 10 min, 1 h, 6 h by
default) with +/-20 % jitter, until the last allowed attempt, after which the delivery is dead.
Every attempt is appended to the delivery's ``attempt_log``: its time, status code, error class
and duration, never a response body.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import random
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from consent.selectors import allowed_sql
from segments.activation.addresses import (
    AddressRefused,
    Target,
    target_addresses,
    webhook_url_parse,
)
from segments.activation.config import ActivationConfig, activation_config
from segments.activation.models import DeliveryStatus, Webhook, WebhookDelivery
from segments.activation.signing import SIGNATURE_HEADER, signature_header
from segments.activation.webhooks import webhook_secret

logger = logging.getLogger(__name__)
JITTER = 0.2
USER_AGENT = "cdp-webhooks/1"


@dataclass(frozen=True)
class Attempt:
    status_code: int | None
    error: str  # "" on success; "HTTP 500", "TimeoutError", "address_not_allowed"...
    duration_ms: int

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def retry_delay(attempts: int, *, config: ActivationConfig, rng: random.Random) -> timedelta:
    """The wait after the ``attempts``-th failed attempt (1-based), jittered."""
    base = config.webhook_retry_seconds[min(attempts, len(config.webhook_retry_seconds)) - 1]
    return timedelta(seconds=base * rng.uniform(1 - JITTER, 1 + JITTER))


# Each claimed delivery's purpose (its segment's, now) and the profile it is about now: itself,
# or the survivor its ``merged_into`` chain ends at (a merged-away profile's consent state is
# gone; its survivor's counts).
_CURRENT = """
SELECT d.id, s.purpose, coalesce(cur.id, d.profile_id)
FROM segments_webhookdelivery AS d
JOIN segments_webhook AS w ON w.id = d.webhook_id
JOIN segments_segment AS s ON s.id = w.segment_id
LEFT JOIN LATERAL (
    WITH RECURSIVE chain (id, merged_into_id, depth) AS (
        SELECT p.id, p.merged_into_id, 0 FROM identity_profile AS p WHERE p.id = d.profile_id
        UNION ALL
        SELECT p.id, p.merged_into_id, c.depth + 1
        FROM chain AS c JOIN identity_profile AS p ON p.id = c.merged_into_id
        WHERE c.depth < %s
    )
    SELECT chain.id FROM chain WHERE chain.merged_into_id IS NULL LIMIT 1
) AS cur ON true
WHERE d.id = ANY(%s::bigint[])
"""
_WITHDRAW = """
UPDATE segments_webhookdelivery AS d
SET status = %s, last_error = %s, next_attempt_at = NULL
FROM unnest(%s::bigint[], %s::text[], %s::bigint[]) AS c(id, purpose, profile_id)
WHERE d.id = c.id AND NOT ({allowed})
RETURNING d.id
"""
CONSENT_WITHDRAWN = "consent_withdrawn"
MAX_MERGE_HOPS = 64


@transaction.atomic
def webhook_deliveries_claim(*, now: datetime, limit: int) -> list[WebhookDelivery]:
    """Due deliveries of active webhooks, taken for one attempt each (see the module doc).

    Consent is checked again here, not only at enqueue (retries run for hours): a due delivery
    whose profile is no longer allowed for its segment's purpose ends ``dead`` with
    ``last_error`` "consent_withdrawn", is not sent and does not count an attempt."""
    config = activation_config()
    while True:
        due = list(
            WebhookDelivery.objects.filter(
                # IN (...), as in the partial index's predicate, so the index serves the claim.
                status__in=[DeliveryStatus.PENDING, DeliveryStatus.FAILED],
                next_attempt_at__lte=now,
            )
            .order_by("next_attempt_at", "pk")
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)[:limit]
        )
        if not due:
            return []
        withdrawn = _consent_withdrawn_end(due)
        due = [pk for pk in due if pk not in withdrawn]
        if due:
            break  # else the whole batch was withdrawn: take the next one
    WebhookDelivery.objects.filter(pk__in=due).update(
        attempts=F("attempts") + 1,
        next_attempt_at=now + timedelta(seconds=config.webhook_lease_seconds),
    )
    return list(WebhookDelivery.objects.filter(pk__in=due).select_related("webhook").order_by("pk"))


def _consent_withdrawn_end(delivery_ids: Sequence[int]) -> set[int]:
    """End (dead, "consent_withdrawn") those of these locked deliveries whose profile is not
    allowed for their segment's purpose any more; their ids back. Two queries, set-based."""
    with connection.cursor() as cursor:
        cursor.execute(_CURRENT, [MAX_MERGE_HOPS, list(delivery_ids)])
        rows: list[tuple[int, str, int]] = cursor.fetchall()
        tests: list[str] = []
        params: list[Any] = []
        for purpose in sorted({purpose for _, purpose, _ in rows}):
            try:
                allowed, allowed_params = allowed_sql(purpose, profile_column="c.profile_id")
            except LookupError:  # a purpose no longer configured: allowed for nobody
                logger.error("webhook deliveries of an unknown consent purpose are ended")
                continue
            tests.append(f"(c.purpose = %s AND {allowed})")
            params += [purpose, *allowed_params]
        cursor.execute(
            _WITHDRAW.format(allowed=" OR ".join(tests) or "false"),
            [
                DeliveryStatus.DEAD.value,
                CONSENT_WITHDRAWN,
                [row[0] for row in rows],
                [row[1] for row in rows],
                [row[2] for row in rows],
                *params,
            ],
        )
        return {int(pk) for (pk,) in cursor.fetchall()}


def delivery_body(delivery: WebhookDelivery) -> bytes:
    return orjson.dumps({"id": delivery.pk, **delivery.payload})


def delivery_attempt(
    delivery: WebhookDelivery, *, secret: str | None, timestamp: int, config: ActivationConfig
) -> Attempt:
    """POST one delivery (no retry here), signed with its webhook's ``secret`` (None: it could
    not be read, a failed attempt). No database access: the senders run it in threads. Never
    raises for the receiver's failures."""
    webhook: Webhook = delivery.webhook
    started = time.monotonic()

    def done(status_code: int | None, error: str) -> Attempt:
        elapsed = int((time.monotonic() - started) * 1000)
        return Attempt(status_code=status_code, error=error, duration_ms=elapsed)

    body = delivery_body(delivery)
    if secret is None:
        return done(None, "secret_unreadable")
    try:
        target = webhook_url_parse(webhook.url)
        (address, *_) = target_addresses(target)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: signature_header(secret=secret, timestamp=timestamp, body=body),
            "X-CDP-Delivery": str(delivery.pk),
            "X-CDP-Event": delivery.event_type,
        }
        status_code = _post(target, address, body, headers, config.webhook_timeout_seconds)
    except AddressRefused:
        return done(None, "address_not_allowed")
    except (OSError, http.client.HTTPException) as exc:  # timeouts, refused connections, TLS
        return done(None, type(exc).__name__)
    except Exception as exc:  # a bad stored URL: recorded, not raised
        return done(None, type(exc).__name__)
    return done(status_code, "" if 200 <= status_code < 300 else f"HTTP {status_code}")


def _post(
    target: Target, address: str, body: bytes, headers: dict[str, str], timeout: float
) -> int:
    """POST and read the status. ``timeout`` bounds every socket operation and the attempt as
    a whole: a receiver trickling its answer (each read within the timeout) is cut off at the
    deadline, a ``TimeoutError``, so an attempt never outlives its lease by much."""
    connection: _PinnedHTTPConnection | _PinnedHTTPSConnection
    if target.scheme == "https":
        connection = _PinnedHTTPSConnection(target.host, target.port, address, timeout)
    else:
        connection = _PinnedHTTPConnection(target.host, target.port, address, timeout)
    deadline = threading.Timer(timeout, connection.abort)
    deadline.daemon = True
    deadline.start()
    try:
        connection.request("POST", target.path, body=body, headers=headers)
        response = connection.getresponse()
        response.read(64 * 1024)  # drain a little; the body is never stored
        # A read cut short by the shutdown looks like the end of the headers or of the body.
        connection.deadline_check()
        return int(response.status)
    except (OSError, http.client.HTTPException):
        if connection.aborted:
            raise TimeoutError("the attempt ran past its deadline") from None
        raise
    finally:
        deadline.cancel()
        connection.close()


class _Abortable:
    """``abort`` (from the deadline's timer thread) shuts the connection's socket down, which
    wakes the sender's thread blocked in a read or write."""

    sock: socket.socket | None
    aborted = False

    def abort(self) -> None:
        self.aborted = True
        sock = self.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.settimeout(0.01)  # reads after this one: no more waiting
                sock.shutdown(socket.SHUT_RDWR)

    def deadline_check(self) -> None:
        if self.aborted:
            raise TimeoutError("the attempt ran past its deadline")


class _PinnedHTTPConnection(_Abortable, http.client.HTTPConnection):
    """Connects to the address that was checked, not to whatever the name resolves to now."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)
        self.deadline_check()


class _PinnedHTTPSConnection(_Abortable, http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        self._tls = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=self._tls)
        self._address = address

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        # The certificate is checked against the host name (SNI too), as for any HTTPS call.
        # The handshake runs once the TLS socket is in place, so the deadline can abort it.
        tls = self._tls.wrap_socket(raw, server_hostname=self.host, do_handshake_on_connect=False)
        self.sock = tls
        self.deadline_check()
        tls.do_handshake()


_RECORD = """
UPDATE segments_webhookdelivery AS d
SET attempt_log = d.attempt_log || jsonb_build_array(u.entry),
    last_status_code = u.status_code,
    last_error = u.error,
    status = u.status,
    delivered_at = u.delivered_at,
    next_attempt_at = u.next_attempt_at
FROM unnest(%s::bigint[], %s::integer[], %s::text[]::jsonb[], %s::integer[], %s::text[],
            %s::text[], %s::timestamptz[], %s::timestamptz[])
     AS u(id, attempts, entry, status_code, error, status, delivered_at, next_attempt_at)
WHERE d.id = u.id AND d.status IN ('pending', 'failed')
  -- Still this worker's attempt: once its lease ran out another worker may have claimed the
  -- row again (attempts + 1), and that newer attempt's outcome is the one to keep.
  AND d.attempts = u.attempts
"""


def deliveries_record(
    *,
    outcomes: Sequence[tuple[WebhookDelivery, Attempt]],
    now: datetime,
    rng: random.Random | None = None,
) -> int:
    """Write a batch of claimed deliveries' attempts in one UPDATE; rows ended meanwhile (their
    webhook was deleted) and rows claimed again since (this worker's lease ran out: their
    ``attempts`` moved on) are left as they are. Returns how many rows were written."""
    if not outcomes:
        return 0
    config = activation_config()
    rng = rng or random.Random()  # noqa: S311 (jitter, not a secret)
    for delivery, attempt in outcomes:
        _apply(delivery, attempt, now=now, config=config, rng=rng)
    rows = [delivery for delivery, _ in outcomes]
    with connection.cursor() as cursor:
        cursor.execute(
            _RECORD,
            [
                [d.pk for d in rows],
                [d.attempts for d in rows],
                [orjson.dumps(d.attempt_log[-1]).decode() for d in rows],
                [d.last_status_code for d in rows],
                [d.last_error for d in rows],
                [d.status for d in rows],
                [d.delivered_at for d in rows],
                [d.next_attempt_at for d in rows],
            ],
        )
        return int(cursor.rowcount)


def _apply(
    delivery: WebhookDelivery,
    attempt: Attempt,
    *,
    now: datetime,
    config: ActivationConfig,
    rng: random.Random,
) -> None:
    delivery.attempt_log = [
        *delivery.attempt_log,
        {
            "attempt": delivery.attempts,
            "at": now.isoformat(),
            "status_code": attempt.status_code,
            "error": attempt.error,
            "duration_ms": attempt.duration_ms,
        },
    ]
    delivery.last_status_code = attempt.status_code
    delivery.last_error = attempt.error[:200]
    if attempt.succeeded:
        delivery.status = DeliveryStatus.SUCCEEDED
        delivery.delivered_at = now
        delivery.next_attempt_at = None
    elif delivery.attempts >= config.webhook_max_attempts:
        delivery.status = DeliveryStatus.DEAD
        delivery.next_attempt_at = None
    else:
        delivery.status = DeliveryStatus.FAILED
        delivery.next_attempt_at = now + retry_delay(delivery.attempts, config=config, rng=rng)


def webhook_deliveries_send(
    *, now: datetime | None = None, limit: int | None = None, max_batches: int = 20
) -> int:
    """Claim and send due deliveries, batch after batch until none is due (or ``max_batches``);
    returns how many attempts were made. The requests of a batch run in up to
    ``WEBHOOK_CONCURRENCY`` threads (HTTP only: claims, secrets and records stay in this
    thread). ``now`` (for tests) fixes the clock of claims and records; the signature's
    timestamp is always the real time."""
    config = activation_config()
    attempts = 0
    with ThreadPoolExecutor(max_workers=config.webhook_concurrency) as pool:
        for _ in range(max_batches):
            moment = now or timezone.now()
            claimed = webhook_deliveries_claim(now=moment, limit=limit or config.webhook_batch_size)
            if not claimed:
                break
            secrets = _secrets({delivery.webhook for delivery in claimed})
            timestamp = int(time.time())
            futures = [
                pool.submit(
                    delivery_attempt,
                    delivery,
                    secret=secrets[delivery.webhook_id],
                    timestamp=timestamp,
                    config=config,
                )
                for delivery in claimed
            ]
            outcomes = [future.result() for future in futures]
            deliveries_record(
                outcomes=list(zip(claimed, outcomes, strict=True)),
                now=now or timezone.now(),
            )
            attempts += len(claimed)
            for delivery, attempt in zip(claimed, outcomes, strict=True):
                if not attempt.succeeded:
                    logger.info(
                        "webhook delivery %s attempt %s failed: %s",
                        delivery.pk,
                        delivery.attempts,
                        attempt.error,
                    )
    return attempts


def _secrets(webhooks: set[Webhook]) -> dict[int, str | None]:
    found: dict[int, str | None] = {}
    for webhook in webhooks:
        try:
            found[webhook.pk] = webhook_secret(webhook)
        except Exception as exc:  # a destroyed key (deleted meanwhile): the attempt fails
            logger.warning("webhook %s secret unreadable: %s", webhook.pk, type(exc).__name__)
            found[webhook.pk] = None
    return found
