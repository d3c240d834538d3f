from __future__ import annotations

from django.db.models import QuerySet

from cdp.ingestion.models import Event, Record, Source


def source_by_write_key_digest(key_digest: str) -> Source | None:
    return Source.objects.filter(write_key_digest=key_digest, disabled_at__isnull=True).first()


def source_by_name(name: str) -> Source | None:
    return Source.objects.filter(name=name).first()


def events_list(
    *,
    source: str | None = None,
    user_id: str | None = None,
    anonymous_id: str | None = None,
    type: str | None = None,
    event_name: str | None = None,
) -> QuerySet[Event]:
    events = Event.objects.select_related("source")
    if source:
        events = events.filter(source__name=source)
    if user_id:
        events = events.filter(user_id=user_id)
    if anonymous_id:
        events = events.filter(anonymous_id=anonymous_id)
    if type:
        events = events.filter(type=type)
    if event_name:
        events = events.filter(event_name=event_name)
    return events


def records_list(*, source: str | None = None, external_id: str | None = None) -> QuerySet[Record]:
    records = Record.objects.select_related("source")
    if source:
        records = records.filter(source__name=source)
    if external_id:
        records = records.filter(external_id=external_id)
    return records
