"""Segments tasks. Celery's autodiscovery imports this module only, so the activation tasks
(exports, webhook sender) are imported here to be registered."""

from __future__ import annotations

from segments.activation.tasks import (  # noqa: F401 (registered by import)
    segment_export_build,
    segment_exports_expire_due,
    segment_exports_run_pending,
    webhook_deliveries_send_due,
)
