"""One room at scale: store memory per waiting person at 100k and 1M people, status p99 at
1M people against 1k, and whether the admission and expiry ticks stay O(admitted) /
O(expired) rather than O(line): the server's time per tick at 1M waiting against 1k.

The line is filled with the real join script, 2,000 calls per pipeline (internals.
bulk_enqueue: what joining over HTTP leaves in the store, without HTTP and tokens). The
outbox the joins fill is emptied before memory is read (the relay would have delivered
it), and the workers are stopped: the ticks are run by hand, as the worker makes them,
and each is measured as the CPU time valkey's main thread spent on it (nanoseconds, from
/proc/<pid>/schedstat; the median of five), with the wall time around the call beside.
The expiry tick's growth is shown beside that of its floor: one bare script doing only
the commands ending a silent person needs, on the same keys (internals.floor_expiry_tick):
sorted sets of a million entries cost more per ZREM than of a thousand (a deeper skip
list, colder memory), and what grows in the floor too is not the tick's own doing.
For status, 200 people join each line over HTTP, then a fresh gateway loads each line
once (at the store's event counter, so no relay is needed) and answers from its copy
(WAITROOM_LINES_IN_MEMORY); the store's script time per status and the gateway's memory
holding the lines are shown beside. The gateway is stopped while the ticks are timed."""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from loadtest.bench import internals
from loadtest.bench.context import TARGET, Bench
from loadtest.bench.cpu import CpuWindow, main_thread_cpu_ns, rss_kib
from loadtest.bench.crowd import join_many
from loadtest.bench.results import Row
from loadtest.bench.wrk import run_wrk
from shared.store import RoomStore

SMALL, BIG = "scale-small", "scale-big"
STATUS_RATE = 200.0
TICKS = 5
BATCH = 100
LOADED_SECONDS = 6.0


Tick = Callable[[RoomStore, str, int, int], Awaitable[int]]


async def _median_tick(
    b: Bench, room: str, tick: Tick, store: RoomStore, fence: int
) -> tuple[float, float]:
    """Medians over TICKS ticks of BATCH people each, in microseconds: the CPU valkey's
    main thread spent (it runs every script), and the wall time around the call."""
    assert b.stack.valkey is not None
    valkey = b.stack.valkey.process_id
    cpu, wall = [], []
    # not counted: the release bucket starts with one token (the first tick admits one and
    # leaves it empty), and fills with time: a first timed tick in the same millisecond
    # found it empty and admitted nobody
    await tick(store, room, fence, BATCH)
    await asyncio.sleep(0.01)
    for _ in range(TICKS):
        cpu_before, started = main_thread_cpu_ns(valkey), time.perf_counter()
        done = await tick(store, room, fence, BATCH)
        wall.append(time.perf_counter() - started)
        cpu.append((main_thread_cpu_ns(valkey) - cpu_before) / 1000)
        if done < BATCH:
            b.run.notes.append(f"scale: {tick.__name__} in {room} did {done} of {BATCH}")
    return statistics.median(cpu), statistics.median(wall) * 1e6


