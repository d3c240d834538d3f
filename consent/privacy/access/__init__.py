"""Access requests (DSAR): a machine-readable export of everything held about one person.

- ``registry``: the sections an export is made of, and the hook other apps register theirs
  with (``access_sections_register`` from ``AppConfig.ready``; docs/privacy.md);
- ``sections``: the built-in sections (identity, events, CRM records, consent, merge history);
- ``archive``: the person's cluster (``access_subject``) and the zip (``access_export_build``);
- ``storage``: the export encrypted at rest, its download and its expiry;
- ``run``: the request's creation and the worker's run (``access_request``, ``access_run``).
"""

from consent.privacy.access.archive import (
    FORMAT_VERSION,
    BuiltExport,
    ExportTooLarge,
    SubjectGone,
    access_export_build,
    access_export_write,
    access_subject,
)
from consent.privacy.access.registry import (
    ExportSection,
    ExportSubject,
    access_sections,
    access_sections_register,
    access_sections_unregister,
    builtin_sections_define,
)
from consent.privacy.access.sections import BUILTIN_SECTIONS

builtin_sections_define(BUILTIN_SECTIONS)

__all__ = [
    "FORMAT_VERSION",
    "BuiltExport",
    "ExportSection",
    "ExportSubject",
    "ExportTooLarge",
    "SubjectGone",
    "access_export_build",
    "access_export_write",
    "access_sections",
    "access_sections_register",
    "access_sections_unregister",
    "access_subject",
]
