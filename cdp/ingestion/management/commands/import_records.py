from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cdp.api.errors import ApplicationError
from cdp.ingestion.importing import (
    DEFAULT_BATCH_SIZE,
    FileFormat,
    default_reject_path,
    file_format_for,
    records_import_file,
)
from cdp.ingestion.selectors import source_by_name
from cdp.ops.progress import progress_bar


class Command(BaseCommand):
    help = (
        "Import CRM records from a CSV (header row) or JSON Lines file into a source, in batches. "
        "Rows that cannot be stored are described (without their values) in a reject file."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--source", required=True, help="Name of an existing source.")
        parser.add_argument(
            "--format",
            choices=[f.value for f in FileFormat],
            help="Default: from the file's extension (.csv, .jsonl, .ndjson).",
        )
        parser.add_argument(
            "--reject-file", type=Path, help="Default: FILE.rejects.jsonl next to the input."
        )
        parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        if not path.is_file():
            raise CommandError(f"No such file: {path}")
        source = source_by_name(options["source"])
        if source is None:
            raise CommandError(
                f"No source named {options['source']!r}. "
                f"Create it first: manage.py create_source {options['source']}"
            )
        if source.disabled_at is not None:
            raise CommandError(f"Source {source.name!r} is disabled.")
        reject_path: Path = options["reject_file"] or default_reject_path(path)
        try:
            file_format = file_format_for(path, options["format"])
        except ApplicationError as exc:
            raise CommandError(exc.detail) from exc
        try:
            with (
                reject_path.open("wb") as rejects,
                progress_bar(
                    stderr=self.stderr,
                    total=path.stat().st_size,
                    quiet=options["verbosity"] == 0,
                    unit="B",
                    unit_scale=True,
                    desc=path.name,
                ) as progress,
            ):
                summary = records_import_file(
                    source_id=source.pk,
                    path=path,
                    file_format=file_format,
                    reject_stream=rejects,
                    batch_size=options["batch_size"],
                    on_progress=progress.update,
                )
        except ApplicationError as exc:
            raise CommandError(exc.detail) from exc
        except OSError as exc:  # an unreadable input or an unwritable reject file
            raise CommandError(f"{exc.strerror}: {exc.filename}") from exc
        self.stdout.write(str(summary))
        if summary.rejected and options["verbosity"] > 0:
            self.stderr.write(f"{summary.rejected} rejected row(s) described in {reject_path}")
