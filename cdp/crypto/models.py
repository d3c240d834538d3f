from __future__ import annotations

from django.db import models
from django.utils import timezone

from cdp.crypto.config import KEY_ID_MAX_LENGTH


class DataKey(models.Model):
    """A data key, stored only wrapped by a master key.

    Destroying it (crypto-shredding) wipes ``wrapped_key`` and sets ``destroyed_at``; the row
    stays, so ciphertexts under it fail with "key destroyed" rather than "unknown key". Rows are
    never deleted.
    """

    id = models.BigAutoField(primary_key=True)
    # bytes of the wrapped key; NULL once destroyed (see the constraint below)
    wrapped_key = models.BinaryField(null=True, editable=False)
    master_key_id = models.CharField(max_length=KEY_ID_MAX_LENGTH)
    created_at = models.DateTimeField(default=timezone.now)
    destroyed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(destroyed_at__isnull=True, wrapped_key__isnull=False)
                    | models.Q(destroyed_at__isnull=False, wrapped_key__isnull=True)
                ),
                name="datakey_wrapped_until_destroyed",
            )
        ]
        indexes = [
            # rotate_keys looks for live keys that are not under the newest master key
            models.Index(
                fields=["master_key_id", "id"],
                condition=models.Q(destroyed_at__isnull=True),
                name="datakey_live_by_master",
            )
        ]

    def __str__(self) -> str:
        state = "destroyed" if self.destroyed_at else f"wrapped by {self.master_key_id}"
        return f"data key {self.pk} ({state})"

    @property
    def is_destroyed(self) -> bool:
        return self.destroyed_at is not None
