"""An export's rows: read from a server-side cursor in batches, shaped, encoded.

A row is a served, consented member (``serving.served_members``): ``profile_id``,
``entered_at`` (the start of the current stay) and ``traits`` ({name: value}: non-PII values
as stored; PII traits ``"[redacted]"``, or decrypted with ``include_pii``). For a channel
purpose (``marketing_email`` -> ``email``) a PII export also carries the person's addresses of
that kind (``"email": [...]``), leaving out every address whose own opt-out stands
(``consent.selectors.identifiers_opted_out``); a PII trait holding such an address is null.
Memory is bounded by one batch: the members are never loaded at once.

CSV has the columns ``profile_id, entered_at[, <channel>], traits``: addresses joined with
``;``, traits as a JSON object (trait names differ from person to person). JSONL has one JSON
object per line with the same keys.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from django.db.models import Func, TextField
from django.db.models.functions import Cast

from cdp.crypto.envelope import decrypt_many_unless_erased
from cdp.ingestion.pii import REDACTED
from consent.purposes import purpose_get
from consent.selectors import identifiers_opted_out
from identity.models import Identifier, TraitObservation
from identity.normalization import normalize
from segments.activation.models import ExportFormat
from segments.activation.serving import Served, served_members

Row = dict[str, Any]
Member = tuple[int, str, dict[str, Any]]  # profile id, entered_at (ISO), stored traits
# A timestamptz as ISO 8601 text, like datetime.isoformat() in the session's UTC.
_ISO = "to_json(%(expressions)s) #>> '{}'"


@dataclass(frozen=True)
class RowShape:
    include_pii: bool
    channel: str | None  # the identifier kind whose addresses a PII row carries
    purposes: tuple[str, ...]


def row_shape(served: Served, *, include_pii: bool) -> RowShape:
    channels = [purpose_get(p).channel for p in served.purposes]
    channel = next((c for c in channels if c), None) if include_pii else None
    return RowShape(include_pii=include_pii, channel=channel, purposes=served.purposes)


def export_row_batches(served: Served, *, shape: RowShape, batch_size: int) -> Iterator[list[Row]]:
    """The export's rows, ``batch_size`` at a time, from one server-side cursor."""
    # Traits as text parsed with orjson, the time as ISO text made by PostgreSQL: the
    # JSONField and datetime converters cost more than the rest of a row's work.
    members = (
        served_members(served)
        .annotate(
            traits_text=Cast("profile__traits", TextField()),
            entered_text=Func("entered_at", template=_ISO, output_field=TextField()),
        )
        .values_list("profile_id", "entered_text", "traits_text")
    )
    batch: list[Member] = []
    for profile_id, entered_at, traits in members.iterator(chunk_size=batch_size):
        batch.append((profile_id, entered_at, orjson.loads(traits) if traits else {}))
        if len(batch) >= batch_size:
            yield _rows(batch, shape=shape)
            batch = []
    if batch:
        yield _rows(batch, shape=shape)


def _rows(batch: Sequence[Member], *, shape: RowShape) -> list[Row]:
    pii_values = _pii_trait_values(batch) if shape.include_pii else {}
    addresses, opted_out = _channel_addresses(batch, shape=shape) if shape.channel else ({}, {})
    rows = []
    for profile_id, entered_at, traits in batch:
        shown: dict[str, Any] = {}
        for name, entry in (traits or {}).items():
            if not entry.get("pii"):
                shown[name] = entry.get("value")
            elif not shape.include_pii:
                shown[name] = REDACTED
            else:
                value = pii_values.get(entry.get("observation_id"))
                # An opted-out address must not come back through a trait holding it.
                shown[name] = (
                    None if _is_opted_out(value, opted_out.get(profile_id), shape) else value
                )
        row: Row = {"profile_id": profile_id, "entered_at": entered_at}
        if shape.channel:
            row[shape.channel] = addresses.get(profile_id, [])
        row["traits"] = shown
        rows.append(row)
    return rows


def _pii_trait_values(batch: Sequence[Member]) -> dict[int, Any]:
    """Observation id -> decrypted value (None when erased): two queries per batch."""
    ids = [
        entry["observation_id"]
        for _, _, traits in batch
        for entry in (traits or {}).values()
        if entry.get("pii") and entry.get("observation_id") is not None
    ]
    if not ids:
        return {}
    sealed = [
        (pk, ciphertext)
        for pk, ciphertext in TraitObservation.objects.filter(pk__in=ids).values_list(
            "pk", "value_ciphertext"
        )
        if ciphertext is not None
    ]
    opened = decrypt_many_unless_erased((c, TraitObservation.value_aad(pk)) for pk, c in sealed)
    return {
        pk: None if plain is None else orjson.loads(plain)
        for (pk, _), plain in zip(sealed, opened, strict=True)
    }


def _channel_addresses(
    batch: Sequence[Member], *, shape: RowShape
) -> tuple[dict[int, list[str]], dict[int, set[str]]]:
    """Profile id -> its addresses of the channel kind that are not opted out (by id order),
    and profile id -> those that are (to keep them out of traits too). Three queries."""
    profile_ids = [profile_id for profile_id, _, _ in batch]
    opted_out_ids: set[int] = set()
    for purpose in shape.purposes:
        opted_out_ids |= identifiers_opted_out(profile_ids, purpose)
    rows = list(
        Identifier.objects.filter(profile_id__in=profile_ids, kind=shape.channel)
        .order_by("pk")
        .values_list("pk", "profile_id", "value_ciphertext")
    )
    opened = decrypt_many_unless_erased((c, Identifier.value_aad(pk)) for pk, _, c in rows)
    found: dict[int, list[str]] = {}
    opted_out: dict[int, set[str]] = {}
    for (pk, profile_id, _), value in zip(rows, opened, strict=True):
        if value is None:
            continue
        if pk in opted_out_ids:
            opted_out.setdefault(profile_id, set()).add(value)
        else:
            found.setdefault(profile_id, []).append(value)
    return found, opted_out


def _is_opted_out(value: Any, opted_out: set[str] | None, shape: RowShape) -> bool:
    if not opted_out or not isinstance(value, str) or shape.channel is None:
        return False
    try:
        return normalize(shape.channel, value) in opted_out
    except ValueError:
        return False


# --- encoding -----------------------------------------------------------------------------------
def export_header(export_format: str, *, shape: RowShape) -> bytes:
    if export_format != ExportFormat.CSV:
        return b""
    columns = ["profile_id", "entered_at", *([shape.channel] if shape.channel else []), "traits"]
    return _csv_lines([columns])


def export_encode(rows: Sequence[Row], export_format: str, *, shape: RowShape) -> bytes:
    if export_format == ExportFormat.JSONL:
        return b"".join(orjson.dumps(row) + b"\n" for row in rows)
    lines = []
    for row in rows:
        line = [str(row["profile_id"]), row["entered_at"]]
        if shape.channel:
            line.append(";".join(row[shape.channel]))
        line.append(orjson.dumps(row["traits"]).decode())
        lines.append(line)
    return _csv_lines(lines)


def _csv_lines(lines: Sequence[Sequence[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(lines)
    return buffer.getvalue().encode()


CONTENT_TYPES: dict[str, str] = {
    ExportFormat.CSV: "text/csv; charset=utf-8",
    ExportFormat.JSONL: "application/x-ndjson",
}
