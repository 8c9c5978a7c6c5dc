"""Typed calls into the room scripts. Every change is one script call: one round trip, one
atomic change. Nothing here reads, decides in Python and then writes."""

from __future__ import annotations

import secrets
from typing import Any

import msgspec
from redis.asyncio import Redis

from shared import keys, site_latency
from shared.errors import InvalidRoomId, RoomNotFound, StoreUnavailable
from shared.room import (
    FIELD_DEFAULTS,
    RoomConfig,
    RoomUpdate,
    checked_update,
    from_stored,
    stored_form,
)
from shared.scripts import LuaScript, Scripts
from shared.store.calls import mapped, store_call, store_error
from shared.store.index import ReplicaSet, RoomIndex
from shared.store.views import (
    AdmitResult,
    LineSnapshot,
    PaceInputs,
    PersonView,
    RoomFigures,
    admit_decoder,
    digest_of,
    figures_decoder,
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
    ) -> PersonView:
        """Join the line, or (``restore_arrival``) put back a place the store lost, in the
        room's ``incarnation`` the token names; ``pow_*`` is a checked proof of work."""
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
        self,
        room: str,
        holder: str,
        fence: int,
        lease_ms: int,
        max_batch: int = 500,
        *,
        pace: float | None = None,
    ) -> AdmitResult:
        """One admission tick; ``pace`` caps the release rate (a room following its site)."""
        raw = await self._run(
            self.scripts.admit,
            room,
            holder,
            fence,
            lease_ms,
            max_batch,
            "" if pace is None else f"{pace:.6f}",
        )
        return admit_decoder.decode(raw)

    # the protected site's pace ----------------------------------------------------------
    async def report_latency(
        self, room: str, position_id: str, *, count: int, p50: float, p95: float, top: float
    ) -> None:
        """Keep a latency report of the site (the latest per place, for WINDOW_MS)."""
        await self._run(
            self.scripts.latency_report,
            room,
            position_id,
            count,
            f"{p50:.3f}",
            f"{p95:.3f}",
            f"{top:.3f}",
            site_latency.WINDOW_MS,
            site_latency.MAX_REPORTS,
        )

    @store_call
    async def pace_inputs(self, room: str) -> PaceInputs | None:
        """What the pace controller decides from: the room's pace settings, the pace in
        force and the site's recent latency reports (None for a room that is gone)."""
        k = keys.RoomKeys(room)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(k.cfg, "auto_release", "target_latency_ms", "release_rate")
            pipe.hget(k.stats, "pace")
            pipe.hvals(k.latency)
            pipe.time()
            (auto, target, rate), pace, raw, (secs, micros) = await pipe.execute()
        if rate is None:
            return None
        reports = [site_latency.report_decoder.decode(r) for r in raw]
        return PaceInputs(
            auto_release=auto == "true",
            target_latency_ms=int(target or 0),
            release_rate=float(rate),
            pace=None if pace is None else float(pace),
            reports=site_latency.recent(reports, int(secs) * 1000 + int(micros) // 1000),
        )

    async def set_pace(
        self,
        room: str,
        holder: str,
        fence: int,
        lease_ms: int,
        pace: float | None,
        *,
        site_p95_ms: float | None = None,
        reports: int = 0,
    ) -> bool:
        """Record the room's pace (None: the room no longer follows its site) and append
        ``pace_changed``; False when it was that already."""
        changed = await self._run(
            self.scripts.pace_set,
            room,
            holder,
            fence,
            lease_ms,
            "" if pace is None else f"{pace:.3f}",
            "" if site_p95_ms is None else f"{site_p95_ms:.1f}",
            reports,
        )
        return bool(changed)

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
        given = msgspec.json.encode(stored_form(checked_update(update)))
        raw = await self._run(
            self.scripts.room_put, room, secrets.token_hex(4), given, _FIELDS_JSON
        )
        result = put_decoder.decode(raw)
        await self.index.add(room)
        return from_stored(result.config), result.created

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
