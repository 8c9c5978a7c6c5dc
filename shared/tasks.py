"""Stopping a background task for sure."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any], *, every: float = 1.0) -> None:
    """Cancel ``task`` and wait until it has ended, cancelling again if it goes on: in
    Python 3.11 ``asyncio.wait_for`` (redis-py sends every command through it) swallows
    a cancellation that arrives as the awaited call completes, and a task looping on
    such calls then never ends, nor does whoever awaits it."""
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=every)
