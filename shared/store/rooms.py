"""Typed calls into the room scripts. Every change is one script call: one round trip, one
atomic change. Nothing here reads, decides in Python and then writes."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any, NamedTuple

import msgspec
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from shared import keys, site_latency
from shared.errors import InvalidRoomId, StoreUnavailable, unreadable_room
from shared.room import (
    FIELD_DEFAULTS,
    RoomConfig,
    RoomUpdate,
    checked_update,
    from_stored,
)
from shared.scripts import SCRIPT_NAMES, LuaScript, Scripts, register_named
from shared.store.calls import mapped, store_call, store_error
from shared.store.index import ReplicaSet, RoomIndex
from shared.store.lane import CallsLost, ScriptLane, bulk
from shared.store.line_read import read_line
from shared.store.snapshot_read import is_raw, read_snapshot, snapshot_json
from shared.store.views import (
    AdmitResult,
    InviteRecord,
    LineSnapshot,
    PaceInputs,
    PersonView,
    PutResult,
    ReplayMode,
    ReplayResult,
    RoomFigures,
    admit_decoder,
    digest_of,
    figures_decoder,
    invite_decoder,
    line_snapshot_decoder,
    person_decoder,
    put_decoder,
    replay_decoder,
)

Arg = str | int | float | bytes
ScriptCall = tuple[LuaScript, str, list[Arg]]
"""One script, the room it runs on, and its ARGV after the room id."""

_FIELDS_JSON = msgspec.json.encode(FIELD_DEFAULTS)


class _Seq(msgspec.Struct):
    seq: int


def check_room_id(room: str) -> None:
    if not keys.ROOM_ID_PATTERN.fullmatch(room):
        raise InvalidRoomId()


def new_position_id() -> str:
    return secrets.token_urlsafe(12)


LANE_SCRIPTS = frozenset(
    {"enqueue", "status", "leave", "claim", "complete", "touch_seen", "replay"}
)
"""The scripts a gateway runs per request, each about one place with a short answer, and
the replay (``waitroom recover`` keeps its calls in order on one connection): these go
through the store's ``lane`` unless told otherwise."""
LONG_SCRIPTS = frozenset(
    {"room_snapshot", "room_restore", "replay", "room_digest", "room_figures", "line_snapshot"}
)
"""Scripts over a whole room or a run of events: they may hold the store a second or
more. A worker sends them through the pool, so the calls on its lane (its loops' ticks,
its lease renewals) do not wait behind them on one connection, nor time out with them."""
WORKER_LANE_SCRIPTS = frozenset(SCRIPT_NAMES) - LONG_SCRIPTS
"""A worker's other scripts go through its lane: it ticks each of its loops 20 times a
second, one call or a few each, and a call through redis-py's pool cost it about 150 us of
CPU on this 2-core machine against 55 us through the lane (serial calls to a local valkey)."""
LANE_OUTBOX_MAX = 2048
"""Outbox reads of more entries (a verify's, a catch-up's) go through the pool: their
answer is as long as the read."""
ROOM_KEY_COUNT = len(keys.RoomKeys("-").all())
PACKED_ROOMS = 10_000
"""Rooms whose keys are kept packed for the lane (all forgotten when it fills)."""

OPENING_BATCH = 1000
"""People an opening places per script call (a few milliseconds of the data store's time)."""
OPENING_BATCHES = 50
"""Batches an admission tick places at most, before it lets another room's tick run."""


class OutboxRead(NamedTuple):
    entries: list[tuple[str, str]]
    """The oldest events: (entry id, event JSON)."""
    recovering: str | None
    """Who holds the room's recovering mark ('recover', 'relay', 'stuck' after a gap), or
    None when it is not being rebuilt."""


def new_seed() -> str:
    """Randomness for a script that draws (the pre-queue shuffle, the lottery): recorded
    on the stream where a replay needs it."""
    return secrets.token_hex(8)


