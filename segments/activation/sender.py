"""Delivering webhook outbox rows: claim due ones, POST them signed, record each attempt.

A claim (``FOR UPDATE SKIP LOCKED``, in a short transaction) takes due rows (pending, or failed
with ``next_attempt_at`` passed), counts the attempt and pushes ``next_attempt_at`` out by a
lease, so two senders never take the same row and a row whose worker died is tried again once
the lease runs out. The HTTP request happens outside any transaction. Its outcome is then
written: a 2xx succeeds; anything else (another status, a redirect: never followed, a timeout, a
refused address) fails and is retried after the next wait of ``WEBHOOK_RETRY_SECONDS`` (30 s,
2 min, 10 min, 1 h, 6 h by default) with +/-20 % jitter, until the last allowed attempt, after
which the delivery is dead. Every attempt is appended to the delivery's ``attempt_log``: its
time, status code, error class and duration, never a response body.
"""

from __future__ import annotations

import http.client
import logging
import random
import socket
import ssl
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

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


@transaction.atomic
def webhook_deliveries_claim(*, now: datetime, limit: int) -> list[WebhookDelivery]:
    """Due deliveries of active webhooks, taken for one attempt each (see the module doc)."""
    config = activation_config()
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
    WebhookDelivery.objects.filter(pk__in=due).update(
        attempts=F("attempts") + 1,
        next_attempt_at=now + timedelta(seconds=config.webhook_lease_seconds),
    )
    return list(WebhookDelivery.objects.filter(pk__in=due).select_related("webhook").order_by("pk"))


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
    connection: http.client.HTTPConnection
    if target.scheme == "https":
        connection = _PinnedHTTPSConnection(target.host, target.port, address, timeout)
    else:
        connection = _PinnedHTTPConnection(target.host, target.port, address, timeout)
    try:
        connection.request("POST", target.path, body=body, headers=headers)
        response = connection.getresponse()
        response.read(64 * 1024)  # drain a little; the body is never stored
        return int(response.status)
    finally:
        connection.close()


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the address that was checked, not to whatever the name resolves to now."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        self._tls = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=self._tls)
        self._address = address

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        # The certificate is checked against the host name (SNI too), as for any HTTPS call.
        self.sock = self._tls.wrap_socket(raw, server_hostname=self.host)


_RECORD = """
UPDATE segments_webhookdelivery AS d
SET attempt_log = d.attempt_log || jsonb_build_array(u.entry),
    last_status_code = u.status_code,
    last_error = u.error,
    status = u.status,
    delivered_at = u.delivered_at,
    next_attempt_at = u.next_attempt_at
FROM unnest(%s::bigint[], %s::text[]::jsonb[], %s::integer[], %s::text[], %s::text[],
            %s::timestamptz[], %s::timestamptz[])
     AS u(id, entry, status_code, error, status, delivered_at, next_attempt_at)
WHERE d.id = u.id AND d.status IN ('pending', 'failed')
"""


def deliveries_record(
    *,
    outcomes: Sequence[tuple[WebhookDelivery, Attempt]],
    now: datetime,
    rng: random.Random | None = None,
) -> int:
    """Write a batch of claimed deliveries' attempts in one UPDATE; rows ended meanwhile (their
    webhook was deleted) are left as they are. Returns how many rows were written."""
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
