"""How the line is ordered and how the admission pace is observed.

These constants are the one definition for both languages: the Lua scripts get them in a
header generated from here (``shared.scripts.lua_header``).
"""

from __future__ import annotations

import math

MAX_PRIORITY = 9
"""Priorities run from 0 (the default) to this; higher goes first."""

PRIORITY_SPAN = 10**14
"""Line score = (MAX_PRIORITY - priority) * PRIORITY_SPAN + arrival. Arrival numbers are
tenths of a millisecond of the server clock (about 1.8e13 now), so one priority's span holds
every arrival and scores stay below 1e15, exact in a double and in cjson's 14 digits."""

RATE_TAU_MS = 30_000
"""Time constant of the observed admission rate (an exponentially decaying count)."""


def observed_rate(rate: float, rate_ts: int, rate_since: int, now: int) -> float:
    """Admissions per second over roughly the last half minute.

    The admit script keeps an exponentially decaying count; here it is decayed to now and
    corrected for the short history of a room that started admitting recently.
    """
    if rate_ts <= 0:
        return 0.0
    decayed = rate * math.exp(-max(0, now - rate_ts) / RATE_TAU_MS)
    history = max(1, now - rate_since)
    warmup = 1 - math.exp(-history / RATE_TAU_MS)
    return decayed / warmup if warmup > 0.05 else decayed
