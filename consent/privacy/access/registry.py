"""What an access export holds: an ordered registry of sections, one file of the zip each.

The sections that cover what the identity graph, ingestion and consent hold are built in
(``consent.privacy.access.sections``). Another app adds what it keeps about people (the segments
app: memberships) by registering a section from its ``AppConfig.ready``::

    from consent.privacy.access import ExportSection, access_sections_register

    class SegmentsConfig(AppConfig):
        def ready(self) -> None:
            access_sections_register(
                ExportSection(
                    name="segment_memberships",
                    description="Segment memberships of the person's profiles, with intervals.",
                    rows=segment_membership_rows,  # (ExportSubject) -> Iterable[Mapping]
                )
            )

A section's ``rows`` receives the ``ExportSubject`` (the current profile, every profile merged
into it, the cluster's identifiers) and yields JSON-serializable mappings (``orjson``: datetimes,
UUIDs and dataclasses are fine, bytes are not); it reads in batches when it can be large
(``lines=True`` writes JSONL, one row per line, and the rows are consumed as they come). PII is
decrypted by the section itself: the export is the one place values leave in clear, for the
person they belong to. Registration is idempotent by name (a re-run ``ready()`` replaces the
entry); a name taken by a built-in section is refused.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Row = Mapping[str, Any]


@dataclass(frozen=True)
class ExportSubject:
    """The person an export is about. ``profile_id`` is the current (surviving) profile, None
    when the subject's identifier was not resolved into a profile yet; ``profile_ids`` holds it
    and every profile merged into it (directly or through a chain); ``identifier_ids`` the
    identifiers the cluster holds now."""

    request_id: uuid.UUID | None
    profile_id: int | None
    profile_ids: tuple[int, ...]
    identifier_ids: tuple[int, ...]


@dataclass(frozen=True)
class ExportSection:
    """One file of the export: ``<name>.json`` (a JSON array of rows) or, with ``lines``,
    ``<name>.jsonl`` (one JSON object per line)."""

    name: str
    description: str
    rows: Callable[[ExportSubject], Iterable[Row]]
    lines: bool = False

    @property
    def filename(self) -> str:
        return f"{self.name}.jsonl" if self.lines else f"{self.name}.json"


_builtin: dict[str, ExportSection] = {}
_registered: dict[str, ExportSection] = {}
RESERVED_NAMES = frozenset({"manifest"})


def _check_name(section: ExportSection) -> None:
    if not section.name.isidentifier() or section.name in RESERVED_NAMES:
        raise ValueError(
            f"export section name {section.name!r} must be an identifier, not manifest"
        )


def access_sections_register(section: ExportSection) -> None:
    """Add (or replace, by name) a section contributed by another app."""
    _check_name(section)
    if section.name in _builtin:
        raise ValueError(f"export section {section.name!r} is built in")
    _registered[section.name] = section


def access_sections_unregister(name: str) -> None:
    """Remove a contributed section (tests, an app being disabled)."""
    _registered.pop(name, None)


def access_sections() -> list[ExportSection]:
    """Every section in file order: the built-in ones, then the contributed ones as registered."""
    return [*_builtin.values(), *_registered.values()]


def builtin_sections_define(sections: Iterable[ExportSection]) -> None:
    """The consent app's own sections, first in every export (``consent.privacy.access``)."""
    for section in sections:
        _check_name(section)
        _builtin[section.name] = section
