"""The policies' pure rules: the pre-queue shuffle (uniform, reproducible from its seed)
and where a party sits (the Lua side runs the same cases in tests/test_policy_scripts.py)."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import pytest

from shared.policy import Capacity, order_digest, shuffle_order

pytestmark = pytest.mark.unit


def chi_square_critical(df: int, z: float = 3.09) -> float:
    """The chi-square value a fair draw stays below with probability 0.999 (z = 3.09),
    by the Wilson-Hilferty approximation (good to a fraction of a percent at this df)."""
    a = 2 / (9 * df)
    return df * (1 - a + z * math.sqrt(a)) ** 3


def test_every_permutation_is_equally_likely() -> None:
    """24,000 seeded draws of 5 people: each of the 120 orders about 200 times."""
    ids = ["a", "b", "c", "d", "e"]
    draws = 24_000
    counts = Counter(tuple(shuffle_order(f"seed-{n}", ids)) for n in range(draws))
    orders = list(itertools.permutations(ids))
    assert set(counts) == set(orders)  # every order happens
    expected = draws / len(orders)
    statistic = sum((counts[order] - expected) ** 2 / expected for order in orders)
    assert statistic < chi_square_critical(len(orders) - 1), statistic
    # and not suspiciously even either (a sequence that merely cycles would be)
    assert statistic > chi_square_critical(len(orders) - 1, z=-3.09), statistic


def test_everyone_lands_anywhere_alike() -> None:
    """A pre-queue of 12: each person's place is uniform over the 12 places."""
    ids = [f"p{n:02d}" for n in range(12)]
    draws = 6_000
    places: dict[str, Counter[int]] = {pid: Counter() for pid in ids}
    for n in range(draws):
        for place, pid in enumerate(shuffle_order(str(n), ids)):
            places[pid][place] += 1
    critical = chi_square_critical(len(ids) - 1)
    expected = draws / len(ids)
    for pid in ids:
        statistic = sum((places[pid][k] - expected) ** 2 / expected for k in range(len(ids)))
        assert statistic < critical, (pid, statistic)


def test_the_seed_decides_the_order_and_nothing_else() -> None:
    ids = [f"id{n}" for n in range(50)]
    first = shuffle_order("4b1d", ids)
    assert sorted(first) == sorted(ids)  # a permutation
    assert shuffle_order("4b1d", list(reversed(ids))) == first  # the input order is no part
    assert shuffle_order("4b1e", ids) != first
    assert order_digest(first) == order_digest(shuffle_order("4b1d", ids))
    assert order_digest(first) != order_digest(ids)


def test_without_lanes_only_the_total_counts() -> None:
    cap = Capacity(max_active=10, lanes={}, used=7)
    assert cap.seat_for("", 3) == ("", None)
    assert cap.seat_for("any", 4) == (None, "total")
    assert cap.seat_for("", 11) == (None, "never")
    assert cap.competes("", "total", "")


def test_a_party_takes_the_tightest_lane_that_fits() -> None:
    cap = Capacity(max_active=40, lanes={"counter": 8, "table": 24})
    cap.take("table", 20)  # table has 4 free, counter 8
    assert cap.seat_for("any", 3) == ("table", None)
    assert cap.seat_for("any", 6) == ("counter", None)
    assert cap.seat_for("table", 6) == (None, "lane")
    assert cap.seat_for("counter", 9) == (None, "never")  # larger than the lane itself
    assert cap.seat_for("any", 30) == (None, "never")
    assert cap.seat_for("bar", 1) == (None, "never")  # a lane the room does not have


def test_a_lane_with_room_in_a_full_room_waits_for_the_total() -> None:
    cap = Capacity(max_active=10, lanes={"counter": 8, "table": 24})
    cap.take("table", 8)
    assert cap.seat_for("counter", 3) == (None, "total")
    # who competes with whom: the total binds everyone, a lane only its own
    assert cap.competes("counter", "total", "table")
    assert not cap.competes("counter", "lane", "table")
    assert cap.competes("counter", "lane", "counter")
    assert cap.competes("any", "lane", "table")
