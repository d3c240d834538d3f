"""Segment webhooks: signing, the outbox enqueue (consent, too-small, events), the sender
against a real local HTTP server (retries with backoff, dead after the last attempt, the
delivery log, timeouts, redirects), the SSRF address policy, the API and its scopes."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import orjson
import pytest
from rest_framework.test import APIClient

from cdp.crypto.models import DataKey
from cdp.ingestion.services import SourceWithKey
from segments.activation.addresses import address_allowed
from segments.activation.models import DeliveryStatus, Webhook, WebhookDelivery
from segments.activation.sender import (
    Attempt,
    deliveries_record,
    webhook_deliveries_claim,
    webhook_deliveries_send,
)
from segments.activation.signing import signature_header, signature_verify
from segments.activation.webhooks import (
    webhook_create,
    webhook_delete,
    webhook_deliveries_enqueue,
    webhook_secret,
)
from segments.models import Segment
from tests.conftest import post_json
from tests.identity.resolving import T0, ingest, message, pid, resolve
from tests.segments.activating import (
    activation_settings,
    consent_set,
    people_create,
    segment_with_members,
)
from tests.segments.receiver import receiver

pytestmark = pytest.mark.django_db
Client = Callable[..., APIClient]
ADA = "ada@example.com"


@pytest.fixture(autouse=True)
def _local_receivers(settings: Any) -> None:
    """The receivers of these tests listen on http://127.0.0.1 (the SSRF tests turn it off)."""
    activation_settings(
        settings, WEBHOOK_ALLOW_HTTP=True, WEBHOOK_ALLOW_PRIVATE=True, WEBHOOK_TIMEOUT_SECONDS=2
    )


@pytest.fixture
def people(source: SourceWithKey) -> dict[str, int]:
    ids = people_create(
        source.source.pk,
        [
            {"user": "ada", "traits": {"plan": "pro"}, "emails": [ADA]},
            {"user": "bob", "traits": {"plan": "free"}},
        ],
    )
    return dict(zip(["ada", "bob"], ids, strict=True))


@pytest.fixture
def segment(people: dict[str, int]) -> Segment:
    return segment_with_members("vip", [], purpose="analytics")


def _hook(segment: Segment, url: str, events: tuple[str, ...] = ("enter", "exit")) -> Any:
    return webhook_create(segment=segment, url=url, events=events, created_by="test")


# --- signing ------------------------------------------------------------------------------------
def test_a_signature_verifies_and_a_tampered_body_fails() -> None:
    body = b'{"event":"segment.entered","profile_id":1}'
    now = int(time.time())
    header = signature_header(secret="whsec_k", timestamp=now, body=body)
    assert header.startswith(f"t={now},v1=") and len(header.split("v1=")[1]) == 64
    assert signature_verify(secret="whsec_k", header=header, body=body, now=now)
    assert not signature_verify(secret="whsec_k", header=header, body=body + b" ", now=now)
    assert not signature_verify(
        secret="whsec_k", header=header, body=body.replace(b"1", b"2"), now=now
    )
    assert not signature_verify(secret="whsec_other", header=header, body=body, now=now)
    assert not signature_verify(secret="whsec_k", header=header, body=body, now=now + 301)
    assert not signature_verify(secret="whsec_k", header="v1=abc", body=body, now=now)


def test_the_documented_signature_example_holds() -> None:
    """docs/segments.md shows this request: a receiver checking its code against it gets the
    same hex digest (HMAC-SHA256 of "<t>.<body>" keyed with the secret)."""
    body = (
        b'{"id":1234,"event":"segment.entered","segment":{"id":7,"name":"VIP"},'
        b'"profile_id":42,"occurred_at":"2026-03-01T12:00:00+00:00"}'
    )
    header = signature_header(secret="whsec_test", timestamp=1767225600, body=body)
    assert header == (
        "t=1767225600,v1=ec37e110f0d670739f52675e4c70cdc8486a51a83d2d3ea03066884d67694fb7"
    )


