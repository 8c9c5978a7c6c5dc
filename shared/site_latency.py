"""The protected site's response times, as the rooms keep them: what a report holds, how
long reports count, and the one figure the admission pace follows.

``WaitroomGuard`` measures the site and sends a summary (count, p50, p95, max) with a
session heartbeat; the gateway keeps the latest report of each place for ``WINDOW_MS``
(latency_report.lua). The site's latency is then the median of the recent reports' p95,
each report counting once, whatever number of samples it claims.

Only the site's guard may report: it signs each report with the deployment's site key
(``WAITROOM_SITE_KEY``), over the room, the visit's ``sub`` and the exact body it sends
(``report_mac``, in the ``X-Waitroom-Report-Mac`` header). A visitor holds their own
access token and could send a heartbeat with made-up figures, but not the key: the gateway
keeps no report without a good MAC, and none at all when it has no site key.
"""

from __future__ import annotations

import hashlib
import hmac

import msgspec

WINDOW_MS = 10_000
"""Reports older than this no longer count."""
MAX_REPORTS = 1_000
"""Reports a room keeps at most (the oldest go first)."""
REPORT_MAC_HEADER = "X-Waitroom-Report-Mac"
"""The header a guard's signed report comes with (hex HMAC-SHA256, see ``report_mac``)."""


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


def report_mac(site_key: str, room: str, sub: str, body: bytes) -> str:
    """The MAC a guard sends with a heartbeat body that carries a latency report: hex
    HMAC-SHA256 with the site key over ``room``, newline, ``sub``, newline, the body."""
    signed = room.encode() + b"\n" + sub.encode() + b"\n" + body
    return hmac.new(site_key.encode(), signed, hashlib.sha256).hexdigest()


def report_signed(site_key: str, room: str, sub: str, body: bytes, mac: str | None) -> bool:
    """Whether ``mac`` is the guard's MAC of this report (never without a site key)."""
    if not site_key or not mac:
        return False
    expected = report_mac(site_key, room, sub, body).encode()
    return hmac.compare_digest(expected, mac.strip().lower().encode(errors="replace"))


def site_p95(reports: list[LatencyReport]) -> float | None:
    """The site's 95th-percentile response time the reports agree on (the median of their
    p95s, each report counting once; the lower middle of an even number), or None without
    reports."""
    values = sorted(r.p95 for r in reports)
    if not values:
        return None
    return values[(len(values) - 1) // 2]
