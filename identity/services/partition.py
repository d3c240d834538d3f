"""Writing a decided partition, and the derived state that follows: one place for the resolver
and for evidence links (approved or auto-merged matches), so neither can forget a step.

A partition is the union-find's groups over component keys, ``("p", profile id)`` for an
existing profile and ``("i", identifier id)`` for an identifier without one. Applying it points
absorbed profiles at their survivors and assigns profile-less identifiers (a group of them only
gets a new profile). Afterwards every profile whose identifiers changed gets its traits,
counters and consent state derived again, and absorbed profiles lose their consent state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from consent.services import consent_states_refresh
from identity.components import Components
from identity.merging import identifiers_assign, profiles_absorb, profiles_create
from identity.services.profiles import profiles_refresh

Key = tuple[str, int]  # ("p", profile id) or ("i", identifier id without a profile)


@dataclass(frozen=True)
class AppliedPartition:
    final: dict[int, int]  # identifier id (of key_of) -> its profile now
    absorbed: dict[int, int]  # absorbed profile id -> survivor id
    assignments: dict[int, int]  # formerly profile-less identifier id -> profile id
    created: list[int]  # new profile ids

    @property
    def membership_changed(self) -> set[int]:
        """Profiles whose set of identifiers changed."""
        return set(self.assignments.values()) | set(self.absorbed.values())


def partition_apply(components: Components[Key], key_of: Mapping[int, Key]) -> AppliedPartition:
    """Write the partition (the caller holds the components' locks). New profiles get ids in
    the order of their groups' oldest identifier."""
    groups = components.groups()
    new_roots = sorted(
        (root for root in groups if root[0] == "i"),
        key=lambda root: min(key[1] for key in groups[root]),
    )
    created = profiles_create(len(new_roots))
    profile_of_root: dict[Key, int] = dict(zip(new_roots, created, strict=True))
    absorbed: dict[int, int] = {}
    assignments: dict[int, int] = {}
    for root, keys in groups.items():
        if root[0] == "p":
            profile_of_root[root] = root[1]
        survivor = profile_of_root[root]
        for key in keys:
            if key[0] == "p" and key[1] != survivor:
                absorbed[key[1]] = survivor
            elif key[0] == "i":
                assignments[key[1]] = survivor
    identifiers_assign(assignments)
    profiles_absorb(absorbed)
    final = {i: profile_of_root[components.find(key)] for i, key in key_of.items()}
    return AppliedPartition(
        final=final, absorbed=absorbed, assignments=assignments, created=created
    )


def derived_refresh(
    applied: AppliedPartition,
    *,
    traits_for: Iterable[int] = (),
    consent_changed: Iterable[int] = (),
) -> set[int]:
    """Derive traits and counters of the profiles whose identifiers changed (and the traits
    of ``traits_for``), and the consent state of those and of ``consent_changed``; absorbed
    profiles lose theirs. Returns the profiles whose identifiers changed."""
    changed = applied.membership_changed
    profiles_refresh(profile_ids=changed, traits_for=changed | set(traits_for))
    consent_states_refresh(profile_ids=changed | set(consent_changed) | set(applied.absorbed))
    return changed
