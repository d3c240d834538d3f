"""Activation settings: keys of ``settings.CDP_SEGMENTS`` with their defaults.

* ``EXPORT_SYNC_MAX_ROWS`` (10,000): a segment of at most this many members is exported in the
  request as a streamed download; a larger one as an async job (202 + job id).
* ``EXPORT_BATCH_SIZE`` (5,000): rows read per server-side cursor fetch and encrypted per part.
* ``EXPORT_DAYS`` (7): how long a job's file can be downloaded before its key is destroyed.
* ``WEBHOOK_TIMEOUT_SECONDS`` (5), ``WEBHOOK_RETRY_SECONDS`` ([30, 120, 600, 3600, 21600]: the
  waits after the 1st..5th failed attempt; dead after ``len + 1`` attempts),
  ``WEBHOOK_BATCH_SIZE`` (50 deliveries claimed at a time), ``WEBHOOK_LEASE_SECONDS`` (60: a
  claimed delivery whose worker died is tried again after this), ``WEBHOOK_CONCURRENCY`` (8
  requests of a batch at once).
* ``WEBHOOK_ALLOW_HTTP`` / ``WEBHOOK_ALLOW_PRIVATE`` (both ``DEBUG``): accept ``http://`` URLs
  and private, loopback or link-local addresses. Production keeps both off (SSRF).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

DEFAULT_RETRY_SECONDS = (30, 120, 600, 3600, 21600)


@dataclass(frozen=True)
class ActivationConfig:
    export_sync_max_rows: int
    export_batch_size: int
    export_days: int
    webhook_timeout_seconds: float
    webhook_retry_seconds: tuple[int, ...]
    webhook_batch_size: int
    webhook_lease_seconds: int
    webhook_concurrency: int
    webhook_allow_http: bool
    webhook_allow_private: bool

    @property
    def webhook_max_attempts(self) -> int:
        return len(self.webhook_retry_seconds) + 1


def activation_config() -> ActivationConfig:
    """Read on every call (tests override settings)."""
    values = getattr(settings, "CDP_SEGMENTS", {}) or {}
    return ActivationConfig(
        export_sync_max_rows=int(values.get("EXPORT_SYNC_MAX_ROWS", 10_000)),
        export_batch_size=int(values.get("EXPORT_BATCH_SIZE", 5_000)),
        export_days=int(values.get("EXPORT_DAYS", 7)),
        webhook_timeout_seconds=float(values.get("WEBHOOK_TIMEOUT_SECONDS", 5)),
        webhook_retry_seconds=tuple(
            int(s) for s in values.get("WEBHOOK_RETRY_SECONDS", DEFAULT_RETRY_SECONDS)
        ),
        webhook_batch_size=int(values.get("WEBHOOK_BATCH_SIZE", 50)),
        webhook_lease_seconds=int(values.get("WEBHOOK_LEASE_SECONDS", 60)),
        webhook_concurrency=max(1, int(values.get("WEBHOOK_CONCURRENCY", 8))),
        webhook_allow_http=bool(values.get("WEBHOOK_ALLOW_HTTP", settings.DEBUG)),
        webhook_allow_private=bool(values.get("WEBHOOK_ALLOW_PRIVATE", settings.DEBUG)),
    )
