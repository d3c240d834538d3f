from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cdp.audit.models import AuditAction
from cdp.audit.services import audit_record
from cdp.crypto.config import master_key_ring
from cdp.crypto.errors import MasterKeyError
from cdp.crypto.selectors import data_key_counts_by_master_key, data_keys_to_rewrap
from cdp.crypto.services import REWRAP_BATCH_SIZE, master_keys_rewrap
from cdp.ops.progress import progress_bar


class Command(BaseCommand):
    help = (
        "Re-wrap every live data key under the newest master key (the first in CDP_MASTER_KEY), "
        "in batches, while the service keeps running. To rotate: prepend a new key to "
        "CDP_MASTER_KEY (comma-separated) everywhere, restart, run rotate_keys, then remove the "
        "old key once this command reports that no data key uses it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=REWRAP_BATCH_SIZE)

    def handle(self, *args: Any, **options: Any) -> None:
        newest = master_key_ring().newest.key_id
        pending = data_keys_to_rewrap(newest_master_key_id=newest).count()
        try:
            with progress_bar(
                stderr=self.stderr,
                total=pending,
                quiet=options["verbosity"] == 0,
                unit="key",
                desc="re-wrapping",
            ) as bar:
                done = master_keys_rewrap(batch_size=options["batch_size"], progress=bar.update)
        except MasterKeyError as exc:
            raise CommandError(exc.detail) from exc
        audit_record(
            actor="command:rotate_keys",
            action=AuditAction.KEYS_ROTATED,
            target_type="master_key",
            target_id=newest,
            details={"rewrapped": done},
        )
        self.stdout.write(f"Re-wrapped {done} data keys under master key {newest!r}.")
        counts = data_key_counts_by_master_key()
        for key_id, count in counts.items():
            self.stdout.write(f"  {key_id}: {count} live data keys")
        if any(key_id != newest for key_id in counts):
            self.stdout.write(
                "Some data keys are still under an older master key (made by a process that "
                "still had it first): run rotate_keys again once every process has restarted."
            )
        retirable = [key_id for key_id in master_key_ring().key_ids[1:] if key_id not in counts]
        if retirable:
            self.stdout.write(
                "No live data key uses "
                + ", ".join(map(repr, retirable))
                + (": it" if len(retirable) == 1 else ": they")
                + " can be removed from CDP_MASTER_KEY."
            )
