from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cdp.api.errors import ApplicationError
from cdp.ingestion.selectors import source_by_name
from cdp.ingestion.services import source_create, source_rotate_write_key


class Command(BaseCommand):
    help = "Create a source and print its write key (shown once). --rotate issues a new key."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="Slug: letters, digits, - and _.")
        parser.add_argument(
            "--rotate", action="store_true", help="Give an existing source a new write key."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["name"]
        try:
            if options["rotate"]:
                source = source_by_name(name)
                if source is None:
                    raise CommandError(f"No source named {name!r}.")
                issued = source_rotate_write_key(source=source)
            else:
                issued = source_create(name=name)
        except ApplicationError as exc:
            raise CommandError(exc.detail) from exc
        self.stdout.write(issued.write_key)
