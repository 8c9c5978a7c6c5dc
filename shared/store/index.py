"""The keys outside any room's slot: the index of rooms and the worker replicas' marks.

These are plain sets written after a room's own script, so a room may briefly exist
before it is listed; the workers' room lists are refreshed every tick and catch up.
"""

from __future__ import annotations

import time
from typing import NamedTuple

from redis.asyncio import Redis

from shared import keys
from shared.store.calls import store_call


class RoomIndex:
    """The live rooms, and the deleted rooms whose outbox the relay still has to deliver."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    @store_call
    async def rooms(self) -> list[str]:
        members: set[str] = await self.redis.smembers(keys.ROOMS_SET)  # type: ignore[assignment]
        return sorted(members)

    @store_call
    async def draining(self) -> list[str]:
        members: set[str] = await self.redis.smembers(keys.DRAINING_SET)  # type: ignore[assignment]
        return sorted(members)

    @store_call
    async def add(self, room: str) -> None:
        await self.redis.sadd(keys.ROOMS_SET, room)

    @store_call
    async def retire(self, room: str) -> None:
        """A deleted room: out of the index, into draining until its outbox is delivered."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.sadd(keys.DRAINING_SET, room)
            pipe.srem(keys.ROOMS_SET, room)
            await pipe.execute()

    @store_call
    async def drained(self, room: str) -> None:
        await self.redis.srem(keys.DRAINING_SET, room)

    @store_call
    async def restore(self, live: list[str], deleted: list[str]) -> None:
        """After a replay: the rooms the stream left alive are listed, the deleted are not."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for room in live:
                pipe.sadd(keys.ROOMS_SET, room)
            for room in deleted:
                pipe.srem(keys.ROOMS_SET, room)
            await pipe.execute()


class Liveness(NamedTuple):
    alive: int
    """The live replicas of the role, this one included."""
    releases: int
    """How many leases of the role were given up early so far (``ReplicaSet.released``)."""


class ReplicaSet:
    """The live replicas of one worker role: a sorted set scored by when each mark runs out.
    A replica marks itself on every tick; ``waitroom probe`` reads the mark."""

    def __init__(self, redis: Redis, role: str) -> None:
        self.redis = redis
        self.role = role
        self.key = keys.replicas_key(role)
        self.releases_key = keys.releases_key(role)
        self._clock: tuple[int, float] | None = None
        """The store's clock (ms) as last read, and this process's monotonic clock then."""

    @store_call
    async def server_ms(self) -> int:
        """The data store's clock: every replica's marks are judged by this one clock, so
        skew between pods neither expires a live replica nor keeps a dead one."""
        seconds, micros = await self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    @store_call
    async def mark_alive(self, holder: str, lease_ms: int) -> Liveness:
        """Mark ``holder`` alive for ``lease_ms`` by the store's clock, drop marks run out,
        and answer how many replicas are alive (this one included) and the count of leases
        given up early. One round trip: "now" is the store's clock as read with the last
        mark plus the time since by this process's clock, and the store's clock is read
        again with this one."""
        if self._clock is None:
            self._clock = (await self.server_ms(), time.monotonic())
        then_ms, then = self._clock
        now_ms = then_ms + int((time.monotonic() - then) * 1000)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.time()
            pipe.zadd(self.key, {holder: now_ms + lease_ms})
            pipe.zremrangebyscore(self.key, "-inf", now_ms)
            pipe.zcard(self.key)
            pipe.get(self.releases_key)
            (seconds, micros), _, _, alive, releases = await pipe.execute()
        self._clock = (int(seconds) * 1000 + int(micros) // 1000, time.monotonic())
        return Liveness(max(1, int(alive)), int(releases or 0))

    @store_call
    async def released(self) -> None:
        """Count a lease of the role given up before it ran out."""
        await self.redis.incr(self.releases_key)

    async def alive(self, holder: str) -> bool:
        """Whether ``holder``'s mark is still good by the store's clock."""
        until = await self.alive_until(holder)
        return until is not None and until >= await self.server_ms()

    @store_call
    async def leave(self, holder: str) -> None:
        await self.redis.zrem(self.key, holder)

    @store_call
    async def alive_until(self, holder: str) -> float | None:
        """When ``holder``'s mark runs out (ms since the epoch), None if it has none."""
        until: float | None = await self.redis.zscore(self.key, holder)
        return until
