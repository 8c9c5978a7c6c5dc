"""Waiting for something to become true, without a fixed sleep."""

from __future__ import annotations

import asyncio
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
