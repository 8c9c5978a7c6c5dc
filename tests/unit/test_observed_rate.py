"""The admission pace a room shows, from the decaying count admit.lua keeps."""

from __future__ import annotations

import math

import pytest

from shared.line import RATE_TAU_MS, observed_rate

pytestmark = pytest.mark.unit


def admit_ticks(
    per_tick: int, tick_ms: int, ticks: int, start: int = 1_000_000
) -> tuple[float, int, int]:
    """What admit.lua leaves in the stats after ``ticks`` ticks admitting ``per_tick`` each:
    (rate, rate_ts, rate_since)."""
    rate, rate_ts, since = 0.0, start, start
    now = start
    for _ in range(ticks):
        now += tick_ms
        rate = rate * math.exp(-max(0, now - rate_ts) / RATE_TAU_MS) + per_tick * 1000 / RATE_TAU_MS
        rate_ts = now
    return rate, rate_ts, since


def test_a_room_that_never_admitted_shows_zero() -> None:
    assert observed_rate(0.0, 0, 0, 5_000) == 0.0


@pytest.mark.parametrize("seconds", [3, 10, 60, 600])
def test_a_steady_pace_is_shown_as_it_is_young_or_old(seconds: int) -> None:
    # ten a second: one every 100 ms
    rate, rate_ts, since = admit_ticks(1, 100, seconds * 10)
    assert observed_rate(rate, rate_ts, since, rate_ts) == pytest.approx(10.0, rel=0.05)


def test_a_pause_decays_with_the_time_constant() -> None:
    rate, rate_ts, since = admit_ticks(1, 100, 6000)  # ten minutes at 10/s
    later = rate_ts + RATE_TAU_MS
    assert observed_rate(rate, rate_ts, since, later) == pytest.approx(10.0 / math.e, rel=0.02)


def test_a_clock_behind_the_last_tick_does_not_inflate_the_pace() -> None:
    rate, rate_ts, since = admit_ticks(1, 100, 6000)
    assert observed_rate(rate, rate_ts, since, rate_ts - 5_000) == pytest.approx(
        observed_rate(rate, rate_ts, since, rate_ts)
    )
