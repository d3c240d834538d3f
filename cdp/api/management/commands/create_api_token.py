from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cdp.api.errors import ApplicationError
from cdp.api.models import Scope
from cdp.api.services import api_token_create


class Command(BaseCommand):
    help = "Create a management API bearer token and print it (shown once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument(
            "--scope",
            action="append",
            dest="scopes",
            required=True,
            help=f"Repeat or comma-separate. Known: {', '.join(Scope.values)}",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        scopes = [s.strip() for value in options["scopes"] for s in value.split(",") if s.strip()]
        try:
            issued = api_token_create(
                name=options["name"], scopes=scopes, actor="command:create_api_token"
            )
        except ApplicationError as exc:
            raise CommandError(exc.detail) from exc
        self.stdout.write(issued.plaintext)