# --- enqueue ------------------------------------------------------------------------------------
def test_enqueue_writes_one_delivery_per_webhook_and_profile(
    people: dict[str, int], segment: Segment
) -> None:
    both = _hook(segment, "http://127.0.0.1:9/a").webhook
    exits = _hook(segment, "http://127.0.0.1:9/b", events=("exit",)).webhook
    written = webhook_deliveries_enqueue(
        segment_id=segment.pk, entered=[people["ada"], people["bob"]], exited=[people["bob"]], at=T0
    )
    assert written == 4  # 2 entries for `both`, 1 exit each
    rows = set(WebhookDelivery.objects.values_list("webhook_id", "event_type", "profile_id"))
    assert rows == {
        (both.pk, "segment.entered", people["ada"]),
        (both.pk, "segment.entered", people["bob"]),
        (both.pk, "segment.exited", people["bob"]),
        (exits.pk, "segment.exited", people["bob"]),
    }
    delivery = WebhookDelivery.objects.get(webhook=exits)
    assert delivery.payload == {
        "event": "segment.exited",
        "segment": {"id": segment.pk, "name": "vip"},
        "profile_id": people["bob"],
        "occurred_at": T0.isoformat(),
    }
    assert delivery.status == DeliveryStatus.PENDING and delivery.next_attempt_at == T0


def test_enqueue_is_gated_by_the_segments_consent_purpose(people: dict[str, int]) -> None:
    segment = segment_with_members("news", [], purpose="marketing_email")  # denied by default
    _hook(segment, "http://127.0.0.1:9/a")
    consent_set("user_id", "ada", "marketing_email", "granted")
    written = webhook_deliveries_enqueue(
        segment_id=segment.pk, entered=[people["ada"], people["bob"]], exited=[], at=T0
    )
    assert written == 1
    assert list(WebhookDelivery.objects.values_list("profile_id", flat=True)) == [people["ada"]]


def test_nothing_is_enqueued_for_a_too_small_segment(people: dict[str, int]) -> None:
    segment = segment_with_members("tiny", [], too_small=True)
    _hook(segment, "http://127.0.0.1:9/a")
    assert (
        webhook_deliveries_enqueue(segment_id=segment.pk, entered=[people["ada"]], exited=[], at=T0)
        == 0
    )
    assert not WebhookDelivery.objects.exists()


def test_enqueue_commits_with_the_membership_change(
    people: dict[str, int], segment: Segment, django_capture_on_commit_callbacks: Any
) -> None:
    from django.db import transaction

    _hook(segment, "http://127.0.0.1:9/a")

    class RolledBack(Exception):
        pass

    with pytest.raises(RolledBack), transaction.atomic():
        webhook_deliveries_enqueue(segment_id=segment.pk, entered=[people["ada"]], exited=[], at=T0)
        raise RolledBack
    assert not WebhookDelivery.objects.exists()
    with django_capture_on_commit_callbacks(execute=False) as kicks:
        webhook_deliveries_enqueue(segment_id=segment.pk, entered=[people["ada"]], exited=[], at=T0)
    assert WebhookDelivery.objects.count() == 1 and len(kicks) == 1  # the sender is kicked


