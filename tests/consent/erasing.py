"""Helpers for the erasure tests: a person built through the tracking API, and every ciphertext
held about them, read raw before the erasure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rest_framework.test import APIClient

from cdp.audit.models import AuditAction
from cdp.ingestion.models import Event, Record
from cdp.ingestion.pii import event_pii_aad, record_pii_aad
from consent.models import ConsentChannel, ConsentEntry
from consent.services import ChoiceInput, consent_record
from identity.models import Edge, Identifier, Profile, TraitObservation
from identity.selectors import identifier_find
from tests.conftest import post_json
from tests.identity.resolving import T0, message, pid, resolve

EMAIL = "Ada.Lovelace@Example.com"
PHONE = "+44 20 7946 0958"
OTHER_EMAIL = "grace@example.com"


@dataclass
class Held:
    """What the database holds about one person, by id, and the raw ciphertexts."""

    identifiers: list[int] = field(default_factory=list)
    profiles: list[int] = field(default_factory=list)
    events: list[int] = field(default_factory=list)
    records: list[int] = field(default_factory=list)
    observations: list[int] = field(default_factory=list)
    edges: list[int] = field(default_factory=list)
    consent: list[int] = field(default_factory=list)
    # (ciphertext, aad) pairs: identifier values, event and record PII, observation values.
    ciphertexts: list[tuple[bytes, bytes]] = field(default_factory=list)


def send(client: APIClient, path: str, body: dict[str, Any]) -> None:
    response = post_json(client, path, body)
    assert response.status_code == 200, response.content


def person_ingest(client: APIClient, *, user_id: str, email: str, phone: str, tracks: int) -> None:
    """A person with two profiles merged by an alias (a phone browsing first), identify and
    track events with PII, and a CRM record (``C-<user_id>``) with the same email."""
    send(client, "/v1/page", message("page", anonymousId=f"{user_id}-phone", name="Pricing"))
    resolve()
    send(
        client,
        "/v1/identify",
        message(
            "identify",
            at=1,
            userId=user_id,
            anonymousId=f"{user_id}-laptop",
            traits={"email": email, "phone": phone, "firstName": "Ada", "plan": "pro"},
            context={"ip": "203.0.113.7"},
        ),
    )
    for n in range(tracks):
        send(
            client,
            "/v1/track",
            message("track", at=10 + n, userId=user_id, context={"traits": {"email": email}}),
        )
    resolve()
    send(
        client, "/v1/alias", message("alias", at=100, userId=user_id, previousId=f"{user_id}-phone")
    )
    response = post_json(
        client,
        "/v1/records",
        {"records": [{"external_id": f"C-{user_id}", "email": email, "last_name": "Byron"}]},
    )
    assert response.status_code == 200, response.content
    resolve()
    identifier = identifier_find(kind="email", raw_value=email)
    assert identifier is not None
    consent_record(
        identifier_id=identifier.pk,
        choices=[
            ChoiceInput(purpose="marketing_email", status="granted", channel=ConsentChannel.API)
        ],
        actor="test",
        audit_action=AuditAction.CONSENT_RECORDED,
    )


def held_by(user_id: str) -> Held:
    """Everything held about the person whose user id this is (before an erasure)."""
    profile_id = pid("user_id", user_id)
    held = Held()
    identifiers = list(Identifier.objects.filter(profile_id=profile_id))
    held.identifiers = [i.pk for i in identifiers]
    absorbed = Profile.objects.filter(merged_into_id=profile_id).values_list("pk", flat=True)
    held.profiles = [profile_id, *absorbed]
    assert len(held.profiles) >= 2, "the alias should have merged a second profile"
    held.ciphertexts += [
        (bytes(i.value_ciphertext), Identifier.value_aad(i.pk)) for i in identifiers
    ]
    events = list(Event.objects.filter(identifier_id__in=held.identifiers))
    held.events = [e.pk for e in events]
    held.ciphertexts += [
        (bytes(e.pii), event_pii_aad(source_id=e.source_id, message_id=e.message_id))
        for e in events
        if e.pii is not None
    ]
    records = list(Record.objects.filter(external_id=f"C-{user_id}"))
    held.records = [r.pk for r in records]
    held.ciphertexts += [
        (bytes(r.pii), record_pii_aad(source_id=r.source_id, external_id=r.external_id))
        for r in records
        if r.pii is not None
    ]
    observations = list(TraitObservation.objects.filter(identifier_id__in=held.identifiers))
    held.observations = [o.pk for o in observations]
    held.ciphertexts += [
        (bytes(o.value_ciphertext), TraitObservation.value_aad(o.pk))
        for o in observations
        if o.value_ciphertext is not None
    ]
    held.edges = list(Edge.objects.filter(a_id__in=held.identifiers).values_list("pk", flat=True))
    held.consent = list(
        ConsentEntry.objects.filter(identifier_id__in=held.identifiers).values_list("pk", flat=True)
    )
    return held


__all__ = ["EMAIL", "OTHER_EMAIL", "PHONE", "T0", "Held", "held_by", "person_ingest", "send"]
