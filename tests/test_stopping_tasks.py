"""Background tasks end when their owner stops, even a task that swallows a cancellation
(a store call through Python 3.11's ``asyncio.wait_for`` can; see shared/tasks.py). One
that did held a gateway's shutdown (its config guard's) until pytest's 180 s timeout."""

from __future__ import annotations

import asyncio
import contextlib
from typing import ClassVar

from gateway.config_guard import ConfigGuard
from shared.room_loop import RoomLoop
from shared.store import RoomStore
from shared.worker_process import run_loops


async def swallow_one_cancellation() -> None:
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(30)
    await asyncio.sleep(30)


class DeafGuard(ConfigGuard):
    async def check(self) -> None:
        await swallow_one_cancellation()


class DeafLoop(RoomLoop):
    heard: ClassVar[list[str]] = []

    async def run(self, stop: asyncio.Event) -> None:
        await stop.wait()
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(30)
            self.heard.append(f"{self.role} cancelled")
            await asyncio.sleep(30)
        finally:
            self.heard.append(f"{self.role} ended")


async def nothing(room: str, fence: int) -> None:
    return None


async def test_a_config_guard_closes_though_its_check_swallows_a_cancellation(
    store: RoomStore,
) -> None:
    guard = DeafGuard(store, every=0)
    guard.start()
    await asyncio.sleep(0.05)  # within its check
    closing = asyncio.create_task(guard.close())
    done, _ = await asyncio.wait([closing], timeout=10)
    assert closing in done
    assert guard._task is not None
    assert guard._task.done()


async def test_worker_loops_are_cancelled_together_and_have_ended_when_run_loops_returns(
    store: RoomStore,
) -> None:
    DeafLoop.heard = []
    loops: list[RoomLoop] = [
        DeafLoop(store, role=role, holder="h", tick_ms=50, lease_ms=1000, work=nothing)
        for role in ("admission", "relay")
    ]
    stop = asyncio.Event()
    running = asyncio.create_task(run_loops(loops, stop, grace=0.1))
    await asyncio.sleep(0.05)
    stop.set()
    done, _ = await asyncio.wait([running], timeout=10)
    assert running in done
    left = [t for t in asyncio.all_tasks() if t.get_name().startswith("loop-") and not t.done()]
    assert left == []
    # every loop is cancelled before any has to end (no loop works on past the grace
    # while another is being stopped)
    assert sorted(DeafLoop.heard[:2]) == ["admission cancelled", "relay cancelled"]
