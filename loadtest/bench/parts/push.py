"""The event stream's push: the CPU a gateway spends to tell N open streams that the line
moved, per stream told, against the floor app doing the least for it (one NATS message,
one pipeline of ranks, one SSE event per stream).

The line moves by the person at its front leaving (over HTTP: the relay publishes the
event, the gateway's feed hears it and refreshes everyone); the floor is nudged by a
message published straight to its subject. Moves are spaced so that each is pushed on
its own. The latency is the time until the last stream heard of the move. Also the cost
of holding the streams open with nothing happening (the gateway refreshes every stream
every 2 s and counts an open stream as a heartbeat)."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

import nats

from loadtest.bench.context import TARGET, Bench
from loadtest.bench.cpu import CpuWindow, threads_cpu_ns
from loadtest.bench.crowd import SseCrowd, events_path, join_many, until
from loadtest.bench.results import Row

ROOM = "push"
SPACING = 0.6
IDLE_SECONDS = 6.0


async def _pushes(
    b: Bench, crowd: SseCrowd, process_id: int, moves: int, move: Callable[[int], Awaitable[None]]
) -> tuple[float, int, list[float]]:
    """(CPU seconds, position events received, seconds until the last stream heard)."""
    times: list[float] = []
    window = CpuWindow({"server": process_id}).start()
    received_before = crowd.total("position")
    for i in range(moves):
        expect = crowd.total("position") + len(crowd.live())
        started = time.perf_counter()
        await move(i)
        await until(_reached(crowd, expect), 5, every=0.002)
        times.append(time.perf_counter() - started)
        await asyncio.sleep(max(0.0, SPACING - times[-1]))
    used = window.stop()["server"]
    return used, crowd.total("position") - received_before, times


def _reached(crowd: SseCrowd, expect: int) -> Callable[[], bool]:
    return lambda: crowd.total("position") >= expect


async def _idle(process_id: int, streams: int) -> float:
    """CPU microseconds per open stream per second, nothing happening. Counted per thread
    in nanoseconds: an idle floor uses a few milliseconds in the window, which clock ticks
    (10 ms) often round to nothing, and a ratio to nothing is no ratio."""
    before = threads_cpu_ns(process_id)
    await asyncio.sleep(IDLE_SECONDS)
    used_ns = threads_cpu_ns(process_id) - before
    return used_ns / 1000 / IDLE_SECONDS / max(1, streams)


async def run(b: Bench, parts: set[str]) -> None:
    stack = b.stack
    gateway = stack.gateway or stack.start_gateway()
    if not stack.workers:
        stack.start_workers(relay=True)
    floor = stack.start_floor()
    n, moves = b.sizes.push_streams, b.sizes.push_moves
    await b.put_room(
        ROOM, target_url=TARGET, status="paused", max_positions_per_ip=0, heartbeat_timeout=3600
    )
    b.say(f"push: {n} streams on the gateway, {moves} moves of the line")
    async with b.gateway_client() as c:
        leavers = await join_many(c, f"/v1/rooms/{ROOM}/enqueue", moves, concurrency=1)
        tokens = await join_many(c, f"/v1/rooms/{ROOM}/enqueue", n)
        crowd = SseCrowd("127.0.0.1", gateway.port)
        await crowd.open_in_batches(events_path(f"/v1/rooms/{ROOM}/events"), tokens)
        await until(lambda: crowd.total("position") >= n, 30)
        await asyncio.sleep(3)
        idle_real = await _idle(gateway.process_id, len(crowd.live()))

        async def leave(i: int) -> None:
            r = await c.post(
                f"/v1/rooms/{ROOM}/leave", headers={"Authorization": f"Bearer {leavers[i]}"}
            )
            r.raise_for_status()

        real_cpu, real_events, real_times = await _pushes(
            b, crowd, gateway.process_id, moves, leave
        )
        real_live = len(crowd.live())
        await crowd.close()

    b.say(f"push: {n} streams on the floor app")
    async with b.floor_client() as c:
        tokens = await join_many(c, f"/floor/{ROOM}/join", n)
    crowd = SseCrowd("127.0.0.1", floor.port)
    await crowd.open_in_batches(events_path(f"/floor/{ROOM}/events"), tokens)
    await asyncio.sleep(3)
    idle_floor = await _idle(floor.process_id, len(crowd.live()))
    assert stack.nats is not None
    nc = await nats.connect(stack.nats.url)
    try:

        async def nudge(_i: int) -> None:
            await nc.publish(f"floorpush.{ROOM}", b"{}")
            await nc.flush()

        floor_cpu, floor_events, floor_times = await _pushes(
            b, crowd, floor.process_id, moves, nudge
        )
    finally:
        await nc.close()
        await crowd.close()

    real_us = real_cpu / max(1, real_events) * 1e6
    floor_us = floor_cpu / max(1, floor_events) * 1e6
    b.run.add(
        Row(
            part="push",
            name=f"push one update to {n} streams",
            unit="us CPU/stream",
            value=real_us,
            floor=floor_us,
            rate=real_events / max(1e-9, sum(real_times)),
            p50_ms=statistics.median(real_times) * 1000,
            p99_ms=max(real_times) * 1000,
            extra={
                "updates heard": real_events,
                "expected": moves * n,
                "streams open at the end": real_live,
                "floor p50 ms": statistics.median(floor_times) * 1000,
            },
        )
    )
    b.run.add(
        Row(
            part="push",
            name=f"hold {n} streams open, idle",
            unit="us CPU/stream/s",
            value=idle_real,
            floor=idle_floor,
        )
    )
    b.run.floors["push"] = (
        "a Litestar SSE route; one NATS message -> one pipeline of ZRANKs -> one position "
        "event per stream (the gateway's moves come from a leave over HTTP and the relay); "
        "latency columns: time until the last stream heard (median and worst of the moves)"
    )
