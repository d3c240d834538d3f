"""Print signed unsubscribe links for the operator's email tool (the CLI twin of
POST /v1/unsubscribe-links)."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cdp.api.errors import ApplicationError
from consent.opt_out import MAX_LINKS_PER_CALL, link_purpose, unsubscribe_links_create
from identity.kinds import IdentifierKind
from identity.models import Identifier
from identity.selectors import identifiers_find

ACTOR = "command:create_unsubscribe_link"
KINDS = (IdentifierKind.EMAIL, IdentifierKind.PHONE, IdentifierKind.USER_ID)


class Command(BaseCommand):
    help = (
        "Print an unsubscribe link (URL, tab, expiry) for one identifier, or one line per value "
        "read from standard input with --stdin KIND (so addresses stay out of shell history). "
        "An unknown value prints '-<TAB>identifier_not_found' on its line."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        subject = parser.add_mutually_exclusive_group(required=True)
        subject.add_argument("--identifier-id", type=int)
        for kind in KINDS:
            subject.add_argument(f"--{kind.replace('_', '-')}", dest=kind, metavar="VALUE")
        subject.add_argument("--stdin", choices=KINDS, metavar="KIND", help=", ".join(KINDS))
        parser.add_argument("--purpose", help="Default: the purpose of the kind's channel.")

    def handle(self, *args: Any, **options: Any) -> None:
        purpose = options["purpose"]
        try:
            if options["identifier_id"] is not None:
                self._by_id(options["identifier_id"], purpose)
            elif options["stdin"]:
                self._many(options["stdin"], [line.strip() for line in sys.stdin], purpose)
            else:
                kind = next(kind for kind in KINDS if options[kind] is not None)
                self._many(kind, [options[kind]], purpose, single=True)
        except ApplicationError as exc:
            raise CommandError(exc.detail) from exc

    def _by_id(self, identifier_id: int, purpose: str | None) -> None:
        identifier = Identifier.objects.filter(pk=identifier_id).only("kind").first()
        if identifier is None:
            raise CommandError(f"No identifier {identifier_id}.")
        resolved = link_purpose(kind=identifier.kind, purpose=purpose)
        (link,) = unsubscribe_links_create(subjects=[(identifier_id, resolved)], actor=ACTOR)
        self.stdout.write(f"{link.url}\t{link.expires_at.isoformat()}")

    def _many(
        self, kind: str, values: list[str], purpose: str | None, *, single: bool = False
    ) -> None:
        """One output line per value, in order (a blank or unknown value: a not-found line)."""
        resolved = link_purpose(kind=kind, purpose=purpose)
        for start in range(0, len(values), MAX_LINKS_PER_CALL):
            chunk = values[start : start + MAX_LINKS_PER_CALL]
            found = identifiers_find([(kind, value) for value in chunk])
            if single and found[0] is None:
                raise CommandError("No identifier has this value.")
            subjects = [(row.pk, resolved) for row in found if row is not None]
            links = iter(unsubscribe_links_create(subjects=subjects, actor=ACTOR))
            for row in found:
                if row is None:
                    self.stdout.write("-\tidentifier_not_found")
                else:
                    link = next(links)
                    self.stdout.write(f"{link.url}\t{link.expires_at.isoformat()}")
