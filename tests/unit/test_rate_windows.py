"""Per-token limits counted in the gateway process: fixed windows, bounded memory."""

from __future__ import annotations

import time

import pytest
from limits import parse

from gateway.ratelimit import LocalWindows

pytestmark = pytest.mark.unit


def test_a_window_allows_its_amount_then_says_how_long_to_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    windows, item = LocalWindows(), parse("3/minute")
    assert [windows.hit(item, ("status", "t1")) for _ in range(3)] == [None, None, None]
    assert windows.hit(item, ("status", "t1")) == 60
    assert windows.hit(item, ("status", "t2")) is None  # another token, its own window
    clock[0] += 45
    assert windows.hit(item, ("status", "t1")) == 15
    clock[0] += 15
    assert windows.hit(item, ("status", "t1")) is None  # a new window


def test_made_up_tokens_cost_bounded_memory() -> None:
    windows, item = LocalWindows(max_keys=100), parse("3/minute")
    for i in range(10_000):
        windows.hit(item, ("status", f"t{i}"))
    assert len(windows._windows) == 100
