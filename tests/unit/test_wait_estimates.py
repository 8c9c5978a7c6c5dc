"""How honest the wait estimate is: replay a recorded room and simulated ones, ask the
estimate (gateway/answers.py) what it would have told each person waiting, and compare
with the wait that followed. The 10-90 % range must hold the real wait at least 8 times
out of 10; each run prints its coverage and the estimate's median error."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers.waits import Pattern, accuracy, replay_estimates, simulate_room

pytestmark = pytest.mark.unit

RECORDED = Path(__file__).resolve().parent.parent / "data" / "waits-recorded.json"

ROOMS: dict[str, dict[str, object]] = {
    # a steady evening: arrivals a little above what the visits let through
    "steady": {"arrivals": lambda t: 2.0, "capacity": 40, "visit_seconds": 25.0},
    # a drop: a rush at the start, then a trickle; visits end unevenly
    "drop": {
        "arrivals": lambda t: 20.0 if t < 60 else 0.5,
        "capacity": 50,
        "release_rate": 10.0,
        "visit_seconds": 40.0,
        "patience_seconds": 300.0,
    },
    # many give up: the people ahead thin out
    "impatient": {"arrivals": lambda t: 3.0, "capacity": 30, "patience_seconds": 120.0},
    # the release rate, not the capacity, sets the pace
    "paced": {
        "arrivals": lambda t: 4.0 if t < 300 else 1.0,
        "capacity": 1000,
        "release_rate": 2.0,
    },
    # a small restaurant: few tables, long visits
    "small": {
        "arrivals": lambda t: 1.0 if t < 600 else 0.2,
        "capacity": 10,
        "visit_seconds": 60.0,
        "patience_seconds": 400.0,
    },
    # waves of arrivals, two minutes on, two off
    "waves": {
        "arrivals": lambda t: 6.0 if (t // 120) % 2 == 0 else 0.5,
        "capacity": 60,
        "release_rate": 8.0,
        "visit_seconds": 45.0,
    },
}


def test_the_recorded_room() -> None:
    data = json.loads(RECORDED.read_text())
    pattern: Pattern = [(float(t), str(kind), str(place)) for t, kind, place in data["pattern"]]
    assert any(kind == "leave" for _, kind, _ in pattern)
    estimates, admitted = replay_estimates(
        pattern, release_rate=float(data["release_rate"]), every=2.0
    )
    result = accuracy(estimates, admitted)
    print("\n" + result.line("recorded room"))
    assert result.estimates >= 200
    assert result.coverage >= 0.8


@pytest.mark.parametrize("name", sorted(ROOMS))
@pytest.mark.parametrize("seed", [1, 2])
def test_simulated_rooms(name: str, seed: int) -> None:
    settings = dict(ROOMS[name])
    arrivals: Callable[[float], float] = settings.pop("arrivals")  # type: ignore[assignment]
    release_rate = float(settings.get("release_rate", 5.0))  # type: ignore[arg-type]
    pattern = simulate_room(seed, seconds=900, arrivals=arrivals, **settings)  # type: ignore[arg-type]
    estimates, admitted = replay_estimates(pattern, release_rate=release_rate)
    result = accuracy(estimates, admitted)
    print("\n" + result.line(f"{name} (seed {seed})"))
    assert result.estimates >= 1000
    assert result.coverage >= 0.8
    assert result.median_error <= 0.35
