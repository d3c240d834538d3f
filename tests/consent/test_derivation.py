"""The consent derivation rule (consent/derivation.py), pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from consent.derivation import Choice, derive

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def choice(entry_id: int, identifier_id: int, status: str, *, at: int, **kw: object) -> Choice:
    return Choice(
        entry_id=entry_id,
        identifier_id=identifier_id,
        purpose=str(kw.pop("purpose", "marketing_email")),
        status=status,
        given_at=T0 + timedelta(days=at),
        address_bound=bool(kw.pop("address_bound", False)),
    )


def test_one_person_latest_choice_wins() -> None:
    states = derive(
        [choice(1, 10, "granted", at=0), choice(2, 10, "withdrawn", at=1)], merged_at=None
    )
    assert states["marketing_email"].status == "withdrawn"
    states = derive([choice(1, 10, "denied", at=0), choice(2, 11, "granted", at=1)], merged_at=None)
    assert states["marketing_email"].status == "granted"
    assert states["marketing_email"].entry_id == 2


def test_at_merge_the_most_restrictive_side_wins() -> None:
    # Two people decided apart (days 0 and 1); they merged on day 5.
    merged = T0 + timedelta(days=5)
    grant_first = [choice(1, 10, "denied", at=0), choice(2, 11, "granted", at=1)]
    deny_first = [choice(1, 10, "granted", at=0), choice(2, 11, "denied", at=1)]
    assert derive(grant_first, merged_at=merged)["marketing_email"].status == "denied"
    assert derive(deny_first, merged_at=merged)["marketing_email"].status == "denied"


def test_a_grant_after_the_merge_is_the_merged_persons_own() -> None:
    merged = T0 + timedelta(days=5)
    choices = [
        choice(1, 10, "denied", at=0),
        choice(2, 11, "granted", at=1),
        choice(3, 11, "granted", at=6),  # the merged person, through either identifier
    ]
    state = derive(choices, merged_at=merged)["marketing_email"]
    assert (state.status, state.entry_id) == ("granted", 3)


def test_an_address_bound_opt_out_stays_with_its_address() -> None:
    choices = [
        choice(1, 10, "withdrawn", at=0, address_bound=True),  # email 10 unsubscribed
        choice(2, 11, "granted", at=2),  # the person grants through another identifier
    ]
    state = derive(choices, merged_at=None)["marketing_email"]
    assert state.status == "granted"
    assert state.opted_out_identifiers == [10]
    # ...until a choice through the address itself lifts it.
    lifted = derive([*choices, choice(3, 10, "granted", at=3)], merged_at=None)
    assert lifted["marketing_email"].opted_out_identifiers == []


def test_purposes_are_independent() -> None:
    states = derive(
        [
            choice(1, 10, "granted", at=0, purpose="analytics"),
            choice(2, 10, "denied", at=1, purpose="advertising"),
        ],
        merged_at=None,
    )
    assert {p: s.status for p, s in states.items()} == {
        "advertising": "denied",
        "analytics": "granted",
    }


statuses = st.sampled_from(["granted", "denied", "withdrawn"])


@given(
    st.lists(st.tuples(st.integers(1, 3), statuses, st.integers(0, 20)), min_size=1),
    st.integers(0, 25),
)
def test_never_more_permissive_than_every_side_before_the_merge(
    raw: list[tuple[int, str, int]], merge_day: int
) -> None:
    """Whatever the history: a grant can only be the state if it is the latest choice after
    the merge, or if every identifier's own latest choice is a grant."""
    choices = [choice(i, ident, status, at=day) for i, (ident, status, day) in enumerate(raw)]
    merged_at = T0 + timedelta(days=merge_day)
    state = derive(choices, merged_at=merged_at)["marketing_email"]
    latest_per_identifier = {}
    for c in sorted(choices, key=lambda c: c.order):
        latest_per_identifier[c.identifier_id] = c
    newest = max(choices, key=lambda c: c.order)
    if state.status == "granted":
        assert newest.given_at >= merged_at or all(
            c.status == "granted" for c in latest_per_identifier.values()
        )
    # The deciding entry is always one of the choices, with its own status.
    decided = next(c for c in choices if c.entry_id == state.entry_id)
    assert decided.status == state.status
