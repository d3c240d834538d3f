"""What a resolver run did, in counts."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ResolveResult:
    events: int = 0
    records: int = 0
    edges: int = 0
    conflicts: int = 0
    merges: int = 0
    profiles_created: int = 0
    lock_retries: int = 0
    failed: int = 0  # rows set aside as ResolutionFailure
    withdrawn: int = 0  # edges of changed records no longer stated
    suppressed: int = 0  # events and records dropped: they carry an erased person's identifier

    def add(self, other: ResolveResult) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def empty(self) -> bool:
        """Nothing was pending (a batch that only set rows aside is not empty)."""
        return self.events == 0 and self.records == 0 and self.failed == 0