# --- the sender -------------------------------------------------------------------------------
def test_a_failed_delivery_is_retried_with_backoff_then_succeeds(
    people: dict[str, int], segment: Segment
) -> None:
    with receiver(500, 200) as server:
        created = _hook(segment, server.url)
        webhook_deliveries_enqueue(segment_id=segment.pk, entered=[people["ada"]], exited=[], at=T0)
        delivery = WebhookDelivery.objects.get()

        assert webhook_deliveries_send(now=T0) == 1
        delivery.refresh_from_db()
        assert delivery.status == DeliveryStatus.FAILED and delivery.attempts == 1
        assert delivery.last_status_code == 500 and delivery.last_error == "HTTP 500"
        assert delivery.next_attempt_at is not None
        wait = delivery.next_attempt_at - T0
        assert timedelta(seconds=24) <= wait <= timedelta(seconds=36)  # 30 s +/- 20 %

        assert webhook_deliveries_send(now=T0 + timedelta(seconds=20)) == 0  # not due yet
        assert webhook_deliveries_send(now=T0 + timedelta(seconds=40)) == 1
        delivery.refresh_from_db()
        assert delivery.status == DeliveryStatus.SUCCEEDED and delivery.attempts == 2
        assert delivery.delivered_at == T0 + timedelta(seconds=40)
        assert delivery.next_attempt_at is None
        assert webhook_deliveries_send(now=T0 + timedelta(days=1)) == 0  # delivered: done

    assert len(server.received) == 2
    first, second = server.received
    assert first.path == "/hooks/cdp?x=1"
    assert first.body == second.body  # the same delivery, signed again per attempt
    assert first.headers["Content-Type"] == "application/json"
    assert first.headers["X-CDP-Delivery"] == str(delivery.pk)
    assert first.headers["X-CDP-Event"] == "segment.entered"
    for request in server.received:
        assert signature_verify(
            secret=created.secret,
            header=request.headers["X-CDP-Signature"],
            body=request.body,
            now=int(time.time()),
        )
    body = orjson.loads(first.body)
    assert body == {
        "id": delivery.pk,
        "event": "segment.entered",
        "segment": {"id": segment.pk, "name": "vip"},
        "profile_id": people["ada"],
        "occurred_at": T0.isoformat(),
    }
    assert ADA.encode() not in first.body  # no PII in payloads
    log = delivery.attempt_log
    assert [(e["attempt"], e["status_code"], e["error"]) for e in log] == [
        (1, 500, "HTTP 500"),
        (2, 200, ""),
    ]
    assert log[0]["at"] == T0.isoformat() and all(e["duration_ms"] >= 0 for e in log)


def test_a_delivery_is_dead_after_its_last_attempt(
    people: dict[str, int], segment: Segment, settings: Any
) -> None:
    activation_settings(settings, WEBHOOK_RETRY_SECONDS=[10, 60])  # 3 attempts in all
    with receiver(503) as server:
        _hook(segment, server.url)
        webhook_deliveries_enqueue(segment_id=segment.pk, entered=[people["ada"]], exited=[], at=T0)
        moment = T0
        for _ in range(3):
            assert webhook_deliveries_send(now=moment) == 1
            moment += timedelta(hours=1)
        assert webhook_deliveries_send(now=moment + timedelta(days=30)) == 0
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.DEAD and delivery.attempts == 3
    assert delivery.next_attempt_at is None and delivery.delivered_at is None
    assert [e["status_code"] for e in delivery.attempt_log] == [503, 503, 503]
    assert len(server.received) == 3


def test_the_backoff_grows_between_attempts(
    people: dict[str, int], segment: Segment, settings: Any
) -> None:
    with receiver(500) as server:
        _hook(segment, server.url)
        webhook_deliveries_enqueue(segment_id=segment.pk, entered=[people["ada"]], exited=[], at=T0)
        waits = []
        moment = T0
        for _ in range(5):
            webhook_deliveries_send(now=moment)
            delivery = WebhookDelivery.objects.get()
            assert delivery.next_attempt_at is not None
            waits.append((delivery.next_attempt_at - moment).total_seconds())
            moment = delivery.next_attempt_at
        webhook_deliveries_send(now=moment)
    for wait, base in zip(waits, [30, 120, 600, 3600, 21600], strict=True):
        assert 0.8 * base <= wait <= 1.2 * base
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.DEAD and delivery.attempts == 6


def test_timeouts_and_redirects_are_failed_attempts(
    people: dict[str, int], segment: Segment, settings: Any
) -> None:
    activation_settings(settings, WEBHOOK_TIMEOUT_SECONDS=0.3)
    with receiver(200, delay_seconds=1.0) as slow, receiver(302) as moved:
        _hook(segment, slow.url)
        _hook(segment, moved.url)
        webhook_deliveries_enqueue(segment_id=segment.pk, entered=[people["ada"]], exited=[], at=T0)
        assert webhook_deliveries_send(now=T0) == 2
    errors = dict(WebhookDelivery.objects.values_list("webhook__url", "last_error"))
    assert errors[slow.url] == "TimeoutError"
    assert errors[moved.url] == "HTTP 302"  # never followed
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"failed"}


