"""The lines of the rooms this gateway answers, kept in memory from the rooms' events, so a
person who asks where they stand (status, heartbeat, an event stream's refresh) is
answered without a data-store round trip.

Each room's line is loaded once from the store in one consistent read (the scores in order
and the event counter they match: plain reads in one MULTI/EXEC over the lane,
shared/store/line_read.py, parsed and built into the line off the loop, one line at a
time) and then kept current by the room's events on NATS (``waitroom.<room>.>``, the
events the relay publishes): a join adds a score, an admission or an end removes one, a
room update changes the status and pace, an admission moves the observed pace as the admit
script does. Events arrive in the order of their ``seq``; one out of turn (a gap, or NATS
reconnected and missed some) makes the line load itself again, as does one heard while it
loaded that asks for a fresh start (the room made again, a pre-queue placed). While a line
is loading, stale or NATS is away, callers go to the store
as before, so the answer may lag the store by the relay's delay (tens of milliseconds) but
never by more than that, and never passes a person someone who joined before them.

Only a person waiting in a room whose order is plain (no lanes, first come first served)
is answered here; everyone else (admitted, ended, unknown to the line) goes to the store.

Heartbeats answered here are marked seen in batches: one script call per room every
``SEEN_FLUSH_SECONDS`` for all the heartbeats gathered, instead of one call each.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
import time
from typing import Any

import msgspec
import structlog
from sortedcontainers import SortedList

from shared.events import SUBJECT_PREFIX
from shared.line import MAX_PRIORITY, PRIORITY_SPAN, RATE_TAU_MS
from shared.nats_link import NatsLink
from shared.store import PersonView, RoomStore
from shared.store.views import LineSnapshot
from shared.tasks import cancel_and_wait
from shared.tokens import QueueClaims

log = structlog.get_logger("line_book")

SEEN_FLUSH_SECONDS = 0.5
IDLE_SECONDS = 300.0
MAX_LAG_SECONDS = 1.0
"""A line behind the store's event counter for longer than this (the relay slow or down,
events lost on the way) is not used: people are answered from the store meanwhile."""
RELOAD_AFTER_SECONDS = 5.0
LOAD_TRIES = 3
"""Loads of a line in a row whose events heard meanwhile asked for a fresh start."""
PLAIN_ORDER = {"queueing_method": "fifo", "admission_policy": "strict"}
"""Room settings (and their values) under which a place's position is its rank by score."""


class _Event(msgspec.Struct):
    type: str
    seq: int
    ts: float = 0.0
    position_id: str | None = None
    arrival: int | None = None
    priority: int = 0
    config: dict[str, Any] | None = None
    created: bool = False
    incarnation: str | None = None
    pace: float | None = None
    auto_release: bool = False
    prequeue: bool = False


_event = msgspec.json.Decoder(_Event)
ENDS = frozenset({"admitted", "completed", "expired", "left"})


def line_score(priority: int, arrival: int) -> float:
    return float((MAX_PRIORITY - priority) * PRIORITY_SPAN + arrival)


def plain_order(config: dict[str, Any]) -> bool:
    """Whether a place's position in this room is simply its rank by score."""
    if config.get("lanes"):
        return False
    return all(str(config.get(name, plain)) == plain for name, plain in PLAIN_ORDER.items())


BuiltLine = tuple[dict[str, float], "SortedList[float]"]
"""A line's places (position id to score) and its scores in order."""


BUILD_CHUNK = 20_000
"""Places added to the dict in one call while a line is built. Run in a thread, a single
call over a million (C code all through) would hold the interpreter's lock, and so the
event loop, for as long as it takes; between calls the loop gets its turns."""


def build_line(snapshot: LineSnapshot) -> BuiltLine:
    """The places and the sorted scores of a snapshot's line. For a large line, run it off
    the loop (``asyncio.to_thread``): a million people take a good part of a second."""
    flat = snapshot.line if isinstance(snapshot.line, list) else []  # cjson: empty is {}
    places: dict[str, float] = {}
    step = 2 * BUILD_CHUNK
    for start in range(0, len(flat), step):
        part = flat[start : start + step]
        places.update(zip(part[::2], map(float, part[1::2]), strict=True))
    return places, SortedList(places.values())  # (in order already: sorting is one pass)


def _decayed_count(value: float, ts: int, at: int) -> tuple[float, int]:
    """One more in an exponentially decaying count (tau 30 s), as the Lua scripts keep it."""
    return value * math.exp(-max(0, at - ts) / RATE_TAU_MS) + 1000 / RATE_TAU_MS, at


