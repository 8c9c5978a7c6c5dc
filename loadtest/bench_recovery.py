"""How fast `waitroom recover` replays the event stream, on this machine.

Starts its own valkey-server and nats-server (from the wheels) in a temporary folder,
makes a history of at least --events events over --rooms rooms (people joining, being
admitted, claiming, completing, leaving), publishes it to JetStream, then:

  baseline   reads the whole stream (fetch only, nothing applied)
  recover    rebuilds every room from the stream into an emptied data store

and prints both rates and their ratio, then checks that every room's digest after the
replay equals the digest before.

python -m loadtest.bench_recovery [--events 120000] [--rooms 20]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from rich.progress import Progress

from shared.events import subject
from shared.logs import configure
from shared.nats_link import ensure_stream
from shared.recovery import recover
from shared.redis_conn import connect
from shared.room import RoomUpdate
from shared.store import RoomStore
from waitroom.processes import Supervisor, start_backends

STREAM = "WAITROOM"


async def make_history(store: RoomStore, rooms: list[str], events: int, bar: Progress) -> int:
    """Drive real scripts until the outboxes hold ``events`` events; returns how many."""
    rng = random.Random(5)
    for room in rooms:
        await store.put_room(
            room,
            RoomUpdate(
                target_url="http://127.0.0.1:9/t",
                max_active=1_000_000,
                release_rate=1_000_000.0,
                max_positions_per_ip=0,
            ),
        )
    task = bar.add_task("making history", total=events)
    made = len(rooms)
    fences = await store.lease_acquire_many(rooms, "admission", "bench", 600_000)
    fence = dict(zip(rooms, fences, strict=True))
    while made < events:
        room = rng.choice(rooms)
        joined = await asyncio.gather(*(store.enqueue(room) for _ in range(200)))
        admitted = await store.admit(room, "bench", fence[room], 600_000, max_batch=150)
        made += len(joined) + len(admitted.position_ids)
        for position_id in admitted.position_ids:
            roll = rng.random()
            if roll < 0.5:
                await store.claim(room, position_id)
                await store.complete(room, position_id)
                made += 2
            elif roll < 0.7:
                await store.leave(room, position_id)
                made += 1
        bar.update(task, completed=made)
    return made


async def publish_outboxes(store: RoomStore, nats_url: str, rooms: list[str], bar: Progress) -> int:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_stream(js, STREAM, 7200)
    total = 0
    task = bar.add_task("publishing", total=None)
    for room in rooms:
        entries = await store.outbox_batch(room, await store.outbox_length(room))
        futures = []
        for _entry_id, raw in entries:
            etype = raw.split('"type":"', 1)[1].split('"', 1)[0]
            futures.append(await js.publish_async(subject(room, etype), raw.encode()))
        await asyncio.gather(*futures)
        await store.outbox_delivered(room, [entry_id for entry_id, _raw in entries])
        total += len(entries)
        bar.update(task, completed=total)
    await nc.close()
    return total


async def read_stream(nats_url: str) -> tuple[int, float]:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    info = await js.stream_info(STREAM)
    started = time.perf_counter()
    sub = await js.pull_subscribe(
        "waitroom.>",
        stream=STREAM,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE),
    )
    seen = 0
    while seen < info.state.messages:
        seen += len(await sub.fetch(1000, timeout=10))
    elapsed = time.perf_counter() - started
    await nc.close()
    return seen, elapsed


async def bench(events: int, room_count: int, folder: Path) -> None:
    sup = Supervisor()
    try:
        redis_url, nats_url = start_backends(sup, folder)
        redis = connect(redis_url)
        store = RoomStore(redis)
        rooms = [f"bench-{i}" for i in range(room_count)]
        with Progress(transient=True) as bar:
            await make_history(store, rooms, events, bar)
            published = await publish_outboxes(store, nats_url, rooms, bar)
        before = {room: await store.digest(room) for room in rooms}
        read, read_s = await read_stream(nats_url)
        await redis.flushall()
        summary = await recover(store, nats_url, stream=STREAM)
        after = {room: await store.digest(room) for room in rooms}
        await redis.aclose()
    finally:
        sup.stop()
    base_rate = read / read_s
    sys.stdout.write(f"events in the stream: {published:,} over {room_count} rooms\n")
    sys.stdout.write(f"{'measurement':38} {'events/s':>12} {'x baseline':>11}\n")
    sys.stdout.write(f"{'read the stream only (baseline)':38} {base_rate:12,.0f} {1.0:11.3f}\n")
    sys.stdout.write(
        f"{'recover: read + replay into store':38} {summary.rate:12,.0f} "
        f"{summary.rate / base_rate:11.3f}\n"
    )
    same = "yes" if before == after else "NO"
    sys.stdout.write(f"every room's digest equal after replay: {same}\n")
    if before != after:
        raise SystemExit(1)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=120_000)
    parser.add_argument("--rooms", type=int, default=20)
    args = parser.parse_args(argv)
    configure(json=False, level="warning")
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(bench(args.events, args.rooms, Path(tmp)))


if __name__ == "__main__":
    main(sys.argv[1:])
