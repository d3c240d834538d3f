"""File import of CRM records (CSV with a header row, or JSON Lines), streamed in batches.

The file is read line by line as bytes, so memory stays flat whatever its size and progress can be
reported in bytes. Each batch goes through ``records_upsert`` (one statement, one transaction), so
an import that stops half way keeps what it stored and a re-run picks up the rest as unchanged.

Rows that cannot be read (bad JSON, a CSV row with the wrong number of cells, bytes that are not
UTF-8) and rows the validator refuses are *rejects*: they are counted and described by line
number, external id and reason, never by their values, which may be personal data.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

import orjson

from cdp.api.errors import InvalidInput
from cdp.ingestion.records import KNOWN_FIELDS
from cdp.ingestion.services import records_upsert

DEFAULT_BATCH_SIZE = 1_000
MAX_BATCH_SIZE = 50_000
_BOM = b"\xef\xbb\xbf"
# Other names people give the record's columns; used when the header lacks the field's own name.
# (A free-text ``address`` column is understood by the validator: it fills ``street``.)
COLUMN_ALIASES = {
    "postal_code": "postcode",
    "zip": "postcode",
    "zipcode": "postcode",
}


class FileFormat(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"


_EXTENSIONS = {".csv": FileFormat.CSV, ".jsonl": FileFormat.JSONL, ".ndjson": FileFormat.JSONL}


@dataclass(frozen=True, slots=True)
class Reject:
    """Why one row was not stored; deliberately without the row's values."""

    line: int
    external_id: str | None
    attr: str | None
    code: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "external_id": self.external_id,
            "attr": self.attr,
            "code": self.code,
            "reason": self.reason,
        }


@dataclass
class ImportSummary:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    superseded: int = 0
    rejected: int = 0

    def __str__(self) -> str:
        return (
            f"created={self.created} updated={self.updated} unchanged={self.unchanged} "
            f"superseded={self.superseded} rejected={self.rejected}"
        )


