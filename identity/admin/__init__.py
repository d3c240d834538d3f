"""Views of the identity graph for data stewards. Every change goes through services (the
resolver, and ``profile_unmerge`` from the two unmerge actions below, each behind its own
permission and a confirmation page asking why), never through admin forms.

No page decrypts anything: reading an identifier value or a PII trait is an audited action, not
a page view. An identifier shows its kind and the first bytes of its blind index, which say
nothing without the blind index key; a PII trait shows that it is encrypted.
"""

from identity.admin.graph import (
    EdgeAdmin,
    IdentifierAdmin,
    MergeLedgerEntryAdmin,
    ResolutionFailureAdmin,
)
from identity.admin.profiles import ProfileAdmin

__all__ = [
    "EdgeAdmin",
    "IdentifierAdmin",
    "MergeLedgerEntryAdmin",
    "ProfileAdmin",
    "ResolutionFailureAdmin",
]
