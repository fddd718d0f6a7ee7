"""`BoundedCache`: the memo of content-keyed work (decoded snapshot content, its rows)."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """A dict that starts over when it holds `size` entries.

    Cheaper than LRU bookkeeping on every hit; a working set smaller than `size` stays cached,
    a larger one costs a miss per lookup, as it would with LRU on a cyclic access pattern.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.entries: dict[K, V] = {}

    def get(self, key: K) -> V | None:
        return self.entries.get(key)

    def put(self, key: K, value: V) -> V:
        if len(self.entries) >= self.size:
            self.entries.clear()
        self.entries[key] = value
        return value
