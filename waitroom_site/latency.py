"""The protected site's response times, as the guard sees them, summed up for a report.

The guard times each request it lets through, from its arrival to the app starting its
answer (time to first byte: a slow client reading a large body does not count against
the site). Between two reports the latest ``max_samples`` are kept; a report says how many
were measured and their median, 95th percentile and maximum.
"""

from __future__ import annotations

import math
from collections import deque
from typing import TypedDict


class LatencySummary(TypedDict):
    count: int
    p50_ms: float
    p95_ms: float
    max_ms: float


def percentile(ordered: list[float], share: float) -> float:
    """The nearest-rank percentile of sorted values (``share`` of 0.95 for p95)."""
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


class LatencySamples:
    def __init__(self, max_samples: int = 10_000) -> None:
        self._samples: deque[float] = deque(maxlen=max_samples)
        self._count = 0

    def add(self, seconds: float) -> None:
        self._samples.append(seconds * 1000)
        self._count += 1

    def __len__(self) -> int:
        return self._count

    def take(self) -> LatencySummary | None:
        """The summary of the samples since the last one (None without samples); the
        samples are dropped."""
        if not self._samples:
            return None
        ordered = sorted(self._samples)
        summary = LatencySummary(
            count=self._count,
            p50_ms=round(percentile(ordered, 0.5), 3),
            p95_ms=round(percentile(ordered, 0.95), 3),
            max_ms=round(ordered[-1], 3),
        )
        self._samples.clear()
        self._count = 0
        return summary