class RoomStore:
    """The data-store side of waitroom: the only code that touches its keys. It is handed
    a client and never closes it. ``index`` holds the cross-room sets; ``replicas(role)``
    the worker replicas' liveness marks."""

    def __init__(
        self,
        redis: Redis,
        *,
        outbox_max: int = 0,
        lane: ScriptLane | None = None,
        lane_scripts: frozenset[str] = LANE_SCRIPTS,
    ) -> None:
        """``lane``: the scripts named in ``lane_scripts`` (``LANE_SCRIPTS`` unless told),
        the replicas' liveness marks, the room lists and the server's run id go through it
        instead of ``redis``'s pool (shared/store/lane.py); the caller opens and closes it."""
        self.redis = redis
        self.outbox_max = outbox_max
        self.lane = lane
        self.lane_scripts = lane_scripts if lane is not None else frozenset()
        self._packed_keys: dict[str, bytes] = {}
        self.scripts = Scripts.register(redis)
        self.replica_mark = register_named(redis, "replica_mark")
        self.index = RoomIndex(redis, lane)

    def replicas(self, role: str) -> ReplicaSet:
        return ReplicaSet(self.redis, role, self.replica_mark, self.lane)

    async def _run(self, script: LuaScript, room: str, *args: Arg, short: bool = True) -> Any:
        """One script call; ``short`` False keeps it off the lane (a long answer)."""
        with mapped(script):
            if self.lane is not None and short and script.name in self.lane_scripts:
                return await self._run_in_lane(self.lane, script, room, args)
            return await script(keys=keys.RoomKeys(room).all(), args=[room, *args])

    async def _run_in_lane(
        self, lane: ScriptLane, script: LuaScript, room: str, args: tuple[Arg, ...]
    ) -> Any:
        return await lane.run(script.script, self._packed(room), ROOM_KEY_COUNT, (room, *args))

    def _packed(self, room: str) -> bytes:
        packed = self._packed_keys.get(room)
        if packed is None:
            if len(self._packed_keys) >= PACKED_ROOMS:
                self._packed_keys.clear()
            packed = self._packed_keys[room] = b"".join(map(bulk, keys.RoomKeys(room).all()))
        return packed

    async def _run_many(self, calls: list[ScriptCall]) -> list[Any]:
        """Script calls in one pipeline, each its own atomic call; a failed call's place
        holds its error (as ``store_error`` maps it), for the caller to raise or skip."""
        if not calls:
            return []
        lane = self.lane
        if lane is not None and all(script.name in self.lane_scripts for script, _, _ in calls):
            with mapped():
                answers = await self._run_many_in_lane(lane, calls)
            return [
                store_error(answer, script) if isinstance(answer, Exception) else answer
                for (script, _room, _args), answer in zip(calls, answers, strict=True)
            ]
        with mapped():
            answers = await self._evalsha_many(calls)
            unknown = [i for i, answer in enumerate(answers) if isinstance(answer, NoScriptError)]
            if unknown:  # the server lost its scripts (it restarted): those calls did not run
                for script in {calls[i][0] for i in unknown}:
                    await self.redis.script_load(script.script.script)
                again = await self._evalsha_many([calls[i] for i in unknown])
                for i, answer in zip(unknown, again, strict=True):
                    answers[i] = answer
        return [
            store_error(answer, script) if isinstance(answer, Exception) else answer
            for (script, _room, _args), answer in zip(calls, answers, strict=True)
        ]

    async def _run_many_in_lane(self, lane: ScriptLane, calls: list[ScriptCall]) -> list[Any]:
        """Each call through the lane (written together, in one turn of the loop); a
        script's error answer in its place, a broken or silent store raised."""

        async def one(script: LuaScript, room: str, args: list[Arg]) -> Any:
            try:
                return await self._run_in_lane(lane, script, room, tuple(args))
            except ResponseError as exc:
                return exc

        return list(await asyncio.gather(*(one(*call) for call in calls)))

    async def _evalsha_many(self, calls: list[ScriptCall]) -> list[Any]:
        """EVALSHA of each call in one pipeline. (redis-py's pipeline of scripts first asks
        SCRIPT EXISTS, one more round trip on every tick of every worker.)"""
        async with self.redis.pipeline(transaction=False) as pipe:
            for script, room, args in calls:
                room_keys = keys.RoomKeys(room).all()
                pipe.evalsha(script.script.sha, len(room_keys), *room_keys, room, *args)
            answers: list[Any] = await pipe.execute(raise_on_error=False)
        return answers

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
        outbox_max: int | None = None,
        lane: str = "",
        invite_id: str = "",
    ) -> PersonView:
        """Join the line (or the pre-queue), or (``restore_arrival``) put back a place the
        store lost, in the room's ``incarnation`` the token names; ``pow_*`` is a checked
        proof of work; ``lane`` a lane of the room or ``any``; ``invite_id`` an invite whose
        signature the caller checked (it gives the priority and spends a use). New people
        are refused (``EventsBacklog``) while the room's outbox holds more than
        ``outbox_max`` events (the store's own bound unless given; 0: no bound)."""
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
            self.outbox_max if outbox_max is None else outbox_max,
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
        """The whole line, read in one consistent step: with plain commands in one
        transaction when there is a lane (line_read.py: the store is held a fraction as
        long), else by line_snapshot.lua; decoded off the loop either way."""
        if self.lane is not None:
            with mapped():
                return await read_line(self.lane, room)
        raw = await self._run(self.scripts.line_snapshot, room)
        return await asyncio.to_thread(line_snapshot_decoder.decode, raw)

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
        max_batch: int = 100_000,
        *,
        pace: float | None = None,
    ) -> AdmitResult:
        """One admission tick; ``pace`` caps the release rate (a room following its site).
        A pre-queue due to open goes into the line first, in batches of ``OPENING_BATCH``
        (each its own short script call), at most ``OPENING_BATCHES`` of them per tick; the
        tick admits once it is all placed."""
        pace_arg = "" if pace is None else f"{pace:.6f}"
        admit = self.scripts.admit
        result = admit_decoder.decode(
            await self._run(admit, room, holder, fence, lease_ms, max_batch, new_seed(), pace_arg)
        )
        if not result.opening:
            return result
        for _ in range(OPENING_BATCHES):
            if await self.open_line(room, holder, fence, lease_ms) == 0:
                return admit_decoder.decode(
                    await self._run(
                        admit, room, holder, fence, lease_ms, max_batch, new_seed(), pace_arg
                    )
                )
        return result

    async def open_line(
        self, room: str, holder: str, fence: int, lease_ms: int, batch: int = 0
    ) -> int:
        """Place the next batch of a due pre-queue into the line; how many still wait."""
        batch = batch or OPENING_BATCH
        return int(await self._run(self.scripts.open_line, room, holder, fence, lease_ms, batch))

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
        return [
            max(0, answer) for answer in await self.lease_attempts(rooms, role, holder, lease_ms)
        ]

    async def lease_attempts(
        self, rooms: list[str], role: str, holder: str, lease_ms: int
    ) -> list[int]:
        """``lease_acquire_many``, but a lease another replica holds answers minus the
        milliseconds it has left (a negative number) instead of 0."""
        answers = await self._run_many(
            [(self.scripts.lease, room, ["acquire", role, holder, lease_ms, 0]) for room in rooms]
        )
        return [int(n) for n in self._raise_first(answers)]

    async def lease_release(self, room: str, role: str, holder: str, fence: int) -> bool:
        """Give the room's lease up (only if this holder still has it with this fence), and
        count it, so the role's other replicas ask for the room at once."""
        released = bool(
            await self._run(self.scripts.lease, room, "release", role, holder, 0, fence)
        )
        if released:
            await self.replicas(role).released()
        return released

    # the outbox (the relay) -----------------------------------------------------------
    async def outbox_batch(self, room: str, count: int) -> list[tuple[str, str]]:
        """The oldest ``count`` events of the room's outbox: (entry id, event JSON). Read
        by outbox_read.lua as two newline-joined strings: parsing XRANGE's reply (several
        parts per entry) cost the relay more than publishing."""
        return (await self.outbox_read(room, count)).entries

    async def outbox_read(self, room: str, count: int) -> OutboxRead:
        """``outbox_batch``, and who holds the room's recovering mark, read at once: what
        the relay asks on every turn, in one round trip."""
        ids, events, owner = await self._run(
            self.scripts.outbox_read, room, count, short=count <= LANE_OUTBOX_MAX
        )
        entries = list(zip(ids.split("\n"), events.split("\n"), strict=True)) if ids else []
        return OutboxRead(entries, str(owner) or None)

    async def outbox_delivered(
        self, room: str, entry_ids: list[str], *, holder: str, fence: int, lease_ms: int
    ) -> int:
        """Drop entries from the outbox once JetStream has acknowledged them: only under
        the room's relay lease with this fence (else ``LeaseLost``)."""
        return int(
            await self._run(self.scripts.outbox_trim, room, holder, fence, lease_ms, *entry_ids)
        )

    async def outbox_delivered_through(
        self,
        room: str,
        batch: list[tuple[str, str]],
        *,
        holder: str,
        fence: int,
        lease_ms: int,
    ) -> int:
        """Drop a delivered batch ((entry id, event JSON), the outbox's oldest) from the
        outbox, under the room's relay lease with this fence (else ``LeaseLost``); answers
        how many went, 0 when it is gone already, or -1 (nothing dropped) when the outbox's
        oldest entries are not the batch (see outbox_trim_through.lua)."""
        (first, _), (last, last_event) = batch[0], batch[-1]
        return int(
            await self._run(
                self.scripts.outbox_trim_through,
                room,
                holder,
                fence,
                lease_ms,
                first,
                last,
                len(batch),
                last_event,
            )
        )

    @store_call
    async def outbox_age(self, room: str) -> float:
        """Seconds the oldest undelivered event of the room has waited (0 when none), by
        the data store's clock (entry ids are its milliseconds)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.time()
            pipe.xrange(keys.RoomKeys(room).outbox, "-", "+", count=1)
            (seconds, micros), oldest = await pipe.execute()
        if not oldest:
            return 0.0
        written_ms = int(str(oldest[0][0]).split("-", 1)[0])
        return max(0.0, (int(seconds) * 1000 + int(micros) // 1000 - written_ms) / 1000)

    async def oldest_outbox(self) -> float:
        """The outbox age of the room whose oldest undelivered event has waited longest."""
        ages = [await self.outbox_age(room) for room in await self.rooms()]
        return max(ages, default=0.0)

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
    async def replay(
        self, runs: dict[str, list[bytes]], mode: ReplayMode = "strict"
    ) -> dict[str, ReplayResult]:
        """Apply events to rooms, each room's run by one replay.lua call, all in one
        pipeline (see replay.lua for the modes); answers each room's result. Through the
        store's lane when it has one for replays (see ``replay_ahead`` for calls kept on
        their way; a worker's catch-up keeps them off its lane)."""
        rooms = list(runs)
        if self.lane is not None and "replay" in self.lane_scripts:
            with mapped(self.scripts.replay):
                answers = await asyncio.gather(
                    *(
                        self._run_in_lane(self.lane, self.scripts.replay, room, (mode, *runs[room]))
                        for room in rooms
                    )
                )
        else:
            answers = await self._run_many(
                [(self.scripts.replay, room, [mode, *runs[room]]) for room in rooms]
            )
        return {
            room: replay_decoder.decode(answer)
            for room, answer in zip(rooms, self._raise_first(answers), strict=True)
        }

    async def replay_ahead(
        self, runs: dict[str, list[bytes]], mode: ReplayMode = "strict"
    ) -> dict[str, ReplayResult]:
        """``replay`` for a caller that sends the next one before this one's answer: over
        the store's lane, in the order called, and nothing retried, so calls cannot pass
        each other. ``CallsLost`` when the connection broke or the server had lost the
        script: this call and any sent behind it may or may not have run."""
        lane = self.lane
        if lane is None:
            raise ValueError("replay_ahead needs the store's lane")
        rooms = list(runs)
        sha = self.scripts.replay.script.sha
        with mapped(self.scripts.replay):
            try:
                answers = await asyncio.gather(
                    *(
                        lane.evalsha(
                            sha,
                            self._packed(room),
                            ROOM_KEY_COUNT,
                            (room, mode, *runs[room]),
                            retries=0,
                        )
                        for room in rooms
                    )
                )
            except (RedisConnectionError, NoScriptError) as exc:
                raise CallsLost() from exc
        return {
            room: replay_decoder.decode(answer) for room, answer in zip(rooms, answers, strict=True)
        }

    async def mark_recovering(
        self, rooms: list[str], on: bool = True, *, owner: str = "recover", take: bool = False
    ) -> dict[str, str]:
        """Mark rooms as being rebuilt by ``owner`` (every other change is refused) or lift
        the marks. Answers, per room another owner holds (unless ``take``), that owner."""
        args: list[Arg] = ["1" if on else "0", owner, "1" if take else "0"]
        answers = self._raise_first(
            await self._run_many([(self.scripts.recovery_mark, room, args) for room in rooms])
        )
        return {room: str(a) for room, a in zip(rooms, answers, strict=True) if a != "ok"}

    async def end_recovery(self, rooms: list[str], deleted: set[str]) -> None:
        """Lift the rooms' recovering marks and list the ones the stream left alive."""
        await self.mark_recovering(rooms, on=False, take=True)
        await self.index.restore([r for r in rooms if r not in deleted], sorted(deleted))

    async def snapshot(self, room: str) -> bytes:
        """The room's whole state at its event counter: read with plain commands in one
        transaction and kept raw when there is a lane (snapshot_read.py: the store is held
        a fraction as long), else room_snapshot.lua's JSON. ``snapshot_seq`` reads its
        counter; ``restore`` takes either."""
        if self.lane is not None:
            with mapped():
                return await read_snapshot(self.lane, room)
        raw = await self._run(self.scripts.room_snapshot, room)
        return raw if isinstance(raw, bytes) else str(raw).encode()

    async def restore(self, room: str, snapshot: bytes | None) -> int:
        """Start rebuilding a room: its state goes and it is marked recovering; with a
        snapshot (either kind ``snapshot`` takes), the state comes back as it was then.
        Answers the event counter now. A snapshot that cannot be read
        (``SnapshotUnreadable``) or is of a later version (``SnapshotTooNew``) changes
        nothing."""
        if snapshot is not None and is_raw(snapshot):
            snapshot = await asyncio.to_thread(snapshot_json, snapshot)
        return int(await self._run(self.scripts.room_restore, room, snapshot or b""))

    @store_call
    async def server_id(self) -> str:
        """The data-store server's run id: it changes when the server restarts or another
        one (a promoted replica) takes its place. (The relay asks on every tick: through
        the lane when there is one.)"""
        if self.lane is None:
            info: dict[str, object] = await self.redis.info("server")
            return str(info.get("run_id", ""))
        text: str = await self.lane.command("INFO", "server")
        return next((line[7:] for line in text.splitlines() if line.startswith("run_id:")), "")

    @store_call
    async def required_config(self, room: str) -> RoomConfig:
        """The room's config; ``RoomNotFound``, or ``RoomRecovering`` while a rebuild that
        started from nothing has not made it yet (the room is there: ask again). A room
        that is there costs one read; a missing config is read again with the mark, in
        one transaction (a rebuild may make it and lift the mark between two reads)."""
        found = await self.get_config(room)
        if found is not None:
            return found[0]
        named = keys.RoomKeys(room)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(named.cfg)
            pipe.hexists(named.stats, "recovering")
            flat, recovering = await pipe.execute()
        if not flat:
            raise unreadable_room(bool(recovering))
        return from_stored(flat)

    @store_call
    async def event_seq(self, room: str) -> int:
        """The room's event counter: the seq of the last event its scripts made."""
        seq = await self.redis.hget(keys.RoomKeys(room).stats, "event_seq")
        return int(seq or 0)

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
        result = await self.put_room_change(room, update)
        return from_stored(result.config), result.created

    async def put_room_change(self, room: str, update: RoomUpdate) -> PutResult:
        """``put_room``, answering also the change's event seq, version and incarnation."""
        check_room_id(room)
        given = msgspec.json.encode(checked_update(update))
        raw = await self._run(
            self.scripts.room_put, room, secrets.token_hex(4), given, _FIELDS_JSON
        )
        result = put_decoder.decode(raw)
        await self.index.add(room)
        return result

    @store_call
    async def config_version(self, room: str) -> tuple[int, str] | None:
        """The room's config version and incarnation, or None when it has no config."""
        version, inc = await self.redis.hmget(keys.RoomKeys(room).cfg, ["version", "inc"])
        if version is None:
            return None
        return int(version), str(inc or "")

    @store_call
    async def delivered(self, room: str, seq: int) -> bool:
        """Whether the room's event ``seq`` has left the outbox (JetStream has it)."""
        head = await self.outbox_batch(room, 1)
        return not head or msgspec.json.decode(head[0][1], type=_Seq).seq > seq

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
    """The config of a room whose id is checked first (``RoomStore.required_config``)."""
    check_room_id(room)
    return await store.required_config(room)
