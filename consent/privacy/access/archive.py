"""Building an access export: who the person is (``access_subject``), and the zip of every
registered section plus ``manifest.json`` (``access_export_write`` / ``access_export_build``).

The zip is written into memory section by section, rows streamed through a deflate stream, so
what is held is the compressed archive and one batch of rows. It is capped
(``CDP_CONSENT["ACCESS_EXPORT_MAX_BYTES"]``, 128 MiB compressed by default): past the cap the
build stops with ``ExportTooLarge`` instead of exhausting the worker's memory or the
database's one-value limit (the export is stored encrypted in one ``bytea``).
"""

from __future__ import annotations

import io
import uuid
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

import orjson
from django.conf import settings
from django.utils import timezone

from consent.privacy.access.registry import ExportSection, ExportSubject, Row, access_sections
from identity.models import Identifier, Profile
from identity.selectors import profile_current

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# Serialized rows are handed to the deflate stream in pieces of about this size.
FLUSH_BYTES = 256 * 1024
NOTES = (
    "Times are RFC 3339 in UTC. Ids refer to rows of the same export (identifier_id -> "
    "identifiers.json, profile_id -> profiles.json); an id that is not in the export belongs to "
    "another person (the far end of an edge) or was erased. A null value is one whose key was "
    "destroyed: it is no longer held."
)

_CLUSTER = """
WITH RECURSIVE absorbed (id) AS (
    SELECT id FROM identity_profile WHERE id = %s
    UNION
    SELECT p.id FROM identity_profile AS p JOIN absorbed AS a ON p.merged_into_id = a.id
)
SELECT id FROM absorbed ORDER BY id
"""


class ExportTooLarge(Exception):
    """The compressed export passed the configured cap (the message gives sizes only)."""


class SubjectGone(Exception):
    """The request's subject no longer exists (erased, or its profile is unreachable)."""


@dataclass(frozen=True)
class BuiltExport:
    content: bytes
    counts: dict[str, int]  # rows per section


def access_subject(
    *, profile_id: int | None, identifier_id: int | None = None, request_id: uuid.UUID | None = None
) -> ExportSubject:
    """The cluster ``profile_id`` is now part of: its survivor, every profile merged into that
    one, and the identifiers it holds. Without a profile (an identifier not resolved yet),
    just ``identifier_id``. ``SubjectGone`` when neither leads anywhere."""
    if profile_id is None:
        if identifier_id is None:
            raise SubjectGone("an access export needs a profile or an identifier")
        return ExportSubject(
            request_id=request_id, profile_id=None, profile_ids=(), identifier_ids=(identifier_id,)
        )
    current = profile_current(profile_id)
    if current is None:
        raise SubjectGone(f"profile {profile_id} does not lead to a current profile")
    profile_ids = tuple(row.pk for row in Profile.objects.raw(_CLUSTER, [current.pk]))
    identifier_ids = tuple(
        Identifier.objects.filter(profile_id=current.pk).order_by("pk").values_list("pk", flat=True)
    )
    return ExportSubject(
        request_id=request_id,
        profile_id=current.pk,
        profile_ids=profile_ids,
        identifier_ids=identifier_ids,
    )


def access_export_build(*, profile_id: int, request_id: uuid.UUID | None = None) -> bytes:
    """The export zip of everything held about the person of ``profile_id`` (a merged profile's
    id stands for its survivor's cluster)."""
    subject = access_subject(profile_id=profile_id, request_id=request_id)
    return access_export_write(subject).content


def access_export_write(subject: ExportSubject, *, max_bytes: int | None = None) -> BuiltExport:
    """Write every section of ``subject``, then the manifest, into one zip (deflated)."""
    cap = settings.CDP_CONSENT["ACCESS_EXPORT_MAX_BYTES"] if max_bytes is None else max_bytes
    generated_at = timezone.now()
    buffer = io.BytesIO()
    sections = access_sections()
    counts: dict[str, int] = {}
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for section in sections:
            with zf.open(section.filename, "w", force_zip64=True) as stream:
                counts[section.name] = _write_rows(
                    stream, section.rows(subject), lines=section.lines, buffer=buffer, cap=cap
                )
        manifest = _manifest(subject, sections, counts, generated_at=generated_at)
        zf.writestr(MANIFEST, orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    content = buffer.getvalue()
    _check_size(len(content), cap)
    return BuiltExport(content=content, counts=counts)


def _write_rows(
    stream: IO[bytes], rows: Iterable[Row], *, lines: bool, buffer: io.BytesIO, cap: int
) -> int:
    """Serialize ``rows`` into ``stream`` (a JSON array, or JSONL with ``lines``); returns how
    many. The compressed size so far is checked at every flush."""
    pending = bytearray() if lines else bytearray(b"[")
    count = 0
    for row in rows:
        if not lines:
            pending += b"\n" if count == 0 else b",\n"
        pending += orjson.dumps(row)
        if lines:
            pending += b"\n"
        count += 1
        if len(pending) >= FLUSH_BYTES:
            stream.write(pending)
            pending.clear()
            _check_size(buffer.tell(), cap)
    if not lines:
        pending += b"\n]\n" if count else b"]\n"
    stream.write(pending)
    return count


def _check_size(size: int, cap: int) -> None:
    if size > cap:
        raise ExportTooLarge(
            f"the compressed export passed {cap} bytes (CDP_ACCESS_EXPORT_MAX_BYTES) at {size}"
        )


def _manifest(
    subject: ExportSubject,
    sections: list[ExportSection],
    counts: dict[str, int],
    *,
    generated_at: datetime,
) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "generated_at": generated_at,
        "request_id": subject.request_id,
        "profile_id": subject.profile_id,
        "profile_ids": list(subject.profile_ids),
        "counts": counts,
        "files": [
            {
                "name": section.filename,
                "section": section.name,
                "format": "jsonl" if section.lines else "json",
                "rows": counts[section.name],
                "description": section.description,
            }
            for section in sections
        ],
        "notes": NOTES,
    }