class RoomLine:
    """One room's line as this gateway knows it."""

    def __init__(self, room: str) -> None:
        self.room = room
        self.scores: SortedList[float] = SortedList()
        self.places: dict[str, float] = {}
        self.event_seq = 0
        self.synced = False
        self.plain = True
        self.incarnation = ""
        self.status = "active"
        self.release_rate = 0.0
        self.heartbeat_interval = 10
        self.rate = 0.0
        self.rate_ts = 0
        self.rate_since = 0
        self.gone_rate = 0.0
        self.gone_rate_ts = 0
        self.auto_release = False
        self.set_pace: float | None = None
        self.used = time.monotonic()
        self.reconnects = -1
        self.behind_since: float | None = None
        self.loads = 0
        """Times this line was loaded from the store (a figure for tests)."""
        self._early: list[_Event] = []
        self._early_writes: list[PersonView] = []

    def load(self, snapshot: LineSnapshot, built: BuiltLine | None = None) -> bool:
        """Start from a snapshot (``built`` from it, or built here), then apply what
        arrived while it was read. False when one of those asks for a fresh start (a gap,
        the room made again or deleted, a pre-queue placed): load again."""
        self.loads += 1
        self.places, self.scores = built or build_line(snapshot)
        self.event_seq = snapshot.event_seq
        self.incarnation = snapshot.incarnation
        self.status = snapshot.status
        self.release_rate = snapshot.release_rate
        self.heartbeat_interval = snapshot.heartbeat_interval
        self.rate, self.rate_ts, self.rate_since = (
            snapshot.rate,
            snapshot.rate_ts,
            snapshot.rate_since,
        )
        self.gone_rate, self.gone_rate_ts = snapshot.gone_rate, snapshot.gone_rate_ts
        self.auto_release = snapshot.auto_release
        self.set_pace = snapshot.pace if snapshot.pace >= 0 else None
        early, self._early = self._early, []
        writes, self._early_writes = self._early_writes, []
        self.synced = True
        for event in early:
            if not self.apply(event):
                return False
        for view in writes:  # a snapshot read after them holds them already: no change
            self.wrote(view)
        return True

    def hear(self, raw: bytes) -> bool:
        """Take one event off the wire; False when the line must load again."""
        try:
            event = _event.decode(raw)
        except msgspec.DecodeError:
            return True
        if not self.synced:
            self._early.append(event)
            return True
        return self.apply(event)

    def apply(self, event: _Event) -> bool:
        if event.seq <= self.event_seq:
            return True  # a repeat (a relay handing over)
        if event.seq != self.event_seq + 1:
            self.synced = False  # a gap: reload
            return False
        self.event_seq = event.seq
        if event.type == "enqueued" and event.prequeue:
            pass  # in the pre-queue, not the line: the store answers them
        elif event.type == "enqueued" and event.position_id and event.arrival is not None:
            joined = line_score(event.priority, event.arrival)
            if self.places.get(event.position_id) is None:
                self.places[event.position_id] = joined
                self.scores.add(joined)
        elif event.type in ENDS and event.position_id:
            gone = self.places.pop(event.position_id, None)
            if gone is not None:
                self.scores.remove(gone)
                if event.type != "admitted":  # gave up their place: _lib.lua counts them
                    self.gone_rate, self.gone_rate_ts = _decayed_count(
                        self.gone_rate, self.gone_rate_ts, int(event.ts * 1000)
                    )
            if event.type == "admitted":
                self._admitted(int(event.ts * 1000))
        elif event.type == "room_updated" and event.config is not None:
            config = event.config
            if event.created or (event.incarnation and event.incarnation != self.incarnation):
                self.synced = False  # a new room under this name: start over
                return False
            self.status = str(config.get("status", self.status))
            self.release_rate = float(config.get("release_rate", self.release_rate))
            self.heartbeat_interval = int(config.get("heartbeat_interval", 10))
            self.plain = plain_order(config)
            self.auto_release = config.get("auto_release") is True
        elif event.type == "pace_changed":
            self.set_pace = event.pace if event.auto_release else None
        elif event.type in ("room_deleted", "prequeue_placed"):
            self.synced = False  # gone, or people of the pre-queue placed: start over
            return False
        return True

    def wrote(self, view: PersonView) -> None:
        """A change this gateway just made in the store, applied before its event comes
        back over NATS (the event then finds it done), so whoever made it reads it back at
        once: a join or a place put back is in the line, someone who left is gone."""
        if not self.synced:
            self._early_writes.append(view)  # loading: applied once the snapshot is in
            return
        if view.state == "waiting":
            if view.rank >= 0 and view.position_id not in self.places:
                joined = line_score(view.priority, view.arrival)
                self.places[view.position_id] = joined
                self.scores.add(joined)
        else:
            gone = self.places.pop(view.position_id, None)
            if gone is not None:
                self.scores.remove(gone)
                if view.state != "admitted":
                    self.gone_rate, self.gone_rate_ts = _decayed_count(
                        self.gone_rate, self.gone_rate_ts, int(time.time() * 1000)
                    )

    def _admitted(self, at: int) -> None:
        """The observed pace moves as admit.lua moves it: a decaying count, tau 30 s."""
        if self.rate_since <= 0:
            self.rate_since = at
        self.rate, self.rate_ts = _decayed_count(self.rate, self.rate_ts, at)

    @property
    def pace(self) -> float:
        """As the store's view says it: the pace allowed, -1 when the site is not followed."""
        if not self.auto_release:
            return -1.0
        return self.release_rate if self.set_pace is None else self.set_pace

    def checked(self, store_seq: int, now: float) -> None:
        """The store's event counter as just read: note how long this line lags it."""
        if self.event_seq >= store_seq:
            self.behind_since = None
        elif self.behind_since is None:
            self.behind_since = now

    def lagging(self, now: float, seconds: float) -> bool:
        return self.behind_since is not None and now - self.behind_since > seconds

    def view(self, claims: QueueClaims) -> PersonView | None:
        """Where the holder of these claims stands, if they are waiting here."""
        score = self.places.get(claims.sub)
        if score is None or not self.synced or not self.plain:
            return None
        if self.lagging(time.monotonic(), MAX_LAG_SECONDS):
            return None
        if claims.incarnation and claims.incarnation != self.incarnation:
            return None  # the store says why (an earlier room of this name)
        self.used = time.monotonic()
        now = int(time.time() * 1000)
        return PersonView(
            position_id=claims.sub,
            state="waiting",
            rank=self.scores.bisect_left(score),
            total=len(self.scores),
            arrival=claims.arrival,
            size=claims.size,
            priority=claims.priority,
            admitted_at=0,
            claim_deadline=0,
            session_deadline=0,
            reason="",
            bind=claims.bind,
            room_status=self.status,
            release_rate=self.release_rate,
            session_ttl=0,
            heartbeat_interval=self.heartbeat_interval,
            target_url="",
            incarnation=self.incarnation,
            rate=self.rate,
            rate_ts=self.rate_ts,
            rate_since=self.rate_since,
            event_seq=self.event_seq,
            now=now,
            created=False,
            gone_rate=self.gone_rate,
            gone_rate_ts=self.gone_rate_ts,
            pace=self.pace,
        )


