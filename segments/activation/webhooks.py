"""Webhook writes: create (the secret shown once), delete, and the outbox enqueue that the
recompute calls in the transaction that changes memberships.

Deliveries are rows (``WebhookDelivery``) written with the membership change itself, so a change
that commits is always announced and one that rolls back never is; the sender
(``segments.activation.sender``) delivers them afterwards, with retries.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from cdp.crypto.envelope import decrypt, encrypt
from cdp.crypto.services import data_key_create, data_keys_destroy
from cdp.ops.sequences import next_ids
from consent.selectors import allowed_sql
from segments.activation.addresses import webhook_url_check
from segments.activation.models import DeliveryStatus, Webhook, WebhookDelivery, WebhookEvent
from segments.models import Segment

logger = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
EVENT_TYPES = {WebhookEvent.ENTER: "segment.entered", WebhookEvent.EXIT: "segment.exited"}


@dataclass(frozen=True)
class CreatedWebhook:
    webhook: Webhook
    secret: str  # shown once, in the creation response


@transaction.atomic
def webhook_create(
    *, segment: Segment, url: str, events: Sequence[str], created_by: str
) -> CreatedWebhook:
    """A webhook on ``segment``'s enter / exit events with a fresh signing secret, stored
    encrypted under the webhook's own data key. ``InvalidInput`` for a URL the address policy
    refuses (``segments.activation.addresses``)."""
    webhook_url_check(url)
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    (webhook_id,) = next_ids(Webhook._meta.db_table, 1)
    key = data_key_create()
    webhook = Webhook.objects.create(
        id=webhook_id,
        segment=segment,
        url=url,
        secret_ciphertext=encrypt(secret, key=key, aad=Webhook.secret_aad(webhook_id)),
        data_key=key,
        events=sorted(set(events)),
        created_by=created_by,
    )
    return CreatedWebhook(webhook=webhook, secret=secret)


def webhook_secret(webhook: Webhook) -> str:
    """The signing secret (``KeyDestroyed`` once the webhook was deleted)."""
    return decrypt(webhook.secret_ciphertext, aad=Webhook.secret_aad(webhook.pk))


@transaction.atomic
def webhook_delete(*, webhook: Webhook, now: datetime | None = None) -> Webhook:
    """Deactivate the webhook, destroy its secret's key, and end its undelivered deliveries
    (dead, "webhook deleted"); the delivery log stays readable."""
    now = now or timezone.now()
    locked = Webhook.objects.select_for_update().get(pk=webhook.pk)
    if locked.deleted_at is None:
        locked.active = False
        locked.deleted_at = now
        locked.save(update_fields=["active", "deleted_at"])
        data_keys_destroy(ids=[locked.data_key_id])
        WebhookDelivery.objects.filter(
            webhook_id=locked.pk, status__in=[DeliveryStatus.PENDING, DeliveryStatus.FAILED]
        ).update(status=DeliveryStatus.DEAD, last_error="webhook deleted", next_attempt_at=None)
    return locked


_ENQUEUE = """
INSERT INTO segments_webhookdelivery
    (webhook_id, event_type, profile_id, payload, status, attempts, next_attempt_at,
     last_error, attempt_log, created_at)
SELECT w.id, %s, m.profile_id,
       jsonb_build_object(
           'event', %s,
           'segment', jsonb_build_object('id', %s::bigint, 'name', %s::text),
           'profile_id', m.profile_id,
           'occurred_at', %s::text),
       %s, 0, %s, '', '[]'::jsonb, %s
FROM unnest(%s::bigint[]) AS m(profile_id)
CROSS JOIN unnest(%s::bigint[]) AS w(id)
WHERE {allowed}
ORDER BY m.profile_id, w.id
"""


def webhook_deliveries_enqueue(
    *, segment_id: int, entered: Sequence[int], exited: Sequence[int], at: datetime
) -> int:
    """Write the outbox rows announcing that ``entered`` profiles entered and ``exited``
    profiles left segment ``segment_id`` at ``at``: one ``WebhookDelivery`` per (active webhook
    subscribed to the event, profile). Returns how many rows were written.

    Call it inside the transaction that writes those membership changes (the recompute, in
    ``segments/services/``), after the segment's ``too_small`` / ``member_count`` are updated
    for this recompute: the rows then commit or roll back with the change. It is set-based (one
    INSERT per event type, whatever the number of profiles) and costs one query when the
    segment has no webhook. Nothing is enqueued for a deleted or too-small segment (it is not
    served for activation), and only profiles allowed for the segment's consent purpose at this
    moment are announced, entries and exits alike. The sender is kicked once the transaction
    commits (beat's periodic run catches anything a lost kick leaves).
    """
    hooks = list(
        Webhook.objects.filter(segment_id=segment_id, active=True, deleted_at__isnull=True)
        .filter(segment__deleted_at__isnull=True, segment__too_small=False)
        .values_list("pk", "events", "segment__name", "segment__purpose")
    )
    if not hooks or not (entered or exited):
        return 0
    name, purpose = hooks[0][2], hooks[0][3]
    allowed, allowed_params = allowed_sql(purpose, profile_column="m.profile_id")
    now = timezone.now()
    written = 0
    with connection.cursor() as cursor:
        for event, profile_ids in ((WebhookEvent.ENTER, entered), (WebhookEvent.EXIT, exited)):
            webhook_ids = [pk for pk, events, _, _ in hooks if event in events]
            if not webhook_ids or not profile_ids:
                continue
            event_type = EVENT_TYPES[event]
            params: list[Any] = [
                event_type,
                event_type,
                segment_id,
                name,
                at.isoformat(),
                DeliveryStatus.PENDING.value,
                at,
                now,
                sorted(set(profile_ids)),
                webhook_ids,
                *allowed_params,
            ]
            cursor.execute(_ENQUEUE.format(allowed=allowed), params)
            written += cursor.rowcount
    if written:
        transaction.on_commit(_sender_kick)
    return written


def _sender_kick() -> None:
    # Imported here: the task module imports the sender, which imports this module's reads.
    from segments.activation.tasks import webhook_deliveries_kick

    webhook_deliveries_kick()
