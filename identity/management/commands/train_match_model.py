"""``manage.py train_match_model``: a logistic model version from stewards' decisions."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cdp.api.errors import InvalidInput
from identity.matching.decisions import match_model_train


class Command(BaseCommand):
    help = "Train the supervised matching model on stewards' decisions; prints its evaluation."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--force", action="store_true", help="Train below CDP_MATCH_MIN_LABELS."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            model = match_model_train(force=options["force"])
        except InvalidInput as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"{model}: trained on {model.trained_on} decisions")
        for name, value in sorted(model.evaluation.items()):
            self.stdout.write(f"  {name}: {value}")
