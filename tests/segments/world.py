"""A small population stored through the real ingestion and resolution path, with the same
people kept as plain Python (``reference.Person``) for the reference evaluation."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import connection

from cdp.audit.models import AuditAction
from cdp.ingestion.services import events_ingest
from consent.models import ConsentChannel
from consent.purposes import purposes
from consent.services import ChoiceInput, consent_record
from identity.selectors import identifier_find
from segments.models import Membership, ProfileMetrics, Segment
from tests.identity.resolving import T0, message, pid, resolve
from tests.segments.reference import Event, Person

NOW = T0 + timedelta(days=10)
EVENT_NAMES = ("Product Viewed", "Product Added", "Order Completed")
PLANS = ("free", "pro", "team", "Pro")
CATEGORIES = ("shoes", "hats", "shirts")
TAGS = ("a", "b", "c")


@dataclass
class World:
    people: dict[int, Person]  # profile id -> person
    ref_segment: int


def build_world(source_id: int, *, size: int = 24, seed: int = 7) -> World:
    rng = random.Random(seed)
    specs: list[tuple[dict[str, object], list[Event]]] = []
    for index in range(size):
        traits: dict[str, object] = {}
        if rng.random() < 0.8:
            traits["plan"] = rng.choice(PLANS)
        if rng.random() < 0.7:
            traits["age"] = rng.randint(15, 70)
        if rng.random() < 0.5:
            traits["score"] = rng.choice([0.5, 1.5, 2, 3.25])
        if rng.random() < 0.5:
            traits["vip"] = rng.random() < 0.5
        if rng.random() < 0.6:
            traits["signup"] = (T0 - timedelta(days=rng.randint(0, 60))).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            )
        if rng.random() < 0.5:
            traits["tags"] = rng.sample(TAGS, rng.randint(0, 3))
        if rng.random() < 0.3:
            traits["nickname"] = rng.choice(["ada", "bob", "2026-03-01", ""])
        if rng.random() < 0.5:
            traits["email"] = f"person{index}@example.com"
        events = []
        for _ in range(rng.randint(0, 9)):
            properties: dict[str, object] = {"category": rng.choice(CATEGORIES)}
            if rng.random() < 0.8:
                properties["revenue"] = rng.choice([5, 20, 99.5, 250, "n/a"])
            at = T0 + timedelta(hours=rng.randint(-20 * 24, 10 * 24))
            events.append(Event(name=rng.choice(EVENT_NAMES), at=at, properties=properties))
        specs.append((traits, events))

    messages = []
    for index, (traits, events) in enumerate(specs):
        messages.append(message("identify", at=-30 * 86400, userId=f"p{index}", traits=traits))
        for event in events:
            body = message(
                "track", userId=f"p{index}", event=event.name, properties=event.properties
            )
            body["timestamp"] = event.at.isoformat()
            messages.append(body)
    for start in range(0, len(messages), 200):
        # Received after the last event: a later timestamp than receipt would be clamped.
        result = events_ingest(
            source_id=source_id, messages=messages[start : start + 200], received_at=NOW
        )
        assert not result.rejected, result.rejected
    resolve()

    people: dict[int, Person] = {}
    ref = Segment.objects.create(
        name="ref", purpose="analytics", min_size=0, definition={"consent": "analytics"}
    )
    for index, (traits, events) in enumerate(specs):
        profile_id = pid("user_id", f"p{index}")
        person = Person(
            traits={k: v for k, v in traits.items() if k != "email"},
            pii_traits={"email"} if "email" in traits else set(),
            events=events,
        )
        if rng.random() < 0.8:
            person.metrics = {
                "total_spend": rng.choice([0, 120, 500, 501, 900]),
                "order_count": rng.randint(0, 5),
                "event_count": len(events),
                "last_seen_at": NOW - timedelta(days=rng.randint(0, 20)),
                "first_seen_at": T0 - timedelta(days=rng.randint(0, 60)),
                "last_order_at": None
                if rng.random() < 0.3
                else NOW - timedelta(days=rng.randint(0, 40)),
                "rfm_recency": rng.choice([None, 1, 3, 5]),
            }
            ProfileMetrics.objects.create(
                profile_id=profile_id, **{k: v for k, v in person.metrics.items() if v is not None}
            )
        if rng.random() < 0.4:
            person.segments.add(ref.pk)
            Membership.objects.create(segment=ref, profile_id=profile_id, entered_at=T0)
        _consent(profile_id, index, rng, person)
        people[profile_id] = person
    return World(people=people, ref_segment=ref.pk)


def _consent(profile_id: int, index: int, rng: random.Random, person: Person) -> None:
    identifier = identifier_find(kind="user_id", raw_value=f"p{index}")
    assert identifier is not None
    choices = []
    for purpose in purposes().by_name.values():
        roll = rng.random()
        if roll < 0.25:
            choices.append(
                ChoiceInput(purpose=purpose.name, status="granted", channel=ConsentChannel.API)
            )
            person.allowed[purpose.name] = True
        elif roll < 0.5:
            choices.append(
                ChoiceInput(purpose=purpose.name, status="denied", channel=ConsentChannel.API)
            )
            person.allowed[purpose.name] = False
        else:
            person.allowed[purpose.name] = purpose.allowed_by_default
    if choices:
        consent_record(
            identifier_id=identifier.pk,
            choices=choices,
            actor="test",
            audit_action=AuditAction.CONSENT_RECORDED,
        )


def sql_members(sql: str, params: list[Any]) -> set[int]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {row[0] for row in cursor.fetchall()}
