"""Writes of segment definitions: create, update (a new definition is a new version), soft
delete. Every definition is validated by ``segments.dsl.definition_parse``; references to other
segments and fallbacks are refused when they would form a cycle, since the compiler inlines
referenced segments' memberships and the members API follows fallbacks until one is served.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from cdp.api.errors import Conflict, InvalidInput, NotFound
from segments.dsl import Definition, DefinitionError, definition_parse
from segments.models import NAME_MAX_LENGTH, Membership, Segment, SegmentVersion
from segments.selectors import purpose_check, segment_is_live
from segments.services.locks import segment_lock_wait
from segments.services.memberships import stays_close

# Sentinel for "not given" in updates (None is a value: no fallback).
UNSET: Any = object()
DELETED_NAME_PREFIX = "[deleted {id}] "
NAME_CONSTRAINT = "segments_segment_name_key"  # unique=True's index, named by PostgreSQL


def segment_create(
    *,
    name: str,
    definition: object,
    purpose: str,
    actor: str,
    description: str = "",
    min_size: int | None = None,
    fallback_id: int | None = None,
    now: datetime | None = None,
) -> Segment:
    """A new segment at version 1, with its recompute enqueued once the transaction commits
    (it has no members until then). ``InvalidInput`` / ``DefinitionError`` for bad input,
    ``Conflict`` for a name in use."""
    now = now or timezone.now()
    purpose_check(purpose)
    parsed = _definition_check(definition, segment_id=None)
    with transaction.atomic():
        fallback = _fallback_check(fallback_id, segment_id=None)
        _name_check(name, segment_id=None)
        segment = Segment(
            name=name,
            description=description,
            purpose=purpose,
            min_size=settings.CDP_SEGMENTS["MIN_SIZE"] if min_size is None else min_size,
            fallback=fallback,
            version=1,
            definition=parsed.doc,
            time_dependent=parsed.time_dependent,
            created_at=now,
            updated_at=now,
        )
        _save_unique(segment)
        SegmentVersion.objects.create(
            segment=segment, version=1, definition=parsed.doc, created_by=actor, created_at=now
        )
        _enqueue_recompute_on_commit(segment.pk)
    return segment


def segment_update(
    *,
    segment_id: int,
    actor: str,
    name: str = UNSET,
    description: str = UNSET,
    purpose: str = UNSET,
    min_size: int = UNSET,
    fallback_id: int | None = UNSET,
    definition: object = UNSET,
    now: datetime | None = None,
) -> Segment:
    """Change what is given. A definition that differs from the current one becomes a new
    ``SegmentVersion`` (``version`` + 1) and enqueues a recompute; the other fields change in
    place. ``NotFound`` for an unknown or deleted segment."""
    now = now or timezone.now()
    if purpose is not UNSET:
        purpose_check(purpose)
    parsed = None if definition is UNSET else _definition_check(definition, segment_id=segment_id)
    with transaction.atomic():
        segment = _locked(segment_id)
        if name is not UNSET and name != segment.name:
            _name_check(name, segment_id=segment.pk)
            segment.name = name
        if description is not UNSET:
            segment.description = description
        if purpose is not UNSET:
            segment.purpose = purpose
        if min_size is not UNSET:
            segment.min_size = min_size
            if segment.computed_at is not None:
                segment.too_small = segment.member_count < min_size
        if fallback_id is not UNSET:
            segment.fallback = _fallback_check(fallback_id, segment_id=segment.pk)
        if parsed is not None and parsed.doc != segment.definition:
            segment.version += 1
            segment.definition = parsed.doc
            segment.time_dependent = parsed.time_dependent
            SegmentVersion.objects.create(
                segment=segment,
                version=segment.version,
                definition=parsed.doc,
                created_by=actor,
                created_at=now,
            )
            _enqueue_recompute_on_commit(segment.pk)
        segment.updated_at = now
        _save_unique(segment)
    return segment


def segment_delete(*, segment_id: int, actor: str, now: datetime | None = None) -> Segment:
    """Soft-delete: ``deleted_at`` is set, the open stays close (reason ``deleted``) and the
    name is freed (prefixed ``[deleted <id>]``) so it can be reused; versions and past stays are
    kept. ``Conflict`` while another live segment refers to it or falls back on it."""
    now = now or timezone.now()
    with transaction.atomic():
        # The recompute lock first, then the row (the recompute's order: it holds the lock and
        # then updates the row), so no recompute is writing stays the close below cannot see.
        segment_lock_wait(segment_id)
        segment = _locked(segment_id)
        users = sorted(set(_referring(segment.pk)) | set(_falling_back_on(segment.pk)))
        if users:
            raise Conflict(
                f"Segment {segment.pk} is used by segment(s) {', '.join(map(str, users))} (a "
                "definition refers to it or it is their fallback); change those first.",
                code="segment_in_use",
            )
        segment.deleted_at = now
        segment.updated_at = now
        segment.name = (DELETED_NAME_PREFIX.format(id=segment.pk) + segment.name)[:NAME_MAX_LENGTH]
        segment.save(update_fields=["deleted_at", "updated_at", "name"])
        stays_close(segment_id=segment.pk, reason=Membership.ExitReason.DELETED, now=now)
        Segment.objects.filter(pk=segment.pk).update(member_count=0, too_small=True)
    return segment


# --- checks -----------------------------------------------------------------------------------
def _definition_check(definition: object, *, segment_id: int | None) -> Definition:
    parsed = definition_parse(definition, segment_exists=segment_is_live)
    if segment_id is not None and _reaches(parsed.segment_refs, segment_id):
        raise DefinitionError(
            [
                {
                    "path": "definition",
                    "reason": f"refers to segment {segment_id} itself, directly or through the "
                    "segments it refers to (a cycle)",
                }
            ]
        )
    return parsed


def _reaches(refs: Iterable[int], target: int) -> bool:
    """Whether ``target`` is among ``refs`` or the segments their definitions refer to, all the
    way down (one query per level)."""
    seen: set[int] = set()
    frontier = set(refs)
    while frontier:
        if target in frontier:
            return True
        seen |= frontier
        following: set[int] = set()
        for doc in Segment.objects.filter(pk__in=frontier).values_list("definition", flat=True):
            following |= _refs_of(doc)
        frontier = following - seen
    return False


def _refs_of(doc: object) -> frozenset[int]:
    try:
        return definition_parse(doc).segment_refs
    except DefinitionError:
        # A stored definition the current language no longer accepts compiles to nothing; it
        # cannot extend a cycle either.
        return frozenset()


def _fallback_check(fallback_id: int | None, *, segment_id: int | None) -> Segment | None:
    if fallback_id is None:
        return None
    if fallback_id == segment_id:
        raise InvalidInput(
            "A segment cannot be its own fallback.", code="fallback_cycle", attr="fallback"
        )
    fallback = Segment.objects.filter(pk=fallback_id, deleted_at__isnull=True).first()
    if fallback is None:
        raise InvalidInput(f"No segment {fallback_id}.", code="unknown_fallback", attr="fallback")
    if segment_id is not None:
        hop: int | None = fallback.fallback_id
        seen = {fallback_id}
        while hop is not None and hop not in seen:
            if hop == segment_id:
                raise InvalidInput(
                    f"Segment {fallback_id} falls back on segment {segment_id}, directly or "
                    "through others (a cycle).",
                    code="fallback_cycle",
                    attr="fallback",
                )
            seen.add(hop)
            hop = Segment.objects.filter(pk=hop).values_list("fallback_id", flat=True).first()
    return fallback


def _name_check(name: str, *, segment_id: int | None) -> None:
    same = Segment.objects.filter(name=name)
    if segment_id is not None:
        same = same.exclude(pk=segment_id)
    if same.exists():
        raise _name_taken()


def _name_taken() -> Conflict:
    return Conflict("Another segment has this name.", code="segment_name_taken", attr="name")


def _save_unique(segment: Segment) -> None:
    # The check above reads; two concurrent creates with one name meet at the unique index.
    try:
        with transaction.atomic():
            segment.save()
    except IntegrityError as exc:
        constraint = getattr(getattr(exc.__cause__, "diag", None), "constraint_name", "") or ""
        if constraint != NAME_CONSTRAINT:
            raise
        raise _name_taken() from None


def _locked(segment_id: int) -> Segment:
    segment = (
        Segment.objects.select_for_update().filter(pk=segment_id, deleted_at__isnull=True).first()
    )
    if segment is None:
        raise NotFound(f"No segment {segment_id}.", code="segment_not_found")
    return segment


def _referring(segment_id: int) -> list[int]:
    live = Segment.objects.filter(deleted_at__isnull=True).exclude(pk=segment_id)
    return [pk for pk, doc in live.values_list("pk", "definition") if segment_id in _refs_of(doc)]


def _falling_back_on(segment_id: int) -> list[int]:
    return list(
        Segment.objects.filter(fallback_id=segment_id, deleted_at__isnull=True).values_list(
            "pk", flat=True
        )
    )


def _enqueue_recompute_on_commit(segment_id: int) -> None:
    from segments.tasks import segment_recompute_enqueue  # the task module imports services

    transaction.on_commit(lambda: segment_recompute_enqueue(segment_id))


def segment_recompute_request(*, segment_id: int) -> Segment:
    """Ask for a full recompute of a live segment: enqueued once the transaction commits (the
    worker runs one recompute per segment at a time). ``NotFound`` for an unknown segment."""
    with transaction.atomic():
        segment = Segment.objects.filter(pk=segment_id, deleted_at__isnull=True).first()
        if segment is None:
            raise NotFound(f"No segment {segment_id}.", code="segment_not_found")
        _enqueue_recompute_on_commit(segment.pk)
    return segment
