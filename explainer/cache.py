"""Bounded, thread-safe LRU caches with hit and miss counts.

Used for explanations (keyed by model sha256, input hash, method, options, seed, target)
and for per-model objects that are costly to build (lime explainers, segmentations).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

import numpy as np

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LruCache(Generic[K, V]):
    """At most `max_entries` values; the least recently used is dropped first."""

    def __init__(self, max_entries: int) -> None:
        if max_entries < 0:
            raise ValueError("max_entries must be >= 0")
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K, count: bool = True) -> V | None:
        """The value of `key` (now the most recently used), or None; a hit or a miss unless
        `count` is False, for callers that count what they serve themselves (`record`)."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self.hits += int(count)
                return self._entries[key]
            self.misses += int(count)
            return None

    def record(self, hits: int = 0, misses: int = 0) -> None:
        """Count hits and misses of lookups made with `get(key, count=False)`."""
        with self._lock:
            self.hits += hits
            self.misses += misses

    def put(self, key: K, value: V) -> None:
        if self.max_entries == 0:
            return
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def get_or_build(self, key: K, build: Callable[[], V]) -> V:
        """The cached value, or `build()` stored and returned."""
        value = self.get(key)
        if value is None:
            value = build()
            self.put(key, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def stats(self) -> dict[str, int]:
        return {"entries": len(self), "hits": self.hits, "misses": self.misses}


def array_digest(array: np.ndarray) -> str:
    """A content hash of an array (shape, dtype and bytes)."""
    digest = hashlib.sha256(str((array.shape, array.dtype.str)).encode())
    digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()
