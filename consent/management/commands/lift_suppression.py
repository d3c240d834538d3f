"""``manage.py lift_suppression``: let an erased identifier be created again, with a reason.

The value is read from stdin (piped) or a hidden prompt when ``--value`` is not given, so it
need not land in the shell history: ``printf %s 'ada@example.com' | manage.py lift_suppression
--kind email --reason "TICKET-42: the person signed up again"``.
"""

from __future__ import annotations

import getpass
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cdp.api.errors import ApplicationError
from consent.privacy.suppression import suppression_lift


class Command(BaseCommand):
    help = (
        "Lift the suppression of an erased identifier (the row is kept, stamped with who, when "
        "and why, and audited). Without --value the value is read from stdin or a prompt."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--kind", required=True, help="identifier kind: email, phone, ...")
        parser.add_argument(
            "--value", help="the identifier as sent (omit it to keep it out of shell history)"
        )
        parser.add_argument("--reason", required=True, help="why (kept in the audit log)")
        parser.add_argument(
            "--actor", default="command:lift_suppression", help="who, for the audit log"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        value = options["value"]
        if value is None:
            value = (
                sys.stdin.readline().rstrip("\n")
                if not sys.stdin.isatty()
                else getpass.getpass(f"{options['kind']} value: ")
            )
        try:
            lifted = suppression_lift(
                kind=options["kind"],
                raw_value=value,
                actor=options["actor"],
                reason=options["reason"],
            )
        except ApplicationError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Lifted suppression #{lifted.pk} ({lifted.kind}).")
