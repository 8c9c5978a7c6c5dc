"""What the room policies cost the data store, on this machine.

Starts its own valkey-server in a temporary folder and times admission ticks (one admit.lua
call each, as the admission worker makes them) against the length of the line, as the
server's own time per script call (INFO commandstats: no client or network in it):

  baseline        a tick on a room whose line is empty (the fixed cost of a tick)
  best_fit scan   a tick that reads the whole look-ahead window and admits nobody (the
                  head's lane is full, everyone behind wants it too): the most a tick reads
  fifo admits     a tick that lets 50 people in from the head

each with a line of 1,000 and of --people places. A tick stays the same whatever the
line's length: it reads at most LOOKAHEAD places (admit.lua). Then the one-off cost of
opening a pre-queue (placing it into the line in the order of its draw) per person, and
its longest script call, for 1,000 and for --people.

python -m loadtest.bench_policies [--people 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shared.logs import configure
from shared.redis_conn import connect
from shared.room import RoomUpdate
from shared.store import RoomStore
from waitroom.processes import Supervisor, start_backends

HOLDER = "bench"
LEASE_MS = 600_000
TICKS = 200


async def fill(store: RoomStore, room: str, people: int, lane: str = "") -> None:
    for start in range(0, people, 1000):
        batch = min(1000, people - start)
        await asyncio.gather(*(store.enqueue(room, lane=lane) for _ in range(batch)))


async def script_seconds(store: RoomStore, calls: Callable[[], Awaitable[object]]) -> float:
    """The server's time per script call (EVALSHA) while ``calls`` runs."""

    async def evalsha() -> tuple[int, int]:
        stats = (await store.redis.info("commandstats"))["cmdstat_evalsha"]
        return int(stats["calls"]), int(stats["usec"])

    calls_before, usec_before = await evalsha()
    await calls()
    calls_after, usec_after = await evalsha()
    return (usec_after - usec_before) / max(1, calls_after - calls_before) / 1e6


async def tick_seconds(store: RoomStore, room: str, fence: int, max_batch: int = 500) -> float:
    """The server's time for one admission tick, over TICKS ticks."""

    async def ticks() -> None:
        for _ in range(TICKS):
            await store.admit(room, HOLDER, fence, LEASE_MS, max_batch=max_batch)

    return await script_seconds(store, ticks)


async def room_with_line(store: RoomStore, name: str, **config: Any) -> int:
    update = RoomUpdate(target_url="http://127.0.0.1:9/t", max_positions_per_ip=0, **config)
    await store.put_room(name, update)
    await store.put_room(name, RoomUpdate(status="paused"))
    return (await store.lease_acquire_many([name], "admission", HOLDER, LEASE_MS))[0]


async def scan_tick(store: RoomStore, people: int) -> float:
    """best_fit, lanes: lane a full, the whole window wants lane a."""
    room = f"scan-{people}"
    fence = await room_with_line(
        store, room, max_active=100, lanes={"a": 1, "b": 50},
        admission_policy="best_fit", max_skips=1000, release_rate=1_000_000.0,
    )  # fmt: skip
    await store.enqueue(room, lane="a")  # takes lane a once the room opens
    await store.put_room(room, RoomUpdate(status="active"))
    await store.admit(room, HOLDER, fence, LEASE_MS)
    await fill(store, room, people, lane="a")
    return await tick_seconds(store, room, fence)


async def admitting_tick(store: RoomStore, people: int) -> float:
    """fifo, strict: 50 in from the head each tick (the line is long enough for every tick)."""
    room = f"fifo-{people}"
    fence = await room_with_line(store, room, max_active=10_000_000, release_rate=1_000_000.0)
    await fill(store, room, max(people, 50 * TICKS + 1000))
    await store.put_room(room, RoomUpdate(status="active"))
    seconds = await tick_seconds(store, room, fence, max_batch=50)
    assert (await store.figures(room)).stat("admitted_total") == 50 * TICKS
    return seconds


async def opening(store: RoomStore, people: int) -> tuple[float, float]:
    """The server's time per person placed, and the longest call of the opening as the
    client saw it (a call places OPENING_BATCH people, however long the pre-queue)."""
    room = f"open-{people}"
    fence = await room_with_line(store, room, opens_at=datetime.now(UTC) + timedelta(hours=1))
    await fill(store, room, people)
    await store.put_room(room, RoomUpdate(opens_at=None))
    calls: list[float] = []

    async def place_all() -> None:
        while True:
            started = time.perf_counter()
            left = await store.open_line(room, HOLDER, fence, LEASE_MS)
            calls.append(time.perf_counter() - started)
            if not left:
                return

    per_call = await script_seconds(store, place_all)
    return per_call * len(calls) / people, max(calls)


async def bench(people: int, folder: Path) -> None:
    sup = Supervisor()
    try:
        redis_url, _nats_url = start_backends(sup, folder)
        redis = connect(redis_url)
        store = RoomStore(redis)
        empty = f"empty-{people}"
        fence = await room_with_line(store, empty)
        await store.put_room(empty, RoomUpdate(status="active"))
        base = await tick_seconds(store, empty, fence)
        rows = [("tick, empty line (baseline)", base)]
        for size in (1000, people):
            rows.append((f"best_fit scan, {size:,} waiting", await scan_tick(store, size)))
        for size in (1000, people):
            rows.append((f"fifo, 50 admitted, {size:,} waiting", await admitting_tick(store, size)))
        openings = [(size, *(await opening(store, size))) for size in (1000, people)]
        await redis.aclose()
    finally:
        sup.stop()
    sys.stdout.write(f"{'admission tick':40} {'server us':>10} {'x baseline':>11}\n")
    for name, seconds in rows:
        sys.stdout.write(f"{name:40} {seconds * 1e6:10.0f} {seconds / base:11.2f}\n")
    sys.stdout.write(
        f"{'opening a pre-queue':40} {'us/person':>10} {'x baseline':>11} {'longest call':>13}\n"
    )
    for size, seconds, longest in openings:
        sys.stdout.write(
            f"{f'{size:,} people':40} {seconds * 1e6:10.1f} {seconds / base:11.3f} "
            f"{longest * 1e3:10.1f} ms\n"
        )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--people", type=int, default=100_000)
    args = parser.parse_args(argv)
    configure(json=False, level="warning")
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(bench(args.people, Path(tmp)))


if __name__ == "__main__":
    main(sys.argv[1:])