class LineBook:
    """The room lines of this gateway: started on first use, dropped when idle."""

    def __init__(self, store: RoomStore, nats: NatsLink) -> None:
        self.store = store
        self.nats = nats
        self.lines: dict[str, RoomLine] = {}
        self.answered = 0
        """People answered from memory (a figure for tests and metrics)."""
        self._subscriptions: dict[str, Any] = {}
        self._loading: set[str] = set()
        self._one_load = asyncio.Semaphore(1)
        """Lines are read and built one at a time: each may be a million places."""
        self._seen: dict[str, set[str]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._server = ""
        """The data store's run id at the last check ('' before the first)."""

    def view(self, room: str, claims: QueueClaims) -> PersonView | None:
        """The person's place from memory, or None (then ask the store)."""
        line = self.lines.get(room)
        if line is None:
            self._start(room)
            return None
        if not self._current(line):
            return None
        view = line.view(claims)
        if view is not None:
            self.answered += 1
        return view

    def wrote(self, room: str, view: PersonView) -> None:
        """This gateway changed a place in the store: its copy of the line follows now."""
        line = self.lines.get(room)
        if line is None:
            return
        if view.state != "waiting":  # out of the line, whatever incarnation it holds
            line.wrote(view)
            return
        if line.synced and view.incarnation != line.incarnation:
            # the store holds another room of this name (made again after a loss, its
            # events not heard here), or a place put back keeps its token's: load again
            line.synced = False
            self._spawn(self._load(room))
        line.wrote(view)

    def seen(self, room: str, position_ids: list[str]) -> None:
        """Heartbeats answered from memory: marked seen in the store in the next batch."""
        self._seen.setdefault(room, set()).update(position_ids)

    def _current(self, line: RoomLine) -> bool:
        nc = self.nats.nc
        if nc is None or not nc.is_connected:
            return False
        reconnects = int(nc.stats.get("reconnects", 0))
        if line.reconnects != reconnects:  # events were missed while NATS was away
            line.reconnects = reconnects
            line.synced = False
            self._spawn(self._load(line.room))
            return False
        return line.synced

    def _start(self, room: str) -> None:
        if self.nats.nc is None or not self.nats.connected:
            return
        self.lines[room] = RoomLine(room)
        self._spawn(self._subscribe_and_load(room))
        if self._ticker is None:
            self._ticker = self._spawn(self._tick())

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        # a context of its own: these outlive the request that started them
        task = asyncio.create_task(coro, context=contextvars.Context())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _subscribe_and_load(self, room: str) -> None:
        nc = self.nats.nc
        if nc is None:
            return
        line = self.lines[room]
        line.reconnects = int(nc.stats.get("reconnects", 0))

        async def on_event(msg: Any) -> None:
            self.heard(room, msg.data)

        try:
            self._subscriptions[room] = await nc.subscribe(
                f"{SUBJECT_PREFIX}.{room}.>", cb=on_event
            )
        except Exception as exc:
            log.warning("line_subscribe_failed", room=room, error=repr(exc))
            self.lines.pop(room, None)
            return
        await self._load(room)

    def heard(self, room: str, raw: bytes) -> None:
        """One of the room's events as NATS delivered it; a gap loads the line again."""
        line = self.lines.get(room)
        if line is not None and not line.hear(raw) and room not in self._loading:
            self._spawn(self._load(room))

    async def _load(self, room: str) -> None:
        """(Re)load a line from the store; events heard meanwhile are applied after. One
        of them asking for a fresh start loads it again (up to ``LOAD_TRIES`` times, then
        the line goes and the store answers; the next caller starts it again)."""
        line = self.lines.get(room)
        if line is None or room in self._loading:
            return
        self._loading.add(room)
        line.synced = False
        try:
            for _ in range(LOAD_TRIES):
                async with self._one_load:  # (a large line's answer and build are big)
                    if self.lines.get(room) is not line:
                        return  # dropped while it waited its turn
                    snapshot = await self.store.line_snapshot(room)
                    config_plain = await self._plain(room)
                    built = await asyncio.to_thread(build_line, snapshot)
                if self.lines.get(room) is not line:
                    return  # dropped meanwhile (the one after it is loaded in turn)
                line.plain = config_plain  # (a room update heard meanwhile then applies)
                if line.load(snapshot, built):
                    log.info("line_loaded", room=room, waiting=len(line.places), seq=line.event_seq)
                    return
            log.info("line_not_loaded", room=room, error="asked to load again each time")
            await self._drop(room, line)
        except Exception as exc:  # unknown room, store away: the store answers meanwhile
            log.info("line_not_loaded", room=room, error=repr(exc))
            await self._drop(room, line)
        finally:
            self._loading.discard(room)
            after = self.lines.get(room)
            if (
                after is not None
                and after is not line
                and not after.synced
                and room in self._subscriptions  # (else its subscribing loads it)
            ):
                self._spawn(self._load(room))  # started while this one was loading

    async def _plain(self, room: str) -> bool:
        found = await self.store.get_config(room)
        if found is None:
            return False
        return plain_order(msgspec.structs.asdict(found[0]))

    async def _tick(self) -> None:
        """Flush the gathered heartbeats; check each line against the store's event
        counter (one round trip for all); reload a line that lags too long; drop the lines
        nobody asked about lately."""
        while True:
            await asyncio.sleep(SEEN_FLUSH_SECONDS)
            await self.flush_seen()
            await self._check_lag()
            idle = time.monotonic() - IDLE_SECONDS
            for room in [r for r, line in self.lines.items() if line.used < idle]:
                await self._drop(room)

    async def _check_lag(self) -> None:
        try:
            counters = await self.store.event_counters(list(self.lines))
            server = await self.store.server_id()
        except Exception as exc:
            log.warning("line_check_failed", error=repr(exc))
            return
        # a store that restarted or was replaced may hold an older state than the lines
        # here (changes this gateway made, lost with it): every line loads again from it
        restarted, self._server = self._server not in ("", server), server
        now = time.monotonic()
        for room, store_seq in counters.items():
            line = self.lines.get(room)
            if line is None or not line.synced:
                continue
            if restarted or store_seq < line.event_seq:
                line.synced = False  # the store answers until the line is loaded again
                self._spawn(self._load(room))
                continue
            line.checked(store_seq, now)
            if line.lagging(now, RELOAD_AFTER_SECONDS):
                line.behind_since = now  # reload at most every RELOAD_AFTER_SECONDS
                self._spawn(self._load(room))

    async def flush_seen(self) -> None:
        batches, self._seen = self._seen, {}
        for room, position_ids in batches.items():
            try:
                await self.store.touch_seen(room, sorted(position_ids))
            except Exception as exc:
                log.warning("seen_flush_failed", room=room, error=repr(exc))

    async def _drop(self, room: str, line: RoomLine | None = None) -> None:
        """Forget the room's line (only if it is still ``line``, when given)."""
        if line is not None and self.lines.get(room) is not line:
            return
        self.lines.pop(room, None)
        subscription = self._subscriptions.pop(room, None)
        if subscription is not None:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def close(self) -> None:
        await self.flush_seen()
        for room in list(self.lines):
            await self._drop(room)
        for task in list(self._tasks):
            await cancel_and_wait(task)