@dataclass
class _Batch:
    """Parsed rows (as dicts) with the line each starts on, plus rows that could not be read."""

    records: list[dict[str, Any]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    bytes_read: int = 0


def file_format_for(path: Path, requested: str | None = None) -> FileFormat:
    """The requested format, or the one the file's extension names."""
    if requested:
        return FileFormat(requested)
    found = _EXTENSIONS.get(path.suffix.lower())
    if found is None:
        raise InvalidInput(
            f"Cannot tell the format of {path.name!r} from its extension; "
            "pass --format csv or --format jsonl.",
            code="unknown_format",
            attr="format",
        )
    return found


def default_reject_path(path: Path) -> Path:
    return path.with_name(path.name + ".rejects.jsonl")


def records_import_file(
    *,
    source_id: int,
    path: Path,
    file_format: FileFormat,
    reject_stream: IO[bytes],
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: Callable[[int], object] | None = None,
) -> ImportSummary:
    """Stream ``path`` into the source's records, batch by batch; write one JSON line per reject
    to ``reject_stream``; call ``on_progress`` with the bytes read since the last call."""
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise InvalidInput(
            f"batch size must be between 1 and {MAX_BATCH_SIZE}.", code="invalid", attr="batch_size"
        )
    summary = ImportSummary()
    with path.open("rb") as stream:
        reader = _csv_batches if file_format is FileFormat.CSV else _jsonl_batches
        for batch in reader(stream, batch_size):
            rejects = batch.rejects
            if batch.records:
                result = records_upsert(
                    source_id=source_id, records=batch.records, extra_as_attributes=True
                )
                summary.created += result.created
                summary.updated += result.updated
                summary.unchanged += result.unchanged
                summary.superseded += result.superseded
                rejects = rejects + [
                    Reject(
                        line=batch.lines[error.index],
                        external_id=error.external_id,
                        attr=error.attr,
                        code=error.code,
                        reason=error.detail,
                    )
                    for error in result.rejected
                ]
            rejects.sort(key=lambda reject: reject.line)
            for reject in rejects:
                reject_stream.write(orjson.dumps(reject.as_dict()) + b"\n")
            summary.rejected += len(rejects)
            if on_progress is not None:
                on_progress(batch.bytes_read)
    return summary


# --- JSON Lines -------------------------------------------------------------------------------
def _jsonl_batches(stream: IO[bytes], batch_size: int) -> Iterator[_Batch]:
    batch = _Batch()
    for number, raw in enumerate(stream, start=1):
        batch.bytes_read += len(raw)
        if number == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        if not raw.strip():
            continue
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            # orjson refuses invalid UTF-8 too; its message may quote the text, so it is not kept.
            batch.rejects.append(
                Reject(number, None, None, "invalid_json", f"Not valid JSON (column {exc.colno}).")
            )
            continue
        batch.records.append(record)
        batch.lines.append(number)
        if len(batch.records) >= batch_size:
            yield batch
            batch = _Batch()
    yield batch


# --- CSV --------------------------------------------------------------------------------------
class _DecodedLines:
    """Decodes a byte stream line by line for ``csv.reader``, counting bytes and remembering
    which lines were not UTF-8 (they are decoded with replacement and their rows rejected)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.number = 0
        self.bytes_read = 0
        self.undecodable: set[int] = set()

    def __iter__(self) -> Iterator[str]:
        for raw in self._stream:
            self.number += 1
            self.bytes_read += len(raw)
            if self.number == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM) :]
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError:
                self.undecodable.add(self.number)
                yield raw.decode("utf-8", errors="replace")


# ``attributes`` is not a column: in a CSV every unknown column is an attribute.
_COLUMN_FIELDS = KNOWN_FIELDS - {"attributes"}


def csv_columns(header: Iterable[str]) -> list[str]:
    """Record field names for a CSV header: trimmed, known names matched case-insensitively,
    common aliases mapped; other columns keep their name (they become attributes)."""
    names = [name.strip() for name in header]
    present = {name.lower() for name in names}
    columns = []
    for name in names:
        lowered = name.lower()
        if lowered in _COLUMN_FIELDS:
            name = lowered
        elif COLUMN_ALIASES.get(lowered, "") in _COLUMN_FIELDS - present:
            name = COLUMN_ALIASES[lowered]
        columns.append(name)
    duplicated = sorted({name for name in columns if columns.count(name) > 1})
    if duplicated:
        raise InvalidInput(
            f"The CSV header names these columns more than once: {', '.join(duplicated)}.",
            code="duplicate_columns",
        )
    if "external_id" not in columns:
        raise InvalidInput("The CSV header has no external_id column.", code="no_external_id")
    if "" in columns:
        raise InvalidInput("The CSV header has a column without a name.", code="blank_column")
    return columns


def _csv_batches(stream: IO[bytes], batch_size: int) -> Iterator[_Batch]:
    lines = _DecodedLines(stream)
    reader = csv.reader(lines)
    columns: list[str] | None = None
    batch = _Batch()
    reported = 0
    last_line = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            # csv's messages describe the syntax ("field larger than field limit"), not the data.
            batch.rejects.append(Reject(last_line + 1, None, None, "invalid_csv", str(exc)))
            if reader.line_num == last_line:  # nothing consumed: stop rather than spin
                break
            last_line = reader.line_num
            continue
        first_line, last_line = last_line + 1, reader.line_num
        if not cells or cells == [""]:  # blank line
            continue
        if columns is None:
            columns = csv_columns(cells)
            continue
        if any(number in lines.undecodable for number in range(first_line, last_line + 1)):
            batch.rejects.append(
                Reject(first_line, None, None, "invalid_encoding", "The row is not valid UTF-8.")
            )
        elif len(cells) != len(columns):
            batch.rejects.append(
                Reject(
                    first_line,
                    None,
                    None,
                    "wrong_column_count",
                    f"The row has {len(cells)} cells; the header has {len(columns)}.",
                )
            )
        else:
            # An empty cell means "no value", so it neither sets a field nor adds an attribute.
            batch.records.append(
                {
                    name: value
                    for name, value in zip(columns, cells, strict=True)
                    if value.strip() != ""
                }
            )
            batch.lines.append(first_line)
        if len(batch.records) >= batch_size:
            batch.bytes_read, reported = lines.bytes_read - reported, lines.bytes_read
            yield batch
            batch = _Batch()
    batch.bytes_read = lines.bytes_read - reported
    yield batch