def test_a_refused_connection_is_a_failed_attempt(people: dict[str, int], segment: Segment) -> None:
    with receiver(200) as server:
        url = server.url
    _hook(segment, url)  # the server is gone: nothing listens there now
    webhook_deliveries_enqueue(segment_id=segment.pk, entered=[people["ada"]], exited=[], at=T0)
    webhook_deliveries_send(now=T0)
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.last_status_code is None and delivery.last_error == "ConnectionRefusedError"


def test_the_sender_refuses_a_private_address_at_send_time(
    people: dict[str, int], segment: Segment, settings: Any
) -> None:
    with receiver(200) as server:
        _hook(segment, server.url)  # created while private addresses were allowed
        activation_settings(settings, WEBHOOK_ALLOW_PRIVATE=False)
        webhook_deliveries_enqueue(segment_id=segment.pk, entered=[people["ada"]], exited=[], at=T0)
        webhook_deliveries_send(now=T0)
    assert server.received == []
    assert WebhookDelivery.objects.get().last_error == "address_not_allowed"


def test_a_batch_is_sent_concurrently(
    people: dict[str, int], segment: Segment, settings: Any
) -> None:
    activation_settings(settings, WEBHOOK_CONCURRENCY=4)
    with receiver(200, delay_seconds=0.5) as server:
        for index in range(4):
            _hook(segment, f"{server.url}&hook={index}")
        webhook_deliveries_enqueue(segment_id=segment.pk, entered=[people["ada"]], exited=[], at=T0)
        assert webhook_deliveries_send(now=T0) == 4
    assert server.max_in_flight > 1
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"succeeded"}


def test_an_unreadable_secret_is_a_failed_attempt(people: dict[str, int], segment: Segment) -> None:
    from cdp.crypto.services import data_keys_destroy

    with receiver(200) as server:
        webhook = _hook(segment, server.url).webhook
        webhook_deliveries_enqueue(segment_id=segment.pk, entered=[people["ada"]], exited=[], at=T0)
        data_keys_destroy(ids=[webhook.data_key_id])
        webhook_deliveries_send(now=T0)
    assert server.received == []  # never sent unsigned
    assert WebhookDelivery.objects.get().last_error == "secret_unreadable"


def test_a_claimed_delivery_is_not_taken_twice(people: dict[str, int], segment: Segment) -> None:
    from segments.activation.sender import webhook_deliveries_claim

    _hook(segment, "http://127.0.0.1:9/a")
    webhook_deliveries_enqueue(segment_id=segment.pk, entered=[people["ada"]], exited=[], at=T0)
    (claimed,) = webhook_deliveries_claim(now=T0, limit=10)
    assert claimed.attempts == 1
    assert webhook_deliveries_claim(now=T0, limit=10) == []  # leased
    # Its worker died: the lease runs out and the delivery is due again.
    (again,) = webhook_deliveries_claim(now=T0 + timedelta(seconds=61), limit=10)
    assert again.pk == claimed.pk and again.attempts == 2


def test_a_delivery_is_not_sent_once_consent_is_withdrawn(
    people: dict[str, int], segment: Segment
) -> None:
    """Consent is checked again when a delivery is sent, not only when it was enqueued."""
    with receiver(500, 500, 200) as server:
        _hook(segment, server.url)
        webhook_deliveries_enqueue(
            segment_id=segment.pk, entered=[people["ada"], people["bob"]], exited=[], at=T0
        )
        assert WebhookDelivery.objects.count() == 2  # both allowed (analytics) when enqueued
        assert webhook_deliveries_send(now=T0) == 2  # first attempts fail (500)
        consent_set("user_id", "ada", "analytics", "denied")

        assert webhook_deliveries_send(now=T0 + timedelta(minutes=5)) == 1  # bob's retry only
    (request,) = server.received[2:]
    assert orjson.loads(request.body)["profile_id"] == people["bob"]
    ada = WebhookDelivery.objects.get(profile_id=people["ada"])
    assert ada.status == DeliveryStatus.DEAD and ada.last_error == "consent_withdrawn"
    assert ada.attempts == 1 and len(ada.attempt_log) == 1  # not sent: no attempt counted
    assert ada.next_attempt_at is None
    bob = WebhookDelivery.objects.get(profile_id=people["bob"])
    assert bob.status == DeliveryStatus.SUCCEEDED
    assert webhook_deliveries_send(now=T0 + timedelta(days=1)) == 0


