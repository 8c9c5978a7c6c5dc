"""cancel_and_wait ends a task even when the task swallows a cancellation (as a call
through Python 3.11's asyncio.wait_for can)."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
from structlog.testing import capture_logs

from shared.tasks import cancel_and_wait

pytestmark = pytest.mark.unit


async def test_a_task_that_swallows_a_cancellation_is_cancelled_again() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(30)
        swallowed += 1
        await asyncio.sleep(30)

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(task, every=0.05), timeout=10)
    assert task.cancelled()
    assert swallowed == 1


async def test_a_finished_task_is_left_as_it_is() -> None:
    task = asyncio.create_task(asyncio.sleep(0))
    await task
    await cancel_and_wait(task)
    assert task.done()
    assert not task.cancelled()


async def test_a_task_that_goes_on_is_logged_with_where_it_stands() -> None:
    async def deaf_for_a_while() -> None:
        until = time.monotonic() + 0.3
        while time.monotonic() < until:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(1)

    task = asyncio.create_task(deaf_for_a_while(), name="deaf")
    await asyncio.sleep(0)
    with capture_logs() as logs:
        await asyncio.wait_for(cancel_and_wait(task, every=0.02, warn_after=0.1), timeout=10)
    [warning] = [entry for entry in logs if entry["event"] == "task_ignores_cancel"]
    assert warning["task"] == "deaf"
    assert "deaf_for_a_while" in warning["stack"]
    assert task.done()


async def test_a_task_that_ends_with_an_error_is_logged_with_it() -> None:
    async def fails_as_it_stops() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            raise ValueError("broken on the way out") from None

    task = asyncio.create_task(fails_as_it_stops(), name="fragile")
    await asyncio.sleep(0)
    with capture_logs() as logs:
        await cancel_and_wait(task, every=0.05)
    [failed] = [entry for entry in logs if entry["event"] == "task_failed"]
    assert failed["task"] == "fragile"
    assert "broken on the way out" in failed["error"]