async def run(b: Bench, parts: set[str]) -> None:
    stack = b.stack
    assert stack.valkey is not None
    if stack.gateway is None:
        stack.start_gateway()
    assert stack.gateway is not None
    stack.stop_workers()
    small, middle, big = b.sizes.scale
    for room in (SMALL, BIG):
        await b.put_room(
            room,
            target_url=TARGET,
            status="paused",
            max_active=1_000_000,
            max_party_size=1,
            release_rate=1_000_000,
            max_positions_per_ip=0,
            heartbeat_timeout=3600,
            claim_window=3600,
        )
    async with internals.open_store(stack.valkey.url) as store:
        redis = store.redis
        await internals.bulk_enqueue(store, SMALL, small)
        await internals.empty_outbox(store, SMALL)
        base = await internals.used_memory(redis)
        per_person: dict[int, tuple[float, float]] = {}
        filled = 0
        loop = asyncio.get_running_loop()
        started = loop.time()
        for target in (middle, big):
            b.say(f"scale: filling one room's line to {target:,} people")

            def shown(done: int, at: int = filled) -> None:
                if (at + done) % 100_000 == 0:
                    b.say(f"scale: {at + done:,} in line")

            await internals.bulk_enqueue(store, BIG, target - filled, progress=shown)
            filled = target
            await internals.empty_outbox(store, BIG)
            if any(await internals.outbox_lengths(store, [BIG])):
                raise RuntimeError("the outbox of the scale room did not empty")
            keys_bytes = sum((await internals.room_key_bytes(store, BIG)).values())
            used = await internals.used_memory(redis) - base
            per_person[target] = (keys_bytes / target, used / target)
        fill_rate = (big - middle + middle) / (loop.time() - started)

        b.say("scale: status p99 at the back of each line")
        # a fresh gateway loads each line once, after the joins, so its copies match the
        # store's event counter; no worker runs (a relay would snapshot the 1M line)
        with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
            p99: dict[str, float] = {}
            server_us: dict[str, float] = {}
            gateway_us: dict[str, float] = {}
            gateway_mib: dict[str, float] = {}
            paths: dict[str, Path] = {}
            async with b.gateway_client() as c:
                for room in (SMALL, BIG):
                    tokens = await join_many(c, f"/v1/rooms/{room}/enqueue", 200, concurrency=8)
                    paths[room] = Path(tmp) / room
                    paths[room].write_text("\n".join(tokens) + "\n")
            gateway = stack.start_gateway()  # status makes no events: the copies stay current
            for room in (SMALL, BIG):  # both lines loaded and the gateway warm first
                url = f"{gateway.url}/v1/rooms/{room}/status"
                await asyncio.to_thread(run_wrk, url, tokens=paths[room], seconds=2, rate=20)
            await asyncio.sleep(LOADED_SECONDS)
            for room in (SMALL, BIG):
                url = f"{gateway.url}/v1/rooms/{room}/status"
                await asyncio.to_thread(run_wrk, url, tokens=paths[room], seconds=2, rate=100)
                await internals.reset_server_stats(redis)
                window = CpuWindow({"app": gateway.process_id}).start()
                result = await asyncio.to_thread(
                    run_wrk, url, tokens=paths[room], seconds=b.sizes.seconds, rate=STATUS_RATE
                )
                gateway_us[room] = window.stop()["app"] / max(1, result.ok) * 1e6
                p99[room] = result.p99_ms
                _calls, usec = await internals.script_server_usec(redis)
                server_us[room] = usec / max(1, result.ok)
                gateway_mib[room] = rss_kib(gateway.process_id) / 1024
        b.say(f"scale: admission and expiry ticks, {BATCH} people each, at {small:,} and {big:,}")
        admit_us: dict[str, tuple[float, float]] = {}
        expire_us: dict[str, tuple[float, float]] = {}
        floor_us: dict[str, tuple[float, float]] = {}
        for room in (SMALL, BIG):
            await b.put_room(room, status="active", heartbeat_interval=1, heartbeat_timeout=2)
        stack.stop_gateway()  # nothing but the ticks on valkey while they are timed
        await asyncio.sleep(2.5)  # everyone waiting is now past heartbeat_timeout
        for room in (SMALL, BIG):
            fence = await internals.take_lease(store, room, "admission")
            admit_us[room] = await _median_tick(b, room, internals.admission_tick, store, fence)
            fence = await internals.take_lease(store, room, "heartbeat")
            expire_us[room] = await _median_tick(b, room, internals.expiry_tick, store, fence)
        # the small line is used up by now: as many join again as the floor ticks end
        await internals.bulk_enqueue(store, SMALL, (TICKS + 1) * BATCH)
        await asyncio.sleep(2.5)
        for room in (SMALL, BIG):
            floor_us[room] = await _median_tick(b, room, internals.floor_expiry_tick, store, 0)
        for room in (SMALL, BIG):
            await internals.empty_outbox(store, room)
    from loadtest.bench.context import ADMIN

    stack.start_gateway()
    async with b.gateway_client() as c:
        for room in (SMALL, BIG):
            await c.delete(f"/v1/admin/rooms/{room}", headers=ADMIN)
    async with internals.open_store(stack.valkey.url) as store:
        for room in (SMALL, BIG):
            await internals.empty_outbox(store, room)

    b.run.add(
        Row(
            part="scale",
            name=f"store memory per person, {big:,} waiting",
            unit="bytes/person",
            value=per_person[big][0],
            floor=per_person[middle][0],
            rate=fill_rate,
            extra={
                f"used_memory delta/person at {big:,}": per_person[big][1],
                f"used_memory delta/person at {middle:,}": per_person[middle][1],
            },
        )
    )
    b.run.add(
        Row(
            part="scale",
            name=f"status p99 at {big:,} vs {small:,} waiting",
            unit="ms",
            value=p99[BIG],
            floor=p99[SMALL],
            extra={
                f"gateway us/status at {big:,}": gateway_us[BIG],
                f"gateway us/status at {small:,}": gateway_us[SMALL],
                f"store script us/status at {big:,}": server_us[BIG],
                f"store script us/status at {small:,}": server_us[SMALL],
                f"gateway RSS MiB at {big:,}": gateway_mib[BIG],
                f"gateway RSS MiB at {small:,}": gateway_mib[SMALL],
            },
        )
    )
    b.run.add(
        Row(
            part="scale",
            name=f"admission tick at {big:,} vs {small:,}",
            unit=f"valkey us/tick of {BATCH}",
            value=admit_us[BIG][0],
            floor=admit_us[SMALL][0],
            extra={
                f"wall us at {big:,}": admit_us[BIG][1],
                f"wall us at {small:,}": admit_us[SMALL][1],
            },
        )
    )
    b.run.add(
        Row(
            part="scale",
            name=f"expiry tick at {big:,} vs {small:,}",
            unit=f"valkey us/tick of {BATCH}",
            value=expire_us[BIG][0],
            floor=expire_us[SMALL][0],
            extra={
                f"wall us at {big:,}": expire_us[BIG][1],
                f"wall us at {small:,}": expire_us[SMALL][1],
                f"floor tick us at {big:,}": floor_us[BIG][0],
                f"floor tick us at {small:,}": floor_us[SMALL][0],
                f"floor tick at {big:,} vs {small:,}": floor_us[BIG][0] / floor_us[SMALL][0],
            },
        )
    )
    b.run.floors["scale"] = (
        f"the same room at {middle:,} people (memory: MEMORY USAGE of the room's keys but "
        f"the outbox; the fill rate is the peak/s column) or at {small:,} (status p99 from "
        f"wrk at {STATUS_RATE:.0f}/s; ticks: median CPU of valkey's main thread per tick); "
        "about 1.0 means the cost does not grow with the line"
    )
