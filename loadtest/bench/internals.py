"""The few places the benchmark reaches inside waitroom, all here: filling a line fast
with the real join script, emptying an outbox, the memory a room's keys take, one
admission or expiry tick run by hand, and the floor of an expiry tick. Everything else
goes through HTTP, the worker processes and the servers' own clients."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from redis.asyncio import Redis

from shared import keys
from shared.redis_conn import connect
from shared.store import RoomStore

HOLDER = "bench-ticks"
LEASE_MS = 60_000


@asynccontextmanager
async def open_store(redis_url: str) -> AsyncIterator[RoomStore]:
    redis = connect(redis_url, max_connections=8)
    try:
        yield RoomStore(redis)
    finally:
        await redis.aclose()


async def bulk_enqueue(
    store: RoomStore,
    room: str,
    count: int,
    *,
    chunk: int = 2000,
    progress: Callable[[int], None] | None = None,
) -> None:
    """``count`` people join ``room`` through the real enqueue.lua, ``chunk`` calls per
    pipeline (one round trip each): the line, the people, the counters and the outbox
    events are exactly what joining over HTTP leaves behind, without the HTTP and tokens."""
    room_keys = keys.RoomKeys(room).all()
    script = store.scripts.enqueue
    done = 0
    while done < count:
        n = min(chunk, count - done)
        async with store.redis.pipeline(transaction=False) as pipe:
            for _ in range(n):
                # ARGV: room, position_id, size, priority, ip_hash, metadata, bind,
                # restore_arrival, incarnation, pow_id, pow_difficulty, pow_expires_ms,
                # outbox_max (0: no bound), lane, invite_id, seed
                args: list[Any] = [room, secrets.token_urlsafe(12), 1, 0, "", "", "", 0, ""]
                extra = ["", 0, 0, 0, "", "", secrets.token_hex(8)]
                await script(keys=room_keys, args=[*args, *extra], client=pipe)
            answers = await pipe.execute(raise_on_error=False)
        failed = [a for a in answers if isinstance(a, Exception)]
        if failed:
            raise RuntimeError(f"bulk enqueue failed: {failed[0]!r}")
        done += n
        if progress is not None:
            progress(done)


async def empty_outbox(store: RoomStore, room: str) -> None:
    """Drop a room's undelivered events (the relay would deliver and trim them)."""
    # exact: an approximate XTRIM drops at most 10,000 entries a call
    await store.redis.xtrim(keys.RoomKeys(room).outbox, maxlen=0, approximate=False)


async def room_key_bytes(store: RoomStore, room: str) -> dict[str, int]:
    """MEMORY USAGE (every element counted) of each of the room's keys but the outbox."""
    out: dict[str, int] = {}
    named = zip(keys.ROOM_KEY_NAMES, keys.RoomKeys(room).all(), strict=False)
    for name, key in named:
        if name == "outbox":
            continue
        used = await store.redis.memory_usage(key, samples=0)
        out[name] = int(used or 0)
    return out


async def used_memory(redis: Redis) -> int:
    info = await redis.info("memory")
    return int(info["used_memory"])


async def reset_server_stats(redis: Redis) -> None:
    """Zero the server's per-command statistics (CONFIG RESETSTAT)."""
    await redis.config_resetstat()


async def script_server_usec(redis: Redis) -> tuple[int, int]:
    """(calls, microseconds) the server spent in script calls (EVALSHA) since the reset."""
    return await command_server_usec(redis, "evalsha")


async def command_server_usec(redis: Redis, command: str) -> tuple[int, int]:
    """(calls, microseconds) the server spent in ``command`` (INFO commandstats) since
    the reset."""
    stats = await redis.info("commandstats")
    entry = stats.get(f"cmdstat_{command}") or {}
    return int(entry.get("calls", 0)), int(entry.get("usec", 0))


async def take_lease(store: RoomStore, room: str, role: str) -> int:
    [fence] = await store.lease_acquire_many([room], role, HOLDER, LEASE_MS)
    if not fence:
        raise RuntimeError(f"could not take the {role} lease of {room}")
    return fence


async def admission_tick(store: RoomStore, room: str, fence: int, batch: int) -> int:
    """One admission tick as the worker runs it; how many it admitted."""
    result = await store.admit(room, HOLDER, fence, LEASE_MS, max_batch=batch)
    return len(result.position_ids)


async def expiry_tick(store: RoomStore, room: str, fence: int, batch: int) -> int:
    """One expiry tick as the heartbeat worker runs it (its four scripts); how many ended."""
    counts = await store.expire(room, HOLDER, fence, LEASE_MS, max_batch=batch)
    return counts["silent"] + counts["unclaimed"] + counts["sessions"]


FLOOR_EXPIRY_LUA = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, id in ipairs(due) do
  local raw = redis.call('HGET', KEYS[2], id)
  redis.call('ZREM', KEYS[3], id)
  redis.call('ZREM', KEYS[1], id)
  redis.call('HSET', KEYS[2], id, raw)
  redis.call('ZADD', KEYS[4], ARGV[3], id)
  redis.call('XADD', KEYS[5], '*', 'e', id)
end
return #due
"""


async def floor_expiry_tick(store: RoomStore, room: str, fence: int, batch: int) -> int:
    """The floor of an expiry tick on the same keys: the commands that cannot be left out
    of ending ``batch`` silent people (find the due, read and write each record, take it
    out of the line and the liveness set, into the ended set, one outbox entry), in one
    bare script; no decoding, no counters, no lease. How many it ended."""
    k = keys.RoomKeys(room)
    script = store.redis.register_script(FLOOR_EXPIRY_LUA)
    now_ms = int(time.time() * 1000)
    keys_ = [k.seen, k.people, k.line, k.ended, k.outbox]
    return int(await script(keys=keys_, args=[now_ms, batch, now_ms]))


async def release_lease(store: RoomStore, room: str, role: str, fence: int) -> None:
    await store.lease_release(room, role, HOLDER, fence)


async def outbox_lengths(store: RoomStore, rooms: list[str]) -> list[int]:
    return [await store.outbox_length(room) for room in rooms]


async def copy_outbox(store: RoomStore, room: str) -> str:
    """A copy of the room's outbox under a key of the floor's (same slot); its name."""
    copy = f"floor:{{{room}}}:outbox-copy"
    await store.redis.delete(copy)
    await store.redis.copy(keys.RoomKeys(room).outbox, copy)
    return copy