def test_a_denied_by_default_purpose_needs_a_standing_grant_at_send_time(
    people: dict[str, int],
) -> None:
    segment = segment_with_members("news", [], purpose="marketing_email")
    consent_set("user_id", "ada", "marketing_email", "granted")
    with receiver(200) as server:
        _hook(segment, server.url)
        webhook_deliveries_enqueue(segment_id=segment.pk, entered=[people["ada"]], exited=[], at=T0)
        consent_set("user_id", "ada", "marketing_email", "denied")
        assert webhook_deliveries_send(now=T0) == 0
    assert server.received == []
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.DEAD and delivery.last_error == "consent_withdrawn"
    assert delivery.attempts == 0 and delivery.attempt_log == []


def test_the_consent_of_the_survivor_counts_for_a_profile_merged_away(
    people: dict[str, int], segment: Segment, source: SourceWithKey
) -> None:
    ingest(source.source.pk, message("track", anonymousId="anon-z", event="Product Viewed"))
    resolve()
    visitor = pid("anonymous_id", "anon-z")
    with receiver(200) as server:
        _hook(segment, server.url)
        webhook_deliveries_enqueue(segment_id=segment.pk, entered=[visitor], exited=[], at=T0)
        # The visitor turns out to be Ada (her older profile survives), and Ada says no.
        ingest(source.source.pk, message("identify", at=5, userId="ada", anonymousId="anon-z"))
        resolve()
        assert pid("anonymous_id", "anon-z") == people["ada"] != visitor
        consent_set("user_id", "ada", "analytics", "denied")
        assert webhook_deliveries_send(now=T0) == 0
    assert server.received == []
    assert WebhookDelivery.objects.get().last_error == "consent_withdrawn"


def test_a_stale_workers_outcome_does_not_overwrite_a_newer_attempt(
    people: dict[str, int], segment: Segment
) -> None:
    _hook(segment, "http://127.0.0.1:9/a")
    webhook_deliveries_enqueue(segment_id=segment.pk, entered=[people["ada"]], exited=[], at=T0)
    (stale,) = webhook_deliveries_claim(now=T0, limit=10)
    # The first worker's request outlives its lease: another claims the delivery again.
    (fresh,) = webhook_deliveries_claim(now=T0 + timedelta(seconds=61), limit=10)
    assert (stale.attempts, fresh.attempts) == (1, 2)
    later = T0 + timedelta(seconds=62)

    failed = Attempt(status_code=503, error="HTTP 503", duration_ms=3)
    assert deliveries_record(outcomes=[(fresh, failed)], now=later) == 1
    ok = Attempt(status_code=200, error="", duration_ms=61_000)
    assert deliveries_record(outcomes=[(stale, ok)], now=later) == 0  # too late: ignored

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.FAILED and delivery.last_error == "HTTP 503"
    assert delivery.attempts == 2 and delivery.delivered_at is None
    assert [(e["attempt"], e["status_code"]) for e in delivery.attempt_log] == [(2, 503)]


def test_a_stale_outcome_written_first_is_ignored_too(
    people: dict[str, int], segment: Segment
) -> None:
    _hook(segment, "http://127.0.0.1:9/a")
    webhook_deliveries_enqueue(segment_id=segment.pk, entered=[people["ada"]], exited=[], at=T0)
    (stale,) = webhook_deliveries_claim(now=T0, limit=10)
    (fresh,) = webhook_deliveries_claim(now=T0 + timedelta(seconds=61), limit=10)
    later = T0 + timedelta(seconds=62)
    ok = Attempt(status_code=200, error="", duration_ms=3)
    assert deliveries_record(outcomes=[(stale, ok)], now=later) == 0
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.PENDING and delivery.attempt_log == []
    failed = Attempt(status_code=503, error="HTTP 503", duration_ms=3)
    assert deliveries_record(outcomes=[(fresh, failed)], now=later) == 1
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED and delivery.attempts == 2


