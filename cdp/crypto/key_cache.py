"""Unwrapped data keys held in process memory, so a hot key is unwrapped once, not per value.

Semantics, which callers may rely on:

* bounded: at most ``MAX_KEYS`` keys, least recently used evicted first;
* a key destroyed **in this process** stops decrypting at once (``data_keys_destroy`` forgets it
  immediately and again when its transaction commits, so a concurrent reader cannot re-cache the
  not-yet-committed row);
* a key destroyed **in another process** keeps decrypting here for at most ``TTL_SECONDS`` after
  that destroy commits: every entry is dropped ``TTL_SECONDS`` after it was unwrapped and the next
  use reads the row again. Erasure is therefore complete everywhere one minute after it commits;
* re-wrapping (``rotate_keys``) changes no entry: the data key itself is unchanged.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAX_KEYS = 10_000
TTL_SECONDS = 60.0


class DataKeyCache:
    """Thread-safe LRU of ready AES-GCM objects by data key id, each entry with a deadline."""

    def __init__(
        self,
        *,
        max_keys: int = MAX_KEYS,
        ttl_seconds: float = TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_keys = max_keys
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self._entries: OrderedDict[int, tuple[AESGCM, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, data_key_id: int) -> AESGCM | None:
        with self._lock:
            entry = self._entries.get(data_key_id)
            if entry is None:
                return None
            aead, expires_at = entry
            if self.clock() >= expires_at:
                del self._entries[data_key_id]
                return None
            self._entries.move_to_end(data_key_id)
            return aead

    def put(self, data_key_id: int, aead: AESGCM) -> None:
        with self._lock:
            self._entries[data_key_id] = (aead, self.clock() + self.ttl_seconds)
            self._entries.move_to_end(data_key_id)
            while len(self._entries) > self.max_keys:
                self._entries.popitem(last=False)

    def forget(self, data_key_ids: Iterable[int]) -> None:
        with self._lock:
            for data_key_id in data_key_ids:
                self._entries.pop(data_key_id, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


data_key_cache = DataKeyCache()
