"""The workers' room loop (shared/room_loop.py) against a real data store: a replica below
its share asks for a room another replica holds when that lease runs out, not on every
tick, and still takes the room at once when it runs out."""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis

from shared.redis_conn import connect
from shared.room import RoomUpdate
from shared.room_loop import RoomLoop
from shared.settings import Settings
from shared.store import RoomStore
from tests.helpers.servers import ValkeyProc
from tests.helpers.wait import wait_until

URL = "http://127.0.0.1:9/t"
ROOM = "loop-room"


async def test_a_refused_lease_says_how_long_it_has_left(
    own_store: tuple[ValkeyProc, Settings],
) -> None:
    _, settings = own_store
    redis = connect(settings.redis_url)
    try:
        store = RoomStore(redis)
        await store.put_room(ROOM, RoomUpdate(target_url=URL))
        [fence] = await store.lease_attempts([ROOM], "admission", "a", 60_000)
        assert fence > 0
        assert await store.lease_attempts([ROOM], "admission", "a", 60_000) == [fence]
        [refused] = await store.lease_attempts([ROOM], "admission", "b", 60_000)
        assert -60_000 <= refused <= -55_000
        assert await store.lease_acquire_many([ROOM], "admission", "b", 60_000) == [0]
    finally:
        await redis.aclose()


async def test_an_idle_replica_asks_when_the_lease_it_waits_for_runs_out(
    own_store: tuple[ValkeyProc, Settings],
) -> None:
    """Replica "a" takes the room's lease for 2 s and dies (it never renews). Replica "b",
    alone in the live count, ticks every 20 ms: it asks twice (once on its first tick, then
    when the lease has run out), not some hundred times, and takes the room then."""
    _, settings = own_store
    redis = connect(settings.redis_url)
    lease_ms = 2000
    try:
        store = RoomStore(redis)
        await store.put_room(ROOM, RoomUpdate(target_url=URL))
        assert await store.lease_acquire_many([ROOM], "admission", "a", lease_ms) != [0]
        taken_at = time.monotonic()
        before = await _script_calls(redis)

        async def idle(_room: str, _fence: int) -> None:
            pass

        loop = RoomLoop(
            store, role="admission", holder="b", tick_ms=20, lease_ms=lease_ms, work=idle
        )
        loop.eager_for = 0.0  # (the live count changes once, on the first tick)
        stop = asyncio.Event()
        running = asyncio.create_task(loop.run(stop))
        try:
            await wait_until(lambda: _holds(loop), seconds=10, every=0.01)
            took = time.monotonic() - taken_at
            asked = await _script_calls(redis) - before  # (only lease calls: nothing else runs)
        finally:
            stop.set()
            await running
        assert asked <= 3, f"asked {asked} times"
        assert lease_ms / 1000 - 0.1 <= took <= lease_ms / 1000 + 1.5
    finally:
        await redis.aclose()


async def _holds(loop: RoomLoop) -> bool:
    return ROOM in loop.held


async def _script_calls(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {"calls": 0})["calls"])


async def test_a_lease_given_up_early_is_taken_at_once(
    own_store: tuple[ValkeyProc, Settings],
) -> None:
    """Replica "a" holds the room's lease for a minute; "b", below its share, was told so
    and waits. When "a" hands the room over (or releases it on a stop), "b" takes it on
    its next tick, not when the minute is up: the store counts leases given up early."""
    _, settings = own_store
    redis = connect(settings.redis_url)
    try:
        store = RoomStore(redis)
        await store.put_room(ROOM, RoomUpdate(target_url=URL))
        [fence] = await store.lease_acquire_many([ROOM], "admission", "a", 60_000)

        async def idle(_room: str, _fence: int) -> None:
            pass

        loop = RoomLoop(store, role="admission", holder="b", tick_ms=20, lease_ms=3000, work=idle)
        loop.eager_for = 0.2
        stop = asyncio.Event()
        running = asyncio.create_task(loop.run(stop))
        try:
            await asyncio.sleep(1.0)  # past its first eager spell: it was refused, it waits
            assert loop.held == {}
            assert await store.lease_release(ROOM, "admission", "a", fence)
            released_at = time.monotonic()
            await wait_until(lambda: _holds(loop), seconds=10, every=0.01)
            took = time.monotonic() - released_at
        finally:
            stop.set()
            await running
        assert took < 5, f"taken {took:.2f} s after the release"
    finally:
        await redis.aclose()
