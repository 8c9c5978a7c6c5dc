"""The queue simulation behind the joins' tail figures (loadtest/queue_tail.py) agrees
with the closed forms it stands for."""

from __future__ import annotations

import math

import pytest

from loadtest.queue_tail import simulate


def test_random_arrivals_and_service_give_the_exponential_tail() -> None:
    """M/M/1: the time in the system is exponential with rate 1 - load, so p99 / p50 is
    ln 100 / ln 2 at any load, and p50 is ln 2 / (1 - load) service times."""
    tail = simulate("random", "random", 0.8, 200_000, seed=3)
    assert tail.ratio == pytest.approx(math.log(100) / math.log(2), rel=0.08)
    assert tail.p50 == pytest.approx(math.log(2) / 0.2, rel=0.08)


def test_paced_arrivals_of_constant_work_never_wait() -> None:
    tail = simulate("paced", "constant", 0.8, 10_000, seed=3)
    assert tail.p50 == tail.p99 == pytest.approx(1.0)


def test_constant_service_with_random_arrivals_misses_three_at_eighty_percent() -> None:
    """M/D/1 at 80 %: its mean wait is load / (2 (1 - load)) = 2 service times, and its
    p99 is still more than three times its p50."""
    tail = simulate("random", "constant", 0.8, 200_000, seed=3)
    assert tail.ratio > 3
    assert tail.p50 < 1 + 2  # the median below the mean time in the system


def test_a_load_of_one_or_more_is_refused() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        simulate("random", "random", 1.0, 10, seed=1)
