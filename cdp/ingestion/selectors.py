from __future__ import annotations

import time
from dataclasses import dataclass

from django.conf import settings
from django.db.models import QuerySet

from cdp.api import keys
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


# --- write keys: the tracking API's authentication lookup ----------------------------------
@dataclass(frozen=True)
class SourcePrincipal:
    """What a valid write key authenticates as: the source, without loading the model."""

    source_id: int


class _WriteKeyCache:
    """Digest -> source for a few seconds, so the hot ingest path skips the database lookup.

    Each process keeps its own: a disabled or rotated key stops working everywhere within
    ``WRITE_KEY_CACHE_SECONDS`` (and at once in the process that changed it).
    """

    max_entries = 10_000

    def __init__(self) -> None:
        self._entries: dict[str, tuple[SourcePrincipal, float]] = {}

    def get(self, key_digest: str) -> SourcePrincipal | None:
        hit = self._entries.get(key_digest)
        if hit is None or hit[1] < time.monotonic():
            return None
        return hit[0]

    def put(self, key_digest: str, principal: SourcePrincipal) -> None:
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        ttl = settings.CDP_INGEST["WRITE_KEY_CACHE_SECONDS"]
        self._entries[key_digest] = (principal, time.monotonic() + ttl)

    def clear(self) -> None:
        self._entries.clear()


write_key_cache = _WriteKeyCache()


def source_for_write_key(plaintext: str) -> SourcePrincipal | None:
    key_digest = keys.digest(plaintext)
    principal = write_key_cache.get(key_digest)
    if principal is not None:
        return principal
    source = source_by_write_key_digest(key_digest)
    if source is None or not keys.same(key_digest, source.write_key_digest):
        return None
    principal = SourcePrincipal(source_id=source.pk)
    write_key_cache.put(key_digest, principal)
    return principal