def test_an_answer_trickling_past_the_timeout_is_cut_off(
    people: dict[str, int], segment: Segment, settings: Any
) -> None:
    """Each read arrives within the timeout; the attempt as a whole may not take longer."""
    activation_settings(settings, WEBHOOK_TIMEOUT_SECONDS=0.5)
    with receiver(200, delay_seconds=3.0, drip_seconds=0.1) as server:
        _hook(segment, server.url)
        webhook_deliveries_enqueue(segment_id=segment.pk, entered=[people["ada"]], exited=[], at=T0)
        started = time.monotonic()
        assert webhook_deliveries_send(now=T0) == 1
        took = time.monotonic() - started
    assert len(server.received) == 1
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.FAILED and delivery.last_error == "TimeoutError"
    assert took < 2.0 and delivery.attempt_log[0]["duration_ms"] < 1500


# --- secrets and deletion -------------------------------------------------------------------
def test_the_secret_is_stored_encrypted_and_destroyed_with_the_webhook(
    people: dict[str, int], segment: Segment
) -> None:
    created = _hook(segment, "http://127.0.0.1:9/a")
    webhook = Webhook.objects.get()
    assert created.secret.startswith("whsec_")
    assert created.secret.encode() not in bytes(webhook.secret_ciphertext)
    assert webhook_secret(webhook) == created.secret
    webhook_deliveries_enqueue(segment_id=segment.pk, entered=[people["ada"]], exited=[], at=T0)

    webhook_delete(webhook=webhook)
    webhook.refresh_from_db()
    assert not webhook.active and webhook.deleted_at is not None
    assert DataKey.objects.get(pk=webhook.data_key_id).destroyed_at is not None
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.DEAD and delivery.last_error == "webhook deleted"
    assert (
        webhook_deliveries_enqueue(segment_id=segment.pk, entered=[people["bob"]], exited=[], at=T0)
        == 0
    )


# --- the address policy (SSRF) ----------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://10.1.2.3/hook",
        "https://172.16.0.1/hook",
        "https://192.168.1.1/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://100.64.0.1/hook",
        "https://[::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://[fd00::1]/hook",
        "https://0.0.0.0/hook",
        # IPv6 addresses standing for a private IPv4 one (ipaddress calls them global).
        "https://[64:ff9b::a9fe:a9fe]/hook",  # NAT64 of 169.254.169.254
        "https://[64:ff9b:1::808:808]/hook",  # local-use NAT64: refused whatever it embeds
        "https://[2002:a9fe:a9fe::1]/hook",  # 6to4 of 169.254.169.254
        "https://[2002:7f00:1::1]/hook",  # 6to4 of 127.0.0.1
        "https://[::a9fe:a9fe]/hook",  # IPv4-compatible
        "https://[::ffff:a9fe:a9fe]/hook",  # IPv4-mapped
        "https://[::ffff:0:a9fe:a9fe]/hook",  # IPv4-translated
    ],
)
def test_private_addresses_are_refused_in_production(
    segment: Segment, api_client: Client, settings: Any, url: str
) -> None:
    activation_settings(settings, WEBHOOK_ALLOW_HTTP=False, WEBHOOK_ALLOW_PRIVATE=False)
    response = post_json(
        api_client("segments:write"), f"/v1/segments/{segment.pk}/webhooks", {"url": url}
    )
    assert response.status_code == 400, url
    assert response.json()["code"] == "address_not_allowed" and response.json()["attr"] == "url"
    assert not Webhook.objects.exists()


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
        ("64:ff9b::808:808", True),  # NAT64 of a public address
        ("2002:808:808::1", True),  # 6to4 of a public address
        ("::ffff:808:808", True),
        ("64:ff9b::a9fe:a9fe", False),
        ("64:ff9b::a00:1", False),  # 10.0.0.1
        ("2002:c0a8:101::1", False),  # 192.168.1.1
        ("2002:6440:1::1", False),  # 100.64.0.1
        ("64:ff9b:1::a9fe:a9fe", False),
        ("240.0.0.1", False),  # reserved
    ],
)
def test_embedded_ipv4_addresses_are_checked_as_ipv4(address: str, allowed: bool) -> None:
    assert address_allowed(address) is allowed


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://203.0.113.9/hook", "https_required"),
        ("ftp://203.0.113.9/hook", "https_required"),
        ("https://user:pass@203.0.113.9/hook", "invalid_url"),
        ("https:///hook", "invalid_url"),
        ("https://203.0.113.9:99999/", "invalid_url"),
    ],
)
def test_urls_must_be_https_without_credentials(
    segment: Segment, api_client: Client, settings: Any, url: str, code: str
) -> None:
    activation_settings(settings, WEBHOOK_ALLOW_HTTP=False, WEBHOOK_ALLOW_PRIVATE=False)
    response = post_json(
        api_client("segments:write"), f"/v1/segments/{segment.pk}/webhooks", {"url": url}
    )
    assert response.status_code == 400
    assert response.json()["code"] == code


