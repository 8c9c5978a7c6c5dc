"""Typed calls into the room scripts. Every change is one script call: one round trip, one
atomic change. Nothing here reads, decides in Python and then writes."""

from __future__ import annotations

import secrets
from typing import Any

import msgspec
from redis.asyncio import Redis

from shared import keys
from shared.errors import InvalidRoomId, RoomNotFound, StoreUnavailable
from shared.room import FIELD_DEFAULTS, RoomConfig, RoomUpdate, checked_update, from_stored
from shared.scripts import LuaScript, Scripts
from shared.store.calls import mapped, store_call, store_error
from shared.store.index import ReplicaSet, RoomIndex
from shared.store.views import (
    AdmitResult,
    InviteRecord,
    LineSnapshot,
    PersonView,
    RoomFigures,
    admit_decoder,
    digest_of,
    figures_decoder,
    invite_decoder,
    line_snapshot_decoder,
    person_decoder,
    put_decoder,
)

Arg = str | int | float | bytes
ScriptCall = tuple[LuaScript, str, list[Arg]]
"""One script, the room it runs on, and its ARGV after the room id."""

_FIELDS_JSON = msgspec.json.encode(FIELD_DEFAULTS)


def check_room_id(room: str) -> None:
    if not keys.ROOM_ID_PATTERN.match(room):
        raise InvalidRoomId()


def new_position_id() -> str:
    return secrets.token_urlsafe(12)


OPENING_BATCH = 1000
"""People an opening places per script call (a few milliseconds of the data store's time)."""
OPENING_BATCHES = 50
"""Batches an admission tick places at most, before it lets another room's tick run."""


def new_seed() -> str:
    """Randomness for a script that draws (the pre-queue shuffle, the lottery): recorded
    on the stream where a replay needs it."""
    return secrets.token_hex(8)


