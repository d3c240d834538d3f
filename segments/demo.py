"""The demo's segments: the seed rules of docs/segments.md over the demo shop's events, created
(or brought back to these definitions) and computed by ``seed_demo``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from segments.metrics import metrics_rebuild, metrics_rfm_recompute
from segments.models import Segment
from segments.services.definitions import segment_create, segment_update
from segments.services.recompute import RecomputeOutcome, segment_recompute

DEMO_ACTOR = "command:seed_demo"
# Small enough for the demo's 2,000 people to serve them; production defaults to 100.
DEMO_MIN_SIZE = 20


@dataclass(frozen=True)
class DemoSegment:
    name: str
    purpose: str
    description: str
    definition: dict[str, Any]


DEMO_SEGMENTS = (
    DemoSegment(
        name="VIP",
        purpose="personalization",
        description="Total spend over $500 and a visit in the last 7 days.",
        definition={
            "all": [
                {"computed": "total_spend", "op": "gt", "value": 500},
                {"computed": "last_seen_at", "op": "gte", "value": "-7d"},
            ]
        },
    ),
    DemoSegment(
        name="Engaged browsers",
        purpose="advertising",
        description="More than 3 product views and 2 cart adds in the last 30 days.",
        definition={
            "all": [
                {"event": "Product Viewed", "op": "gt", "value": 3, "within": "30d"},
                {"event": "Product Added", "op": "gte", "value": 2, "within": "30d"},
            ]
        },
    ),
    DemoSegment(
        name="Cart abandoners",
        purpose="marketing_email",
        description="Added to cart in the last 7 days and did not order within the hour.",
        definition={
            "sequence": {
                "did": {"event": "Product Added"},
                "then_not": {"event": "Order Completed"},
                "within": "1h",
            },
            "since": "7d",
        },
    ),
    DemoSegment(
        name="Newsletter audience",
        purpose="marketing_email",
        description="Everyone who may receive marketing e-mail.",
        definition={"consent": "marketing_email"},
    ),
)


def demo_segments_compute() -> list[tuple[Segment, RecomputeOutcome]]:
    """Create the demo segments (or restore their definitions), compute every profile's
    metrics and RFM scores, then recompute each segment fully."""
    metrics_rebuild()
    metrics_rfm_recompute()
    outcomes = []
    for demo in DEMO_SEGMENTS:
        segment = Segment.objects.filter(name=demo.name, deleted_at__isnull=True).first()
        if segment is None:
            segment = segment_create(
                name=demo.name,
                definition=demo.definition,
                purpose=demo.purpose,
                description=demo.description,
                min_size=DEMO_MIN_SIZE,
                actor=DEMO_ACTOR,
            )
        elif segment.definition != demo.definition:
            segment = segment_update(
                segment_id=segment.pk, definition=demo.definition, actor=DEMO_ACTOR
            )
        outcomes.append((segment, segment_recompute(segment_id=segment.pk)))
    return outcomes
