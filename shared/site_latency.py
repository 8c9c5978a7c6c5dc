"""The protected site's response times, as the rooms keep them: what a report holds, how
long reports count, and the one figure the admission pace follows.

``WaitroomGuard`` measures the site and sends a summary (count, p50, p95, max) with a
session heartbeat; the gateway keeps the latest report of each place for ``WINDOW_MS``
(latency_report.lua). The site's latency is then the count-weighted median of the recent
reports' p95: a report counts at most ``MAX_WEIGHT`` samples and once per place, so a
visitor replaying their own access token with made-up figures moves it no more than any
other single report does.
"""

from __future__ import annotations

import msgspec

WINDOW_MS = 10_000
"""Reports older than this no longer count."""
MAX_REPORTS = 1_000
"""Reports a room keeps at most (the oldest go first)."""
MAX_WEIGHT = 200
"""Samples one report counts for at most."""


class LatencyReport(msgspec.Struct, frozen=True):
    t: int
    """When the gateway got it (the data store's clock, ms)."""
    n: int
    p50: float
    p95: float
    max: float


report_decoder = msgspec.json.Decoder(LatencyReport)


def recent(
    reports: list[LatencyReport], now_ms: int, window_ms: int = WINDOW_MS
) -> list[LatencyReport]:
    return [r for r in reports if now_ms - window_ms <= r.t]


def site_p95(reports: list[LatencyReport]) -> float | None:
    """The site's 95th-percentile response time the reports agree on (the weighted median
    of their p95s), or None without reports."""
    weighted = sorted((r.p95, min(max(r.n, 1), MAX_WEIGHT)) for r in reports)
    if not weighted:
        return None
    half = sum(w for _, w in weighted) / 2
    seen = 0
    for value, weight in weighted:
        seen += weight
        if seen >= half:
            return value
    return weighted[-1][0]
