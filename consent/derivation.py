"""A profile's current consent state, derived from its identifiers' ledger entries. Pure.

Per purpose:

1. Each identifier's own state is its latest choice (by ``given_at``, then entry id).
2. Choices made after the profile's latest merge are the merged person's own: the latest one
   wins, whichever identifier it came through (a grant today lifts a denial recorded through the
   other device last month).
3. When the latest choice predates the latest merge, the people merged had each decided on their
   own, and the most restrictive identifier state wins: a denial or withdrawal beats a grant
   (the latest restrictive choice, for its provenance).
4. An address-bound opt-out (an unsubscribed email address) stays with its identifier whatever
   the profile's state: the identifier is listed in ``opted_out_identifiers`` until a choice
   through that same identifier lifts it.

Unmerge needs no rule of its own: each side's ledger is its identifiers' entries.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from consent.purposes import GRANTED


@dataclass(frozen=True, slots=True)
class Choice:
    """One ledger entry, as derivation needs it."""

    entry_id: int
    identifier_id: int
    purpose: str
    status: str
    given_at: datetime
    address_bound: bool = False

    @property
    def restrictive(self) -> bool:
        return self.status != GRANTED

    @property
    def order(self) -> tuple[datetime, int]:
        return (self.given_at, self.entry_id)


@dataclass(frozen=True)
class Derived:
    status: str
    entry_id: int
    given_at: datetime
    opted_out_identifiers: list[int] = field(default_factory=list)


def derive(choices: Iterable[Choice], *, merged_at: datetime | None) -> dict[str, Derived]:
    """The state of each purpose that has at least one choice."""
    latest: dict[tuple[str, int], Choice] = {}
    for choice in choices:
        key = (choice.purpose, choice.identifier_id)
        current = latest.get(key)
        if current is None or choice.order > current.order:
            latest[key] = choice
    by_purpose: dict[str, list[Choice]] = {}
    for (purpose, _), choice in latest.items():
        by_purpose.setdefault(purpose, []).append(choice)
    return {
        purpose: _purpose_state(own, merged_at=merged_at)
        for purpose, own in sorted(by_purpose.items())
    }


def _purpose_state(own: list[Choice], *, merged_at: datetime | None) -> Derived:
    newest = max(own, key=lambda choice: choice.order)
    if merged_at is None or newest.given_at >= merged_at:
        decided = newest
    else:
        restrictive = [choice for choice in own if choice.restrictive]
        decided = max(restrictive or own, key=lambda choice: choice.order)
    opted_out = sorted(
        choice.identifier_id for choice in own if choice.address_bound and choice.restrictive
    )
    return Derived(
        status=decided.status,
        entry_id=decided.entry_id,
        given_at=decided.given_at,
        opted_out_identifiers=opted_out,
    )
