"""How fast `waitroom recover` replays the event stream, on this machine.

Starts its own valkey-server and nats-server (from the wheels) in a temporary folder,
makes a history of at least --events events over --rooms rooms (people joining, being
admitted, claiming, completing, leaving), then:

  relay      the real outbox relay publishes every outbox to JetStream (pipelined
             batches, acks awaited in order, fenced trims; all rooms at once, as a
             worker's tick does); then a snapshot of each room and a tail of a fiftieth
             more events
  awaited    publishing one event at a time, each ack awaited (the relay before)
  baseline   reads the whole stream (recover's reader, nothing applied)
  recover    rebuilds every room from the whole stream into an emptied data store
  snapshot   rebuilds every room from its snapshot plus the events after it

and prints each rate and its ratio to the baseline, then checks that every room's digest
after each rebuild equals the digest before.

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
from nats.js.api import StreamConfig
from rich.progress import Progress

from shared.logs import configure
from shared.nats_link import NatsLink
from shared.recovery import recover
from shared.redis_conn import connect
from shared.relay import OutboxRelay, SnapshotPolicy
from shared.room import RoomUpdate
from shared.store import RoomStore
from shared.stream_reads import Chunk, read_events
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


async def open_link(nats_url: str) -> NatsLink:
    link = NatsLink(nats_url, stream=STREAM, duplicate_window=7200, name="bench")
    link.start()
    while await link.jetstream() is None:  # noqa: ASYNC110 (the link connects in the background)
        await asyncio.sleep(0.05)
    return link


async def publish_outboxes(
    store: RoomStore, link: NatsLink, rooms: list[str], snapshots: SnapshotPolicy
) -> tuple[int, float]:
    """Every outbox through the real relay, all rooms at once as a worker's tick does;
    answers (events delivered, seconds)."""
    relay = OutboxRelay(store, link, holder="bench", lease_ms=600_000, snapshots=snapshots)
    fences = await store.lease_acquire_many(rooms, "relay", "bench", 600_000)
    before = [await store.outbox_length(room) for room in rooms]
    started = time.perf_counter()
    await asyncio.gather(
        *(relay.drain_all(room, fence) for room, fence in zip(rooms, fences, strict=True))
    )
    elapsed = time.perf_counter() - started
    for room, fence in zip(rooms, fences, strict=True):
        await relay.drain(room, fence)  # a snapshot taken is published once its seq is out
    return sum(before), elapsed


async def one_at_a_time(nats_url: str, count: int) -> float:
    """Events/s publishing as the relay used to: each publish awaited before the next."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="SCRATCH", subjects=["scratch.>"]))
    payload = b'{"type":"enqueued","id":"scratch","seq":1}'
    started = time.perf_counter()
    for i in range(count):
        await js.publish("scratch.x", payload, headers={"Nats-Msg-Id": f"s{i}"})
    elapsed = time.perf_counter() - started
    await js.delete_stream("SCRATCH")
    await nc.close()
    return count / elapsed


async def read_stream(nats_url: str) -> tuple[int, float]:
    """Read every event of the stream (not the snapshots) and nothing else, with
    the reader `waitroom recover` uses (shared/stream_reads.py read_events)."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    started = time.perf_counter()
    seen = 0

    async def count(chunk: Chunk) -> None:
        nonlocal seen
        seen += len(chunk)

    last = await js.get_last_msg(STREAM, "waitroom.>")
    await read_events(js, STREAM, "waitroom.>", 1, int(last.seq or 0), count)
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
        link = await open_link(nats_url)
        with Progress(transient=True) as bar:
            await make_history(store, rooms, events, bar)
        published, relay_s = await publish_outboxes(store, link, rooms, SnapshotPolicy(10**9))
        awaited_rate = await one_at_a_time(nats_url, min(5000, events // 10))
        # a snapshot of every room now, then a tail of a fiftieth more events after it
        await publish_outboxes(store, link, rooms, SnapshotPolicy(every_events=1))
        with Progress(transient=True) as bar:
            await make_history(store, rooms, events // 50, bar)
        tail, _tail_s = await publish_outboxes(store, link, rooms, SnapshotPolicy(10**9))
        published += tail
        await link.close()
        before = {room: await store.digest(room) for room in rooms}
        read, read_s = await read_stream(nats_url)
        await redis.flushall()
        whole = await recover(store, nats_url, stream=STREAM, use_snapshots=False)
        after_whole = {room: await store.digest(room) for room in rooms}
        await redis.flushall()
        snap = await recover(store, nats_url, stream=STREAM)
        after_snap = {room: await store.digest(room) for room in rooms}
        await redis.aclose()
    finally:
        sup.stop()
    base_rate = read / read_s
    relay_rate = published / relay_s
    snap_rate = published / snap.seconds
    rows = [
        ("read the stream only (baseline)", base_rate),
        ("relay: pipelined publish + trim", relay_rate),
        ("publish, each awaited (the old relay)", awaited_rate),
        ("recover: read + replay into store", whole.rate),
        ("recover from snapshots (+ tail)", snap_rate),
    ]
    sys.stdout.write(f"events in the stream: {published:,} over {room_count} rooms\n")
    sys.stdout.write(f"{'measurement':38} {'events/s':>12} {'x baseline':>11}\n")
    for name, rate in rows:
        sys.stdout.write(f"{name:38} {rate:12,.0f} {rate / base_rate:11.3f}\n")
    sys.stdout.write(
        f"snapshot recovery read {snap.events:,} events of the tail in {snap.seconds:.2f}s "
        "(its rate above counts every event it stands for)\n"
    )
    same = before == after_whole == after_snap
    sys.stdout.write(f"every room's digest equal after both rebuilds: {'yes' if same else 'NO'}\n")
    if not same:
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
