"""Event streams held open: the memory one open stream costs a gateway process (its
resident memory with one stream open, then with N), against the floor app holding the
same streams, and whether one gateway process holds 10,000 of them and still tells every
one that the line moved. The fd limit is raised to the hard limit first (children inherit
it)."""

from __future__ import annotations

import asyncio

from loadtest.bench.context import TARGET, Bench
from loadtest.bench.cpu import rss_kib
from loadtest.bench.crowd import SseCrowd, events_path, join_many, until
from loadtest.bench.results import Row

ROOM = "streams"
SETTLE = 4.0


async def _hold(
    b: Bench, port: int, process_id: int, path: str, tokens: list[str], who: str
) -> tuple[SseCrowd, int, int, float]:
    """Open one stream, read RSS; open the rest, read RSS. (crowd, RSS 1, RSS n, seconds
    to open the rest)."""
    crowd = SseCrowd("127.0.0.1", port)
    crowd.open(events_path(path), tokens[:1])
    await asyncio.sleep(SETTLE)
    one = rss_kib(process_id)
    loop = asyncio.get_running_loop()
    started = loop.time()

    def shown(opened: int) -> None:
        if opened % 2000 < 500:
            b.say(f"streams: {opened:,} open on the {who}")

    await crowd.open_in_batches(events_path(path), tokens[1:], progress=shown)
    seconds = loop.time() - started
    await asyncio.sleep(SETTLE)
    return crowd, one, rss_kib(process_id), seconds


async def run(b: Bench, parts: set[str]) -> None:
    stack = b.stack
    gateway = stack.gateway or stack.start_gateway()
    if not stack.workers:
        stack.start_workers(relay=True)
    floor = stack.start_floor()
    n = b.sizes.streams
    await b.put_room(
        ROOM, target_url=TARGET, status="paused", max_positions_per_ip=0, heartbeat_timeout=3600
    )
    b.say(f"streams: {n:,} people join")
    async with b.gateway_client() as c:
        tokens = await join_many(c, f"/v1/rooms/{ROOM}/enqueue", n)
        crowd, one, loaded, seconds = await _hold(
            b, gateway.port, gateway.process_id, f"/v1/rooms/{ROOM}/events", tokens, "gateway"
        )
        await until(lambda: crowd.total("position") >= n, 60)
        held = sum(1 for s in crowd.streams if s.status == 200 and not s.closed)
        refused = sum(1 for s in crowd.streams if s.status != 200)
        first = crowd.streams[0]
        await c.post(f"/v1/rooms/{ROOM}/leave", headers={"Authorization": f"Bearer {first.token}"})
        rest = crowd.streams[1:]
        await until(lambda: all(s.counts["position"] >= 2 for s in rest), 60)
        told = sum(1 for s in rest if s.counts["position"] >= 2)
        await crowd.close()

    b.say(f"streams: {n:,} on the floor app")
    async with b.floor_client() as c:
        floor_tokens = await join_many(c, f"/floor/{ROOM}/join", n)
    floor_crowd, floor_one, floor_loaded, _ = await _hold(
        b, floor.port, floor.process_id, f"/floor/{ROOM}/events", floor_tokens, "floor app"
    )
    floor_held = sum(1 for s in floor_crowd.streams if s.status == 200 and not s.closed)
    await floor_crowd.close()

    per = (loaded - one) / max(1, n - 1)
    floor_per = (floor_loaded - floor_one) / max(1, n - 1)
    b.run.add(
        Row(
            part="streams",
            name=f"memory per open stream, {n:,} open",
            unit="KiB/stream",
            value=per,
            floor=floor_per,
            rate=(n - 1) / max(1e-9, seconds),
            extra={
                "streams held": held,
                "refused": refused,
                "told of the move": told,
                "gateway RSS MiB, 1 stream": one / 1024,
                f"gateway RSS MiB, {n:,} streams": loaded / 1024,
                "floor streams held": floor_held,
            },
        )
    )
    b.run.floors["streams"] = (
        "the floor app's Litestar SSE route holding the same number of streams (one queue "
        "each); peak/s: streams opened per second (in batches of 500)"
    )
    if held < n or told < n - 1:
        b.run.notes.append(
            f"streams: {held:,} of {n:,} held, {told:,} of {n - 1:,} told of the move"
        )
