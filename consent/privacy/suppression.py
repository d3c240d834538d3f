"""The suppression list: identifiers of erased people, by kind and blind index, never by value.

``identity.services.identifiers.identifiers_get_or_create`` (the only place identifiers are
created) asks ``suppressed_among`` about the identifiers it has just created and takes back the
suppressed ones, so a suppressed identifier never becomes a node again; the resolver then drops
the events and records that carry one, and ingestion drops the PII anchored on one.

Lifting (``suppression_lift``, ``manage.py lift_suppression``) keeps the row, stamped with who
lifted it, when and why, and writes a ``SUPPRESSION_LIFTED`` audit entry; from then on the
identifier may be created again.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable

import orjson
from django.db import transaction
from django.utils import timezone

from cdp.api.errors import InvalidInput, NotFound
from cdp.audit.models import AuditAction
from cdp.audit.services import audit_record
from cdp.crypto.blind_index import blind_index
from cdp.ops.bulk import bound_cursor
from consent.models import ACTOR_MAX_LENGTH, Suppression
from identity.normalization import normalize

IndexKey = tuple[str, bytes]

# Served by the partial unique index on live (kind, blind_index).
_SUPPRESSED = """
SELECT s.kind, s.blind_index
FROM consent_suppression s
JOIN jsonb_to_recordset(%s::jsonb) AS t(kind varchar, blind_index text)
  ON s.kind = t.kind AND s.blind_index = decode(t.blind_index, 'base64')
WHERE s.lifted_at IS NULL
"""


def suppressed_among(keys: Iterable[IndexKey]) -> set[IndexKey]:
    """Which of these (kind, blind index) pairs have a live suppression: one indexed query, none
    for no keys."""
    wanted = list(keys)
    if not wanted:
        return set()
    document = orjson.dumps(
        [{"kind": kind, "blind_index": base64.b64encode(index).decode()} for kind, index in wanted]
    ).decode()
    with bound_cursor() as cursor:
        cursor.execute(_SUPPRESSED, [document])
        return {(kind, bytes(index)) for kind, index in cursor.fetchall()}


@transaction.atomic
def suppression_lift(*, kind: str, raw_value: object, actor: str, reason: str) -> Suppression:
    """Lift the live suppression of one identifier (the value as sent, normalized like the
    resolver does). The row stays, with ``lifted_at`` / ``lifted_by`` / ``lift_reason``; a
    ``SUPPRESSION_LIFTED`` audit entry names the suppression and its request, never the value.
    ``NotFound`` when the identifier is not suppressed, ``InvalidInput`` for an unknown kind, an
    unusable value or a missing reason."""
    if not reason.strip():
        raise InvalidInput("Give the reason for lifting.", code="reason_required", attr="reason")
    try:
        value = normalize(kind, raw_value)
    except ValueError:
        raise InvalidInput("Unknown identifier kind.", code="invalid_kind", attr="kind") from None
    if value is None:
        raise InvalidInput("Not a usable identifier value.", code="invalid_value", attr="value")
    suppression = (
        Suppression.objects.select_for_update()
        .filter(kind=kind, blind_index=blind_index(kind, value), lifted_at__isnull=True)
        .first()
    )
    if suppression is None:
        raise NotFound("This identifier is not suppressed.", code="suppression_not_found")
    suppression.lifted_at = timezone.now()
    suppression.lifted_by = actor[:ACTOR_MAX_LENGTH]
    suppression.lift_reason = reason
    suppression.save(update_fields=["lifted_at", "lifted_by", "lift_reason"])
    audit_record(
        actor=actor,
        action=AuditAction.SUPPRESSION_LIFTED,
        target_type="suppression",
        target_id=suppression.pk,
        details={
            "kind": kind,
            "request_id": str(suppression.request_id) if suppression.request_id else None,
            "reason": reason,
        },
    )
    return suppression
