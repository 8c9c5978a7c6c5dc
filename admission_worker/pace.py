"""The admission pace of a room that follows its site (``auto_release``).

Every ``CONTROL_EVERY`` seconds the controller looks at the site's latency (the median
p95 of the signed WaitroomGuard reports of the last ``WINDOW_MS``, shared/site_latency.py)
and moves the pace between 0 and ``release_rate``:

- above ``target_latency_ms``: cut in proportion to the overshoot (p95 twice the target
  halves the pace), never by more than half in one step;
- below ``RAISE_BELOW`` of the target, or with no reports at all (nobody is on the site
  to be slowed down, or no WAITROOM_SITE_KEY to sign reports with): raise by ``STEP_UP``
  of ``release_rate``;
- in between: hold.

That is additive increase, multiplicative decrease, as TCP does for the same reason: back
off fast when the far side hurts, probe slowly when it does not. The pace in force is
kept in the store (``pace_set.lua``, with a ``pace_changed`` event), so another replica
taking the room over carries on from it, and the admission tick gets it as the release
rate cap.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import structlog

from shared.site_latency import site_p95
from shared.store import RoomStore

log = structlog.get_logger("pace")

CONTROL_EVERY = 1.0
STEP_UP = 0.1
RAISE_BELOW = 0.8
MAX_CUT = 0.5
FLOOR = 0.02
"""A pace below this share of release_rate is 0: nobody is let in until the site recovers."""


def next_pace(pace: float, release_rate: float, target_ms: int, p95_ms: float | None) -> float:
    """The pace after one control step (releases per second, 0..release_rate)."""
    pace = min(max(pace, 0.0), release_rate)
    if p95_ms is not None and p95_ms > target_ms:
        pace *= max(MAX_CUT, target_ms / p95_ms)
        return 0.0 if pace < release_rate * FLOOR else round(pace, 3)
    if p95_ms is None or p95_ms < target_ms * RAISE_BELOW:
        return round(min(release_rate, pace + release_rate * STEP_UP), 3)
    return round(pace, 3)


@dataclass
class _Steered:
    at: float
    pace: float | None


class PaceController:
    """One per admission replica: the pace of each room it admits for."""

    def __init__(self, store: RoomStore) -> None:
        self.store = store
        self._rooms: dict[str, _Steered] = {}

    async def pace(self, room: str, holder: str, fence: int, lease_ms: int) -> float | None:
        """The release rate cap for this tick (None: release_rate), stepped when due."""
        now = time.monotonic()
        known = self._rooms.get(room)
        if known is not None and now - known.at < CONTROL_EVERY:
            return known.pace
        pace = await self._step(room, holder, fence, lease_ms)
        self._rooms[room] = _Steered(now, pace)
        return pace

    async def _step(self, room: str, holder: str, fence: int, lease_ms: int) -> float | None:
        inputs = await self.store.pace_inputs(room)
        if inputs is None:
            return None
        if not inputs.auto_release:
            if inputs.pace is not None:  # it was following the site: say it stopped
                await self.store.set_pace(room, holder, fence, lease_ms, None)
                log.info("pace_released", room=room, release_rate=inputs.release_rate)
            return None
        p95 = site_p95(inputs.reports)
        current = inputs.release_rate if inputs.pace is None else inputs.pace
        pace = next_pace(current, inputs.release_rate, inputs.target_latency_ms, p95)
        if pace != inputs.pace:
            await self.store.set_pace(
                room, holder, fence, lease_ms, pace, site_p95_ms=p95, reports=len(inputs.reports)
            )
            log.info(
                "pace_changed",
                room=room,
                pace=pace,
                was=inputs.pace,
                site_p95_ms=p95,
                target_latency_ms=inputs.target_latency_ms,
                reports=len(inputs.reports),
            )
        return pace