def test_a_public_https_address_is_accepted(
    segment: Segment, api_client: Client, settings: Any
) -> None:
    activation_settings(settings, WEBHOOK_ALLOW_HTTP=False, WEBHOOK_ALLOW_PRIVATE=False)
    # An address literal: nothing is resolved or contacted when the webhook is created.
    url = "https://8.8.8.8/hooks/cdp"
    response = post_json(
        api_client("segments:write"), f"/v1/segments/{segment.pk}/webhooks", {"url": url}
    )
    assert response.status_code == 201, response.content
    assert response.json()["url"] == url


# --- the API ------------------------------------------------------------------------------------
def test_the_webhook_api_and_the_delivery_log(
    people: dict[str, int], segment: Segment, api_client: Client
) -> None:
    writer = api_client("segments:write")
    reader = api_client("segments:read")
    base = f"/v1/segments/{segment.pk}/webhooks"
    with receiver(500, 200) as server:
        created = post_json(writer, base, {"url": server.url, "events": ["enter"]})
        assert created.status_code == 201, created.content
        body = created.json()
        assert body["secret"].startswith("whsec_") and body["events"] == ["enter"]
        assert body["active"] is True and body["segment_id"] == segment.pk
        hook_id = body["id"]

        listed = reader.get(base).json()
        assert [hook["id"] for hook in listed] == [hook_id]
        assert "secret" not in listed[0]  # shown once

        webhook_deliveries_enqueue(segment_id=segment.pk, entered=[people["ada"]], exited=[], at=T0)
        webhook_deliveries_send(now=T0)
        webhook_deliveries_send(now=T0 + timedelta(minutes=1))

    log = reader.get(f"{base}/{hook_id}/deliveries").json()
    (entry,) = log["results"]
    assert entry["status"] == "succeeded" and entry["attempts"] == 2
    assert [a["status_code"] for a in entry["attempt_log"]] == [500, 200]
    assert entry["payload"]["profile_id"] == people["ada"]
    assert ADA not in orjson.dumps(log).decode()
    failed = reader.get(f"{base}/{hook_id}/deliveries?status=failed").json()
    assert failed["results"] == []

    assert reader.delete(f"{base}/{hook_id}").status_code == 403  # segments:write deletes
    assert writer.delete(f"{base}/{hook_id}").status_code == 204
    assert reader.get(base).json() == []
    assert writer.delete(f"{base}/{hook_id}").status_code == 404
    # The delivery log stays readable after deletion.
    assert len(reader.get(f"{base}/{hook_id}/deliveries").json()["results"]) == 1


def test_webhook_scopes(segment: Segment, api_client: Client) -> None:
    base = f"/v1/segments/{segment.pk}/webhooks"
    body = {"url": "http://127.0.0.1:9/a"}
    assert post_json(api_client("segments:read"), base, body).status_code == 403
    assert api_client("profiles:read").get(base).status_code == 403
    assert APIClient().get(base).status_code == 401
    assert (
        post_json(api_client("segments:write"), "/v1/segments/999999/webhooks", body).status_code
        == 404
    )
    bad = post_json(
        api_client("segments:write"), base, {"url": "http://127.0.0.1:9/a", "events": ["boom"]}
    )
    assert bad.status_code == 400
