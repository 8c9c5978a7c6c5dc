"""Waiting for something to become true, without a fixed sleep."""

from __future__ import annotations

import asyncio
import io
from typing import Any


async def wait_until(check: Any, *, seconds: float = 10.0, every: float = 0.05) -> Any:
    """Poll an async ``check()`` until it returns something truthy; fail after ``seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    last: Any = None
    while loop.time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(every)
    raise AssertionError(f"condition not met in {seconds}s (last: {last!r})")


async def ended_in(task: asyncio.Task[Any], seconds: float, what: str) -> None:
    """Await ``task``, but fail after ``seconds`` with the stack of every task in the loop
    (whatever holds it up), instead of hanging until pytest's timeout says nothing."""
    done, _ = await asyncio.wait([task], timeout=seconds)
    if task in done:
        task.result()
        return
    stacks = io.StringIO()
    for each in asyncio.all_tasks():
        each.print_stack(file=stacks)
    raise AssertionError(
        f"{what} did not end in {seconds} s; the loop's tasks:\n{stacks.getvalue()}"
    )
