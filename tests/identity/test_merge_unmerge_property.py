"""Property: whatever two people did, linking them and unlinking them gives both back exactly."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdp.ingestion.models import Event
from cdp.ingestion.services import SourceWithKey
from identity.models import Edge, EdgeRule, Identifier, Profile
from identity.services.unmerge import profile_unmerge
from tests.identity.resolving import ingest, message, pid, resolve

pytestmark = pytest.mark.django_db

plans = st.sampled_from(["free", "pro", "team"])
action = st.one_of(
    st.tuples(st.just("track"), st.integers(0, 2)),
    st.tuples(st.just("identify"), st.integers(0, 2), plans),
)
history = st.lists(action, min_size=1, max_size=8)


def _messages(person: str, actions: list[tuple[Any, ...]], start: int) -> list[dict[str, Any]]:
    out = []
    for n, step in enumerate(actions):
        anon = f"{person}-anon-{step[1]}"
        if step[0] == "track":
            out.append(message("track", at=start + n, anonymousId=anon))
        else:
            traits = {"plan": step[2], "email": f"{person}@x.io"}
            out.append(
                message("identify", at=start + n, userId=person, anonymousId=anon, traits=traits)
            )
    return out


def _side(user: str) -> dict[str, Any]:
    identifier = Identifier.objects.filter(profile_id=pid("user_id", user))
    ids = sorted(identifier.values_list("pk", flat=True))
    profile = Profile.objects.get(pk=pid("user_id", user))
    return {
        "id": profile.pk,
        "identifiers": ids,
        "events": sorted(Event.objects.filter(identifier_id__in=ids).values_list("pk", flat=True)),
        "traits": {k: (v.get("value"), v["origin_id"]) for k, v in profile.traits.items()},
        "counters": (profile.event_count, profile.first_seen_at, profile.last_seen_at),
    }


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ada=history, bob=history)
def test_link_then_unlink_restores_both_people(
    source: SourceWithKey, ada: list[tuple[Any, ...]], bob: list[tuple[Any, ...]]
) -> None:
    # Each person identifies at least once, so each has a user id node.
    ada = [*ada, ("identify", 0, "free")]
    bob = [*bob, ("identify", 0, "pro")]
    # Two user ids may share a profile here, so an alias between them merges.
    rules = {"LIMITS": {"user_id": 2}}
    with transaction.atomic(), override_settings(CDP_MERGE_RULES=rules):
        web = source.source.pk
        ingest(web, *_messages("ada", ada, 0), *_messages("bob", bob, 100))
        resolve()
        before = {"ada": _side("ada"), "bob": _side("bob")}
        ingest(web, message("alias", at=250, previousId="bob", userId="ada"))
        resolve()
        survivor = pid("user_id", "ada")
        assert survivor == pid("user_id", "bob") == min(before["ada"]["id"], before["bob"]["id"])
        link = Edge.objects.get(rule=EdgeRule.ALIAS)

        profile_unmerge(profile_id=survivor, edge_ids=[link.pk], actor="t", reason="property")

        after = {"ada": _side("ada"), "bob": _side("bob")}
        alias_event = Event.objects.get(type="alias")
        assert after["bob"] == before["bob"]
        # Ada's side also holds the alias call itself (it is anchored on her user id).
        expected = dict(before["ada"])
        expected["events"] = sorted([*before["ada"]["events"], alias_event.pk])
        count, first, last = before["ada"]["counters"]
        expected["counters"] = (
            count + 1,
            min(first, alias_event.timestamp),
            max(last, alias_event.timestamp),
        )
        assert after["ada"] == expected
        transaction.set_rollback(True)
