"""The keys outside any room's slot: the index of rooms and the worker replicas' marks.

These are plain sets written after a room's own script, so a room may briefly exist
before it is listed; the workers' room lists are refreshed every tick and catch up.
"""

from __future__ import annotations

from typing import NamedTuple

from redis.asyncio import Redis

from shared import keys
from shared.scripts import LuaScript
from shared.store.calls import mapped, store_call
from shared.store.lane import ScriptLane, bulk


class RoomIndex:
    """The live rooms, and the deleted rooms whose outbox the relay still has to deliver.
    The lists are read through the store's lane when it has one (every worker loop reads
    them four times a second)."""

    def __init__(self, redis: Redis, lane: ScriptLane | None = None) -> None:
        self.redis = redis
        self.lane = lane

    async def rooms(self) -> list[str]:
        return await self._members(keys.ROOMS_SET)

    async def draining(self) -> list[str]:
        return await self._members(keys.DRAINING_SET)

    @store_call
    async def _members(self, key: str) -> list[str]:
        if self.lane is None:
            members: set[str] = await self.redis.smembers(key)  # type: ignore[assignment]
            return sorted(members)
        listed: list[str] = await self.lane.command("SMEMBERS", key)
        return sorted(listed)

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
    A replica marks itself on every tick (replica_mark.lua, through the store's lane when
    it has one: a worker ticks several loops 20 times a second); ``waitroom probe`` reads
    the mark."""

    def __init__(
        self, redis: Redis, role: str, mark: LuaScript, lane: ScriptLane | None = None
    ) -> None:
        self.redis = redis
        self.role = role
        self.mark = mark
        self.lane = lane
        role_keys = keys.RoleKeys(role)
        self.key = role_keys.replicas
        self.releases_key = role_keys.releases
        self._keys = role_keys.all()
        self._packed_keys = b"".join(map(bulk, self._keys))

    @store_call
    async def server_ms(self) -> int:
        """The data store's clock: every replica's marks are judged by this one clock, so
        skew between pods neither expires a live replica nor keeps a dead one."""
        seconds, micros = await self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    async def mark_alive(self, holder: str, lease_ms: int) -> Liveness:
        """Mark ``holder`` alive for ``lease_ms`` by the store's clock, drop marks run out,
        and answer how many replicas are alive (this one included) and the count of leases
        given up early: one script call."""
        with mapped(self.mark):
            if self.lane is None:
                alive, releases = await self.mark(keys=self._keys, args=[holder, lease_ms])
            else:
                alive, releases = await self.lane.run(
                    self.mark.script, self._packed_keys, len(self._keys), (holder, lease_ms)
                )
        return Liveness(max(1, int(alive)), int(releases))

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
