"""cancel_and_wait ends a task even when the task swallows a cancellation (as a call
through Python 3.11's asyncio.wait_for can)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

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