class RoomStore:
    """The data-store side of waitroom: the only code that touches its keys. It is handed
    a client and never closes it. ``index`` holds the cross-room sets; ``replicas(role)``
    the worker replicas' liveness marks."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.scripts = Scripts.register(redis)
        self.index = RoomIndex(redis)

    def replicas(self, role: str) -> ReplicaSet:
        return ReplicaSet(self.redis, role)

    async def _run(self, script: LuaScript, room: str, *args: Arg) -> Any:
        with mapped(script):
            return await script(keys=keys.RoomKeys(room).all(), args=[room, *args])

    async def _run_many(self, calls: list[ScriptCall]) -> list[Any]:
        """Script calls in one pipeline, each its own atomic call; a failed call's place
        holds its error (as ``store_error`` maps it), for the caller to raise or skip."""
        if not calls:
            return []
        with mapped():
            async with self.redis.pipeline(transaction=False) as pipe:
                for script, room, args in calls:
                    await script(keys=keys.RoomKeys(room).all(), args=[room, *args], client=pipe)
                answers = await pipe.execute(raise_on_error=False)
        return [
            store_error(answer, script) if isinstance(answer, Exception) else answer
            for (script, _room, _args), answer in zip(calls, answers, strict=True)
        ]

    @staticmethod
    def _raise_first(answers: list[Any]) -> list[Any]:
        for answer in answers:
            if isinstance(answer, BaseException):
                raise answer
        return answers

    # people ---------------------------------------------------------------------------
    async def enqueue(
        self,
        room: str,
        *,
        position_id: str | None = None,
        size: int = 1,
        priority: int = 0,
        ip_hash: str = "",
        metadata: str = "",
        bind: str = "",
        restore_arrival: int = 0,
        incarnation: str = "",
        pow_id: str = "",
        pow_difficulty: int = 0,
        pow_expires_ms: int = 0,
        lane: str = "",
        invite_id: str = "",
    ) -> PersonView:
        """Join the line (or the pre-queue), or (``restore_arrival``) put back a place the
        store lost, in the room's ``incarnation`` the token names; ``pow_*`` is a checked
        proof of work;
        ``lane`` a lane of the room or ``any``; ``invite_id`` an invite whose signature the
        caller checked (it gives the priority and spends a use)."""
        position_id = position_id or new_position_id()
        raw = await self._run(
            self.scripts.enqueue,
            room,
            position_id,
            size,
            priority,
            ip_hash,
            metadata,
            bind,
            restore_arrival,
            incarnation,
            pow_id,
            pow_difficulty,
            pow_expires_ms,
            lane,
            invite_id,
            new_seed(),
        )
        return person_decoder.decode(raw)

    async def status(self, room: str, position_id: str, *, touch: bool = False) -> PersonView:
        raw = await self._run(self.scripts.status, room, position_id, 1 if touch else 0)
        return person_decoder.decode(raw)

    async def statuses(
        self, room: str, position_ids: list[str], *, touch: bool = False
    ) -> dict[str, PersonView]:
        """Many people's status in one pipeline (each its own script call); people the
        store does not know are left out."""
        answers = await self._run_many(
            [(self.scripts.status, room, [pid, 1 if touch else 0]) for pid in position_ids]
        )
        return {
            position_id: person_decoder.decode(answer)
            for position_id, answer in zip(position_ids, answers, strict=True)
            if not isinstance(answer, BaseException)
        }

    async def event_counters(self, rooms: list[str]) -> dict[str, int]:
        """Each room's event counter (the seq of its latest event), in one round trip."""
        if not rooms:
            return {}
        with mapped():
            async with self.redis.pipeline(transaction=False) as pipe:
                for room in rooms:
                    pipe.hget(keys.RoomKeys(room).stats, "event_seq")
                answers = await pipe.execute()
        return {room: int(answer or 0) for room, answer in zip(rooms, answers, strict=True)}

    async def line_snapshot(self, room: str) -> LineSnapshot:
        """The whole line, read in one consistent step (see line_snapshot.lua)."""
        return line_snapshot_decoder.decode(await self._run(self.scripts.line_snapshot, room))

    async def touch_seen(self, room: str, position_ids: list[str]) -> None:
        """Mark these places seen now, in one call (heartbeats gathered by a gateway)."""
        if position_ids:
            await self._run(self.scripts.touch_seen, room, *position_ids)

    async def leave(self, room: str, position_id: str) -> PersonView:
        return person_decoder.decode(await self._run(self.scripts.leave, room, position_id))

    async def claim(self, room: str, position_id: str, *, touch: bool = False) -> PersonView:
        mode = "touch" if touch else "claim"
        return person_decoder.decode(await self._run(self.scripts.claim, room, position_id, mode))

    async def complete(self, room: str, position_id: str) -> PersonView:
        return person_decoder.decode(await self._run(self.scripts.complete, room, position_id))

    # workers --------------------------------------------------------------------------
    async def admit(
        self, room: str, holder: str, fence: int, lease_ms: int, max_batch: int = 500
    ) -> AdmitResult:
        """One admission tick. A pre-queue due to open goes into the line first, in batches
        of ``OPENING_BATCH`` (each its own short script call), at most
        ``OPENING_BATCHES`` of them per tick; the tick admits once it is all placed."""
        admit = self.scripts.admit
        result = admit_decoder.decode(
            await self._run(admit, room, holder, fence, lease_ms, max_batch, new_seed())
        )
        if not result.opening:
            return result
        for _ in range(OPENING_BATCHES):
            if await self.open_line(room, holder, fence, lease_ms) == 0:
                return admit_decoder.decode(
                    await self._run(admit, room, holder, fence, lease_ms, max_batch, new_seed())
                )
        return result

    async def open_line(
        self, room: str, holder: str, fence: int, lease_ms: int, batch: int = 0
    ) -> int:
        """Place the next batch of a due pre-queue into the line; how many still wait."""
        batch = batch or OPENING_BATCH
        return int(await self._run(self.scripts.open_line, room, holder, fence, lease_ms, batch))

    async def expire(
        self,
        room: str,
        holder: str,
        fence: int,
        lease_ms: int,
        *,
        max_batch: int = 1000,
        retention_ms: int = 3_600_000,
    ) -> dict[str, int]:
        """Every expiry job of the heartbeat worker, each its own script, in one pipeline."""
        args: list[Arg] = [holder, fence, lease_ms, max_batch]
        answers = self._raise_first(
            await self._run_many(
                [
                    (self.scripts.expire_silent, room, args),
                    (self.scripts.expire_unclaimed, room, args),
                    (self.scripts.end_sessions, room, args),
                    (self.scripts.purge_ended, room, [*args, retention_ms]),
                ]
            )
        )
        silent, unclaimed, sessions, purged = (int(n) for n in answers)
        return {"silent": silent, "unclaimed": unclaimed, "sessions": sessions, "purged": purged}

    async def lease_acquire_many(
        self, rooms: list[str], role: str, holder: str, lease_ms: int
    ) -> list[int]:
        """For each room, the fence if this holder now has (or renewed) the room's lease for
        ``role``, else 0: one pipeline, each room its own script call."""
        answers = await self._run_many(
            [(self.scripts.lease, room, ["acquire", role, holder, lease_ms, 0]) for room in rooms]
        )
        return [int(n) for n in self._raise_first(answers)]

    async def lease_release(self, room: str, role: str, holder: str, fence: int) -> bool:
        res = await self._run(self.scripts.lease, room, "release", role, holder, 0, fence)
        return bool(res)

    # the outbox (the relay) -----------------------------------------------------------
    @store_call
    async def outbox_batch(self, room: str, count: int) -> list[tuple[str, str]]:
        """The oldest ``count`` events of the room's outbox: (entry id, event JSON)."""
        entries: list[tuple[str, dict[str, str]]] = await self.redis.xrange(
            keys.RoomKeys(room).outbox, "-", "+", count=count
        )  # type: ignore[assignment]
        return [(entry_id, fields["e"]) for entry_id, fields in entries]

    @store_call
    async def outbox_delivered(self, room: str, entry_ids: list[str]) -> None:
        """Drop entries from the outbox once JetStream has acknowledged them."""
        if entry_ids:
            await self.redis.xdel(keys.RoomKeys(room).outbox, *entry_ids)

    @store_call
    async def outbox_length(self, room: str) -> int:
        return int(await self.redis.xlen(keys.RoomKeys(room).outbox))

    @store_call
    async def largest_outbox(self) -> int:
        """The most undelivered events any room's outbox holds."""
        rooms = await self.rooms()
        if not rooms:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for room in rooms:
                pipe.xlen(keys.RoomKeys(room).outbox)
            lengths = await pipe.execute()
        return max(int(n) for n in lengths)

    async def finish_draining(self, room: str) -> bool:
        """Take a deleted room off the draining list once its outbox is empty. (Only a
        re-creation appends to a deleted room's outbox, and that lists the room again.)"""
        if await self.outbox_length(room) != 0:
            return False
        await self.index.drained(room)
        return True

    # recovery -------------------------------------------------------------------------
    async def replay(self, runs: dict[str, list[bytes]], now_ms: int) -> int:
        """Apply events read back from the stream, each room's run by one replay.lua call,
        all in one pipeline; answers how many were applied (the rest the rooms had)."""
        answers = await self._run_many(
            [(self.scripts.replay, room, [now_ms, *events]) for room, events in runs.items()]
        )
        return sum(int(n) for n in self._raise_first(answers))

    @store_call
    async def end_recovery(self, rooms: list[str], deleted: set[str]) -> None:
        """Lift the rooms' recovering marks and list the ones the stream left alive."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for room in rooms:
                pipe.hdel(keys.RoomKeys(room).cfg, "recovering")
            await pipe.execute()
        await self.index.restore([r for r in rooms if r not in deleted], sorted(deleted))

    # rooms ----------------------------------------------------------------------------
    @store_call
    async def get_config(self, room: str) -> tuple[RoomConfig, int] | None:
        """The room's config and version, or None. Only the bounds of each field apply."""
        flat: dict[str, str] = await self.redis.hgetall(  # type: ignore[assignment]
            keys.RoomKeys(room).cfg
        )
        if not flat:
            return None
        return from_stored(flat), int(flat.get("version", "0"))

    async def put_room(self, room: str, update: RoomUpdate) -> tuple[RoomConfig, bool]:
        """Create or update a room: room_put.lua merges the given fields onto the stored
        config, checks the rules across fields and writes, in one step. Answers the merged
        config and whether the room was created."""
        check_room_id(room)
        given = msgspec.json.encode(checked_update(update))
        raw = await self._run(
            self.scripts.room_put, room, secrets.token_hex(4), given, _FIELDS_JSON
        )
        result = put_decoder.decode(raw)
        await self.index.add(room)
        return from_stored(result.config), result.created

    # invites --------------------------------------------------------------------------
    async def create_invite(
        self, room: str, invite_id: str, *, priority: int, uses: int, expires_at_ms: int
    ) -> InviteRecord:
        check_room_id(room)
        raw = await self._run(
            self.scripts.invite_put, room, invite_id, priority, uses, expires_at_ms
        )
        return invite_decoder.decode(raw)

    async def revoke_invite(self, room: str, invite_id: str) -> InviteRecord:
        check_room_id(room)
        return invite_decoder.decode(await self._run(self.scripts.invite_revoke, room, invite_id))

    async def delete_room(self, room: str) -> None:
        check_room_id(room)
        await self._run(self.scripts.room_delete, room)
        await self.index.retire(room)

    async def figures(self, room: str) -> RoomFigures:
        check_room_id(room)
        return figures_decoder.decode(await self._run(self.scripts.room_figures, room))

    async def digest(self, room: str) -> str:
        """A hash of the room's state (see room_digest.lua): equal digests, equal rooms."""
        check_room_id(room)
        return digest_of(await self._run(self.scripts.room_digest, room))

    async def rooms(self) -> list[str]:
        return await self.index.rooms()

    async def draining_rooms(self) -> list[str]:
        return await self.index.draining()

    async def ping(self) -> bool:
        try:
            with mapped():
                return bool(await self.redis.ping())
        except StoreUnavailable:
            return False


async def require_room(store: RoomStore, room: str) -> RoomConfig:
    check_room_id(room)
    found = await store.get_config(room)
    if found is None:
        raise RoomNotFound()
    return found[0]
