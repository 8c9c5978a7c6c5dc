"""The workers' room loop (shared/room_loop.py) against a real data store: a replica below
its share asks for a room another replica holds when that lease runs out, not on every
tick, and still takes the room at once when it runs out or is given up early."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from shared.redis_conn import connect
from shared.room import RoomUpdate
from shared.room_loop import RoomLoop
from shared.settings import Settings
from shared.store import RoomStore
from shared.store.lane import ScriptLane
from shared.store.rooms import WORKER_LANE_SCRIPTS
from tests.helpers.servers import ValkeyProc
from tests.helpers.wait import wait_until

URL = "http://127.0.0.1:9/t"
ROOM = "loop-room"


@pytest.fixture(params=["pool", "lane"])
async def lone_store(
    own_store: tuple[ValkeyProc, Settings], request: pytest.FixtureRequest
) -> AsyncIterator[RoomStore]:
    """A store of the test's own (the loop takes every room in it) holding ``ROOM``; its
    scripts through redis-py's pool, or all through a lane (as a worker's)."""
    _, settings = own_store
    redis = connect(settings.redis_url)
    lane = ScriptLane(settings.redis_url) if request.param == "lane" else None
    try:
        room_store = RoomStore(redis, lane=lane, lane_scripts=WORKER_LANE_SCRIPTS)
        await room_store.put_room(ROOM, RoomUpdate(target_url=URL))
        yield room_store
        if lane is not None:
            assert lane.opened == 1  # (the calls went that way)
    finally:
        if lane is not None:
            await lane.aclose()
        await redis.aclose()


async def test_a_refused_lease_says_how_long_it_has_left(lone_store: RoomStore) -> None:
    [fence] = await lone_store.lease_attempts([ROOM], "admission", "a", 60_000)
    assert fence > 0
    assert await lone_store.lease_attempts([ROOM], "admission", "a", 60_000) == [fence]
    [refused] = await lone_store.lease_attempts([ROOM], "admission", "b", 60_000)
    assert -60_000 <= refused <= -55_000
    assert await lone_store.lease_acquire_many([ROOM], "admission", "b", 60_000) == [0]


async def test_an_idle_replica_asks_when_the_lease_it_waits_for_runs_out(
    lone_store: RoomStore,
) -> None:
    """Replica "a" takes the room's lease for 2 s and dies (it never renews). Replica "b",
    alone in the live count, ticks every 20 ms: it asks twice (once on its first tick, then
    when the lease has run out), not some hundred times, and takes the room then."""
    lease_ms = 2000
    [fence_a] = await lone_store.lease_acquire_many([ROOM], "admission", "a", lease_ms)
    assert fence_a
    before = await _lease_asks(lone_store.redis)
    async with _replica_b(lone_store, lease_ms, eager_for=0.0) as loop:
        # (eager_for 0: the live count changes once, on the first tick)
        await wait_until(lambda: _holds(loop), seconds=10, every=0.01)
        asked = await _lease_asks(lone_store.redis) - before
        assert loop.held[ROOM] > fence_a  # a lease of its own, once "a"'s ran out
    assert asked <= 3, f"asked {asked} times"


async def test_a_lease_given_up_early_is_taken_at_once(lone_store: RoomStore) -> None:
    """Replica "a" holds the room's lease for a minute; "b", below its share, was told so
    and waits. When "a" hands the room over (or releases it on a stop), "b" takes it on
    its next tick, not when the minute is up: the store counts leases given up early."""
    [fence] = await lone_store.lease_acquire_many([ROOM], "admission", "a", 60_000)
    async with _replica_b(lone_store, 3000, eager_for=0.2) as loop:
        await asyncio.sleep(1.0)  # past its first eager spell: it was refused, it waits
        assert loop.held == {}
        assert await lone_store.lease_release(ROOM, "admission", "a", fence)
        before = await _lease_asks(lone_store.redis)
        await wait_until(lambda: _holds(loop), seconds=10, every=0.01)
        asked = await _lease_asks(lone_store.redis) - before
    assert asked <= 2, f"asked {asked} times after the release"  # at once: it was told


@contextlib.asynccontextmanager
async def _replica_b(
    store: RoomStore, lease_ms: int, *, eager_for: float
) -> AsyncIterator[RoomLoop]:
    """Replica "b"'s loop, ticking every 20 ms with no work, until the block ends."""

    async def idle(_room: str, _fence: int) -> None:
        pass

    loop = RoomLoop(store, role="admission", holder="b", tick_ms=20, lease_ms=lease_ms, work=idle)
    loop.eager_for = eager_for
    stop = asyncio.Event()
    running = asyncio.create_task(loop.run(stop))
    try:
        yield loop
    finally:
        stop.set()
        await running


async def _holds(loop: RoomLoop) -> bool:
    return ROOM in loop.held


async def _lease_asks(redis: Redis) -> int:
    """Script calls but the liveness marks (the loop's only other calls: the room list is
    a plain read; a mark calls ZADD once, lease.lua never)."""
    stats = await redis.info("commandstats")
    calls = {
        name: int(stats.get(f"cmdstat_{name}", {"calls": 0})["calls"])
        for name in ("evalsha", "zadd")
    }
    return calls["evalsha"] - calls["zadd"]
