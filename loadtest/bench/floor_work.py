"""The floor of the worker-side parts, run as a process of its own that reports the CPU it
spent on the work (read from /proc/self/stat around the work, so its start-up is left out)
as one line of JSON:

- ``admit``: one minimal Lua call per batch of ``--batch``: pop the head of the line, mark
  each person admitted (person, claim deadline), append one event each; until the line
  is empty.
- ``relay``: for each room at once, read ``--batch`` outbox entries (one Lua call
  answering them as two joined strings, as the relay does), publish them to JetStream
  (shared/js_publish.py: all sent, then every ack awaited), delete them; until the
  outboxes are empty.
- ``read``: read the whole stream with the raw pull consumer replay uses
  (shared/stream_reads.py read_events), nothing applied (what replay cannot do with
  less).

python -m loadtest.bench.floor_work admit|relay|read [options]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import sys
import time

import msgspec
import nats
from redis.asyncio import Redis

from loadtest.bench.cpu import cpu_seconds
from loadtest.bench.floor_app import JOIN_LUA, STREAM, room_keys
from shared.js_publish import Ack, BatchPublisher
from shared.stream_reads import Chunk, read_events

ADMIT_LUA = """
local popped = redis.call('ZPOPMIN', KEYS[3], ARGV[1])
local n = 0
for i = 1, #popped, 2 do
  local id = popped[i]
  redis.call('ZREM', KEYS[4], id)
  redis.call('HSET', KEYS[2], id, cjson.encode({ state = 'admitted', deadline = ARGV[2] }))
  redis.call('ZADD', KEYS[5], ARGV[2], id)
  redis.call('XADD', KEYS[6], '*', 'e', cjson.encode({ type = 'admitted', position_id = id,
                                                       arrival = popped[i + 1] }))
  n = n + 1
end
redis.call('HINCRBY', KEYS[1], 'used_units', n)
return n
"""


def admit_keys(room: str) -> list[str]:
    return [*room_keys(room), f"floor:{{{room}}}:admitted", f"floor:{{{room}}}:outbox"]


async def fill_line(redis: Redis, room: str, count: int, chunk: int = 2000) -> None:
    """``count`` people in the floor's line of ``room`` (the floor's join script)."""
    join = redis.register_script(JOIN_LUA)
    now = int(time.time() * 1000)
    for at in range(0, count, chunk):
        async with redis.pipeline(transaction=False) as pipe:
            for _ in range(min(chunk, count - at)):
                person = b'{"state":"waiting","size":1}'
                await join(
                    keys=room_keys(room), args=[secrets.token_urlsafe(12), person, now], client=pipe
                )
            await pipe.execute()


async def admit(args: argparse.Namespace) -> int:
    redis = Redis.from_url(args.redis_url)
    script = redis.register_script(ADMIT_LUA)
    done = 0
    try:
        while True:
            deadline = int(time.time() * 1000) + 60_000
            n = int(await script(keys=admit_keys(args.room), args=[args.batch, deadline]))
            if n == 0:
                return done
            done += n
    finally:
        await redis.aclose()


class _Head(msgspec.Struct):
    type: str
    id: str


READ_OUTBOX_LUA = """
local entries = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', tonumber(ARGV[1]))
local ids, events = {}, {}
for i, entry in ipairs(entries) do
  ids[i] = entry[1]
  events[i] = entry[2][2]
end
return { table.concat(ids, '\\n'), table.concat(events, '\\n') }
"""


async def relay(args: argparse.Namespace) -> int:
    redis = Redis.from_url(args.redis_url, decode_responses=True)
    read_outbox = redis.register_script(READ_OUTBOX_LUA)
    nc = await nats.connect(args.nats_url)
    js = nc.jetstream()
    publisher = await BatchPublisher(nc).start()
    head = msgspec.json.Decoder(_Head)
    with contextlib.suppress(Exception):  # there already
        await js.add_stream(name=STREAM, subjects=["floor.>"])

    async def one(room: str, outbox: str) -> int:
        delivered = 0
        while True:
            ids, events = await read_outbox(keys=[outbox], args=[args.batch])
            if not ids:
                return delivered
            entries = list(zip(ids.split("\n"), events.split("\n"), strict=True))
            messages = []
            for _entry_id, raw in entries:
                event = head.decode(raw)
                subject = f"floor.relay.{room}.{event.type}"
                messages.append((subject, raw.encode(), {"Nats-Msg-Id": event.id}))
            acks = await publisher.publish(messages, 5.0)
            if not all(isinstance(ack, Ack) for ack in acks):
                raise RuntimeError(f"floor relay: a publish failed: {acks}")
            await redis.xdel(outbox, *[entry_id for entry_id, _ in entries])
            delivered += len(entries)

    try:
        pairs = [pair.split("=", 1) for pair in args.outboxes.split(",")]
        counts = await asyncio.gather(*(one(room, outbox) for room, outbox in pairs))
        return sum(counts)
    finally:
        await nc.close()
        await redis.aclose()


async def read(args: argparse.Namespace) -> int:
    nc = await nats.connect(args.nats_url)
    js = nc.jetstream()
    seen = 0

    async def count(chunk: Chunk) -> None:
        nonlocal seen
        seen += len(chunk)

    try:
        info = await js.stream_info(args.stream, subjects_filter=args.subject)
        if sum((info.state.subjects or {}).values()):
            last = await js.get_last_msg(args.stream, args.subject)
            await read_events(js, args.stream, args.subject, 1, int(last.seq or 0), count)
        return seen
    finally:
        await nc.close()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["admit", "relay", "read"])
    parser.add_argument("--redis-url", default="")
    parser.add_argument("--nats-url", default="")
    parser.add_argument("--room", default="")
    parser.add_argument("--outboxes", default="", help="room=outbox-key,... (relay)")
    parser.add_argument("--stream", default="WAITROOM")
    parser.add_argument("--subject", default="waitroom.>")
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args(argv)
    work = {"admit": admit, "relay": relay, "read": read}[args.mode]

    async def measured() -> dict[str, float]:
        before, started = cpu_seconds(os.getpid()), time.perf_counter()
        done = await work(args)
        return {
            "done": done,
            "cpu": cpu_seconds(os.getpid()) - before,
            "seconds": time.perf_counter() - started,
        }

    sys.stdout.write(json.dumps(asyncio.run(measured())) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
