"""Per-visit memory that cannot grow without bound: entries expire, and past a size the
oldest go first (a crowd of visitors, or an attacker making up visits, costs a fixed
amount of memory)."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Generic, TypeVar

V = TypeVar("V")


class ExpiringMap(Generic[V]):
    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._data: OrderedDict[str, tuple[float, V]] = OrderedDict()

    def put(self, key: str, value: V, *, until: float) -> None:
        """Keep ``value`` under ``key`` until the epoch second ``until``."""
        self._data[key] = (until, value)
        self._data.move_to_end(key)
        while len(self._data) > self.max_size:
            self._data.popitem(last=False)

    def get(self, key: str) -> V | None:
        hit = self._data.get(key)
        if hit is None:
            return None
        if hit[0] <= time.time():
            del self._data[key]
            return None
        return hit[1]

    def pop(self, key: str) -> V | None:
        hit = self._data.pop(key, None)
        return None if hit is None or hit[0] <= time.time() else hit[1]

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    def __len__(self) -> int:
        return len(self._data)
