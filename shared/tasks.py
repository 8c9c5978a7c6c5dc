"""Stopping a background task for sure."""

from __future__ import annotations

import asyncio
import io
import time
from typing import Any

import structlog

log = structlog.get_logger("tasks")

WARN_AFTER_SECONDS = 5.0


async def cancel_and_wait(
    task: asyncio.Task[Any], *, every: float = 1.0, warn_after: float = WARN_AFTER_SECONDS
) -> None:
    """Cancel ``task`` and wait until it has ended, cancelling again if it goes on: in
    Python 3.11 ``asyncio.wait_for`` (redis-py sends every command through it) swallows
    a cancellation that arrives as the awaited call completes, and a task looping on
    such calls then never ends, nor does whoever awaits it. A task still going after
    ``warn_after`` seconds is logged once, with where it stands (what holds a shutdown);
    one that ended with an error, with the error."""
    started = time.monotonic()
    warned = False
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=every)
        if not warned and not task.done() and time.monotonic() - started >= warn_after:
            warned = True
            stack = io.StringIO()
            task.print_stack(file=stack)
            log.warning("task_ignores_cancel", task=task.get_name(), stack=stack.getvalue())
    if not task.cancelled() and task.exception() is not None:  # (read: else only at GC)
        log.error("task_failed", task=task.get_name(), error=repr(task.exception()))
