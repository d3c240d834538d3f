"""manage.py import_records: CSV / JSON Lines files streamed through records_upsert."""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pytest
from django.core.management import CommandError, call_command

from cdp.ingestion import importing
from cdp.ingestion.models import Record
from cdp.ingestion.services import SourceWithKey, source_create, source_disable
from tests.ingestion.conftest import record_fields

pytestmark = pytest.mark.django_db


def stored(**lookup: Any) -> Any:
    """The record matching ``lookup``, person fields decrypted."""
    return record_fields(Record.objects.get(**lookup))


HEADER = "external_id,email,phone,first_name,last_name,address,city,zip,country,birth_date,tier\n"
ALICE = "c-1,alice@example.com,+44 20 7946 0000,Alice,Liddell,1 Rabbit Hole,Oxford,OX1 1AA,GB,1990-02-03,gold\n"  # noqa: E501
BOB = "c-2,bob@example.com,,Bob,Builder,,,,,,\n"
CAROL = "c-3,carol@example.com,,Carol,Danvers,,,,US,,silver\n"


@pytest.fixture
def crm(db: None) -> SourceWithKey:
    return source_create(name="crm")


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def run(path: Path, *args: str, source: str = "crm") -> tuple[str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    call_command(
        "import_records", str(path), "--source", source, *args, stdout=stdout, stderr=stderr
    )
    return stdout.getvalue().strip(), stderr.getvalue()


def rejects(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_csv_rows_become_records_and_the_summary_counts_them(
    crm: SourceWithKey, tmp_path: Path
) -> None:
    path = write(tmp_path, "people.csv", HEADER + ALICE + BOB + CAROL)

    summary, _ = run(path)

    assert summary == "created=3 updated=0 unchanged=0 superseded=0 rejected=0"
    alice = stored(source=crm.source, external_id="c-1")
    assert (alice.email, alice.phone, alice.first_name, alice.last_name) == (
        "alice@example.com", "+44 20 7946 0000", "Alice", "Liddell"
    )  # fmt: skip
    # "address" fills street, "zip" is read as the postcode.
    assert (alice.street, alice.city, alice.postcode, alice.country) == (
        "1 Rabbit Hole", "Oxford", "OX1 1AA", "GB"
    )  # fmt: skip
    assert alice.birth_date == date(1990, 2, 3)
    assert alice.attributes == {"tier": "gold"}  # an unknown column is an attribute


def test_empty_cells_mean_no_value(crm: SourceWithKey, tmp_path: Path) -> None:
    run(write(tmp_path, "people.csv", HEADER + BOB))

    bob = stored(external_id="c-2")
    assert (bob.phone, bob.street, bob.birth_date) == ("", "", None)
    assert bob.attributes == {}  # no "tier": "" attribute either


def test_reimporting_the_same_file_changes_nothing(crm: SourceWithKey, tmp_path: Path) -> None:
    path = write(tmp_path, "people.csv", HEADER + ALICE + BOB + CAROL)
    run(path)
    seqs = dict(Record.objects.values_list("external_id", "seq"))

    summary, _ = run(path)

    assert summary == "created=0 updated=0 unchanged=3 superseded=0 rejected=0"
    assert dict(Record.objects.values_list("external_id", "seq")) == seqs


def test_a_changed_row_is_updated_and_the_rest_unchanged(
    crm: SourceWithKey, tmp_path: Path
) -> None:
    run(write(tmp_path, "people.csv", HEADER + ALICE + BOB + CAROL))
    changed = CAROL.replace("silver", "gold")

    summary, _ = run(write(tmp_path, "people.csv", HEADER + ALICE + BOB + changed))

    assert summary == "created=0 updated=1 unchanged=2 superseded=0 rejected=0"
    assert stored(external_id="c-3").attributes == {"tier": "gold"}


def test_jsonl_lines_are_records(crm: SourceWithKey, tmp_path: Path) -> None:
    lines = [
        {"external_id": "j-1", "email": "ann@example.com", "address": {"city": "Lyon"}},
        {"external_id": "j-2", "first_name": "Ben", "attributes": {"plan": "pro"}, "score": 7},
    ]
    path = write(tmp_path, "people.jsonl", b"\n".join(orjson.dumps(line) for line in lines))

    summary, _ = run(path)

    assert summary == "created=2 updated=0 unchanged=0 superseded=0 rejected=0"
    assert stored(external_id="j-1").city == "Lyon"
    assert stored(external_id="j-2").attributes == {"plan": "pro", "score": 7}


def test_format_option_overrides_the_extension(crm: SourceWithKey, tmp_path: Path) -> None:
    path = write(tmp_path, "export.txt", '{"external_id": "j-1"}\n')

    with pytest.raises(CommandError, match="--format"):
        run(path)
    summary, _ = run(path, "--format", "jsonl")

    assert summary == "created=1 updated=0 unchanged=0 superseded=0 rejected=0"


def test_rejects_are_described_without_their_values(crm: SourceWithKey, tmp_path: Path) -> None:
    rows = (
        HEADER
        + ALICE  # line 2
        + "c-9,mallory.at.example.com,,Mallory,Secret,,,,,,\n"  # line 3: no @
        + "c-10,trent@example.com,Trent\n"  # line 4: 3 cells for 11 columns
        + "c-11,eve@example.com,,Eve,Hidden,,,,,1990-13-45,\n"  # line 5: no such date
        + ",nobody@example.com,,No,Id,,,,,,\n"  # line 6: no external_id
    )
    path = write(tmp_path, "people.csv", rows)

    summary, stderr = run(path)

    assert summary == "created=1 updated=0 unchanged=0 superseded=0 rejected=4"
    reject_path = tmp_path / "people.csv.rejects.jsonl"
    assert str(reject_path) in stderr
    found = rejects(reject_path)
    assert [(r["line"], r["external_id"], r["attr"], r["code"]) for r in found] == [
        (3, "c-9", "email", "invalid_email"),
        (4, None, None, "wrong_column_count"),
        (5, "c-11", "birth_date", "invalid_date"),
        (6, None, "external_id", "required"),
    ]
    assert all(set(r) == {"line", "external_id", "attr", "code", "reason"} for r in found)
    assert all(r["reason"] for r in found)
    text = reject_path.read_text()
    for value in ("mallory", "Mallory", "Secret", "trent@", "Trent", "eve@", "Hidden", "1990-13-45",
                  "nobody@", "example.com"):  # fmt: skip
        assert value not in text


def test_reject_file_option(crm: SourceWithKey, tmp_path: Path) -> None:
    path = write(tmp_path, "people.csv", HEADER + "c-9,not-an-email,,,,,,,,,\n")
    chosen = tmp_path / "out" / "bad.jsonl"
    chosen.parent.mkdir()

    run(path, "--reject-file", str(chosen))

    assert [r["code"] for r in rejects(chosen)] == ["invalid_email"]
    assert not (tmp_path / "people.csv.rejects.jsonl").exists()


def test_malformed_jsonl_lines_are_rejects_not_crashes(crm: SourceWithKey, tmp_path: Path) -> None:
    content = (
        b'{"external_id": "j-1"}\n'  # line 1
        b"\n"  # line 2: blank, skipped
        b'{"external_id": "j-2", "email": "secret@exam\n'  # line 3: cut short
        b"[1, 2]\n"  # line 4: not an object
        b'{"external_id": "j-5", "first_name": "\xff\xfe"}\n'  # line 5: not UTF-8
        b'{"external_id": "j-6"}\n'  # line 6
    )
    path = write(tmp_path, "people.jsonl", content)

    summary, _ = run(path)

    assert summary == "created=2 updated=0 unchanged=0 superseded=0 rejected=3"
    found = rejects(tmp_path / "people.jsonl.rejects.jsonl")
    assert [(r["line"], r["code"]) for r in found] == [
        (3, "invalid_json"),
        (4, "not_an_object"),
        (5, "invalid_json"),
    ]
    assert "secret" not in (tmp_path / "people.jsonl.rejects.jsonl").read_text()
    assert set(Record.objects.values_list("external_id", flat=True)) == {"j-1", "j-6"}


def test_a_byte_order_mark_is_ignored(crm: SourceWithKey, tmp_path: Path) -> None:
    bom = "\ufeff"
    csv_path = write(tmp_path, "excel.csv", bom + HEADER + ALICE)
    jsonl_path = write(tmp_path, "excel.jsonl", bom + '{"external_id": "j-1"}\n')

    assert run(csv_path)[0] == "created=1 updated=0 unchanged=0 superseded=0 rejected=0"
    assert run(jsonl_path)[0] == "created=1 updated=0 unchanged=0 superseded=0 rejected=0"
    assert stored(external_id="c-1").attributes == {"tier": "gold"}


def test_quoted_cells_may_hold_commas_and_newlines(crm: SourceWithKey, tmp_path: Path) -> None:
    rows = HEADER + '"c-1","a@example.com",,"Ann",,"1 Main St, Apt 2\nBack door",,,,,\n' + BOB
    rows += "c-3,bad,,,,,,,,,\n"  # line 5, because the quoted cell spans lines 2 and 3

    summary, _ = run(write(tmp_path, "people.csv", rows))

    assert summary == "created=2 updated=0 unchanged=0 superseded=0 rejected=1"
    assert stored(external_id="c-1").street == "1 Main St, Apt 2\nBack door"
    assert rejects(tmp_path / "people.csv.rejects.jsonl")[0]["line"] == 5


def test_rows_go_in_batches_with_line_numbers_kept(
    crm: SourceWithKey, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[int] = []
    upsert = importing.records_upsert

    def counting_upsert(**kwargs: Any) -> Any:
        sizes.append(len(kwargs["records"]))
        return upsert(**kwargs)

    monkeypatch.setattr(importing, "records_upsert", counting_upsert)
    rows = [f"c-{n},user{n}@example.com,,,,,,,,,\n" for n in range(1, 8)]
    rows[5] = "c-6,broken,,,,,,,,,\n"  # line 7 of the file, in the third batch of rows
    path = write(tmp_path, "people.csv", HEADER + "".join(rows))

    summary, _ = run(path, "--batch-size", "2")

    assert sizes == [2, 2, 2, 1]
    assert summary == "created=6 updated=0 unchanged=0 superseded=0 rejected=1"
    assert [
        (r["line"], r["external_id"]) for r in rejects(tmp_path / "people.csv.rejects.jsonl")
    ] == [(7, "c-6")]


def test_unknown_source_is_a_clear_error(db: None, tmp_path: Path) -> None:
    path = write(tmp_path, "people.csv", HEADER + ALICE)

    with pytest.raises(CommandError, match="No source named 'nope'"):
        run(path, source="nope")
    assert not Record.objects.exists()


def test_a_csv_without_an_external_id_column_is_fatal(crm: SourceWithKey, tmp_path: Path) -> None:
    path = write(tmp_path, "people.csv", "email,first_name\na@example.com,Ann\n")

    with pytest.raises(CommandError, match="external_id"):
        run(path)


def test_verbosity_zero_prints_only_the_summary(crm: SourceWithKey, tmp_path: Path) -> None:
    path = write(tmp_path, "people.csv", HEADER + ALICE + "c-9,bad,,,,,,,,,\n")

    summary, stderr = run(path, "--verbosity", "0")

    assert summary == "created=1 updated=0 unchanged=0 superseded=0 rejected=1"
    assert stderr == ""


def test_a_disabled_source_takes_no_import(crm: SourceWithKey, tmp_path: Path) -> None:
    source_disable(source=crm.source)

    with pytest.raises(CommandError, match="disabled"):
        run(write(tmp_path, "people.csv", HEADER + ALICE))
    assert not Record.objects.exists()


def test_a_repeated_external_id_is_counted_as_superseded(
    crm: SourceWithKey, tmp_path: Path
) -> None:
    path = tmp_path / "repeat.csv"
    path.write_text("external_id,email\nr1,first@example.com\nr1,second@example.com\n")

    summary = run(path)[0]

    assert summary == "created=1 updated=0 unchanged=0 superseded=1 rejected=0"
    assert stored(external_id="r1").email == "second@example.com"
