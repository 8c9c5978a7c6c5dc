"""Rebuilding rooms from the event stream into an empty (or older) data store.

Every room the stream knows is marked ``recovering`` first: every other change to it is
refused (503 room_recovering) until it is rebuilt, while gateways keep serving the other
rooms. A room whose latest snapshot (shared/stream_reads.py) is ahead of what the store
holds starts from it (one that cannot be read is passed over for the one before it, or
the whole stream: shared/catchup.py ``restore_newest``; a room whose snapshot is of a
later version stops). Then the stream is read once, in order, from the earliest point any
room needs; replay.lua applies each event and skips what a room has already (by its event
counter), so running recovery twice gives the same state.

A gap (the stream lacks seqs of a room, or names a place it never made) stops that room
there: it stays marked and is reported (room, the last seq it has, the next the stream
holds) while every other room is finished. ``accept_gap`` goes on past gaps instead,
noting each. At the end every rebuilt room is compared with the stream: the report says,
per room, what the store held before, the last seq on the stream, and where they differ.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import structlog
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from shared import nats_client
from shared.catchup import TOO_NEW, restore_newest, stop_hint
from shared.errors import SnapshotTooNew
from shared.events import SUBJECT_PREFIX
from shared.store import RoomStore
from shared.store.lane import CallsLost
from shared.store.views import Gap, ReplayMode, ReplayResult, ReplayStop
from shared.stream_reads import (
    READ_AHEAD,
    Chunk,
    event_rooms,
    read_events,
    snapshot_rooms,
)

log = structlog.get_logger("recovery")

Progress = Callable[[int, int], None]
"""Called with (events done, events in all) as the replay goes."""


class _Head(msgspec.Struct):
    room: str
    type: str
    seq: int


_head = msgspec.json.Decoder(_Head)


@dataclass
class RoomReport:
    """One room's recovery: ``store_seq`` the event counter the store held before,
    ``snapshot_seq`` where a snapshot put it (0: none used), ``stream_seq`` the last seq of
    the room on the stream, ``seq`` the counter after."""

    room: str
    store_seq: int = 0
    snapshot_seq: int = 0
    passed_over: int = 0
    """Snapshots of the room that could not be read (the one before each was tried)."""
    stream_seq: int = 0
    seq: int = 0
    gaps: list[Gap] = field(default_factory=list)
    orphans: int = 0
    conflicts: int = 0
    stop: ReplayStop | None = None

    @property
    def ahead(self) -> int:
        """Events the store had that the stream lacks (its relay delivers them later)."""
        return max(0, self.store_seq - self.stream_seq)


@dataclass
class RecoverySummary:
    events: int = 0
    applied: int = 0
    skipped: int = 0
    rooms: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)
    reports: dict[str, RoomReport] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def stopped(self) -> list[RoomReport]:
        return [r for r in self.reports.values() if r.stop is not None]


async def recover(
    store: RoomStore,
    nats_url: str,
    *,
    stream: str = "WAITROOM",
    batch: int = 2000,
    nats_options: dict[str, Any] | None = None,
    progress: Progress | None = None,
    accept_gap: bool = False,
    use_snapshots: bool = True,
) -> RecoverySummary:
    started = time.perf_counter()
    summary = RecoverySummary()
    servers = [u.strip() for u in nats_url.split(",") if u.strip()]
    nc = await nats_client.connect(
        servers=servers, connect_timeout=5, max_reconnect_attempts=3, **(nats_options or {})
    )
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        first = info.state.first_seq
        last = await _last_event_seq(js, stream)  # snapshots may come after it
        rooms = await event_rooms(js, stream, SUBJECT_PREFIX) | await snapshot_rooms(js, stream)
        rooms |= set(await store.rooms())
        summary.rooms = set(rooms)
        await _mark(store, sorted(rooms))
        start = first
        if use_snapshots and rooms:
            start = await _from_snapshots(store, js, stream, sorted(rooms), summary, first, last)
        else:
            for room in rooms:
                summary.reports[room] = RoomReport(room, store_seq=await store.event_seq(room))
        if last and start <= last:
            await _read_and_apply(
                js, stream, store, summary, start, last, batch, progress, accept_gap
            )
        for room in rooms:
            summary.reports[room].seq = await store.event_seq(room)
    finally:
        await nc.close()
    await store.end_recovery(
        sorted(r for r in summary.rooms if summary.reports[r].stop is None), summary.deleted
    )
    summary.seconds = time.perf_counter() - started
    _log_summary(summary)
    return summary


async def _mark(store: RoomStore, rooms: list[str], wait: float = 30.0) -> None:
    """Mark every room for the replay; a room a relay is catching up is waited for (up to
    ``wait`` seconds: a relay that died mid-way leaves its mark, which is then taken)."""
    deadline = time.monotonic() + wait
    held = await store.mark_recovering(rooms)
    while held and time.monotonic() < deadline:
        log.info("recovery_waits_for_relay", rooms=sorted(held))
        await asyncio.sleep(0.2)
        held = await store.mark_recovering(sorted(held))
    if held:
        await store.mark_recovering(sorted(held), take=True)


async def _last_event_seq(js: JetStreamContext, stream: str) -> int:
    """The stream sequence of the last event (0 when the stream holds none)."""
    try:
        return int((await js.get_last_msg(stream, f"{SUBJECT_PREFIX}.>")).seq or 0)
    except NotFoundError:
        return 0


async def _from_snapshots(
    store: RoomStore,
    js: JetStreamContext,
    stream: str,
    rooms: list[str],
    summary: RecoverySummary,
    first: int,
    last: int,
) -> int:
    """Restore each room whose latest snapshot is ahead of the store; answers the stream
    sequence the read must start at."""
    start = last + 1
    for room in rooms:
        report = summary.reports[room] = RoomReport(room, store_seq=await store.event_seq(room))
        try:
            restored = await restore_newest(store, js, stream, room, above=report.store_seq)
        except SnapshotTooNew as exc:  # this room stops here (its events are not applied)
            report.stop = ReplayStop(TOO_NEW)
            log.error("snapshot_too_new", room=room, error=str(exc), hint=stop_hint(report.stop))
            continue
        report.passed_over = restored.passed_over
        if restored.snapshot is not None:
            report.snapshot_seq = restored.snapshot.manifest.seq
            start = min(start, restored.snapshot.manifest.stream_from)
        else:
            start = first  # this room needs the stream from the start
    return max(first, start)


async def _read_and_apply(
    js: JetStreamContext,
    stream: str,
    store: RoomStore,
    summary: RecoverySummary,
    start: int,
    last: int,
    batch: int,
    progress: Progress | None,
    accept_gap: bool,
) -> None:
    """Read the stream from ``start`` through ``last`` and apply it; the read goes on
    while a chunk is applied. ``batch``: most events per chunk applied at once."""
    total = last - start + 1
    applier = _Applier(store, summary, accept_gap)

    async def handle(chunk: Chunk) -> None:
        for i in range(0, len(chunk), batch):
            await applier.feed(chunk[i : i + batch])
        if progress is not None:
            progress(min(summary.events, total), total)

    try:
        # chunks of a whole batch: a script call has a cost of its own, so a few events per
        # call (when the read is slower than the apply) would spend the data store's time
        await read_events(
            js, stream, f"{SUBJECT_PREFIX}.>", start, last, handle, least=min(batch, READ_AHEAD)
        )
        await applier.finish()
    finally:
        applier.abandon()


@dataclass
class _Part:
    """A chunk of the stream made ready to apply: one run of events per room."""

    runs: dict[str, list[bytes]]
    events: int
    last_kind: dict[str, str]
    """Per room, the part's last deletion or re-creation (``room_deleted``/``room_updated``)."""


class _Applier:
    """Applies parts of the stream in order; their results are taken in the same order.

    With the store's lane (one connection: a call runs after every call made before it)
    and in strict mode, the next part is sent while the one before it is still being
    applied, so the data store does not wait while this process reads the next answer
    and packs the next call: two calls on their way at most. A room that stops in a part
    may then be sent events of the next part; in strict mode its call stops again at its
    first event without changing anything (a later event is past the room's gap), and
    that second stop is not taken. ``accept_gap`` would apply them (it goes past gaps), so
    it sends one part at a time, as does a store without a lane. A call on its way is
    never retried by itself: when the connection breaks or the store has lost the script,
    the parts on their way run again in order (``_run_again``)."""

    def __init__(self, store: RoomStore, summary: RecoverySummary, accept_gap: bool) -> None:
        self.store = store
        self.summary = summary
        self.mode: ReplayMode = "accept_gap" if accept_gap else "strict"
        self.ahead = 2 if store.lane is not None and not accept_gap else 1
        self.warm = False
        """Whether a replay call has run (the script is loaded)."""
        self.sent: list[tuple[_Part, asyncio.Future[dict[str, ReplayResult]] | None]] = []

    async def feed(self, events: Chunk) -> None:
        part = _prepare(events, self.summary)
        # the first call alone (a store that has not loaded the script loads it), the rest
        # ahead of their answers and never retried on their own (see _run_again)
        replay = self.store.replay_ahead if self.warm and self.ahead > 1 else self.store.replay
        call = asyncio.ensure_future(replay(part.runs, self.mode)) if part.runs else None
        self.sent.append((part, call))
        while len(self.sent) >= (self.ahead if self.warm else 1):
            await self._take_oldest()
        self.warm = self.warm or call is not None  # (if not warm, this call has run)

    async def finish(self) -> None:
        while self.sent:
            await self._take_oldest()

    def abandon(self) -> None:
        """Calls still on their way when the read failed: their answers are not taken."""
        for _part, call in self.sent:
            if call is not None:
                call.cancel()
                call.add_done_callback(_drop_answer)
        self.sent.clear()

    async def _take_oldest(self) -> None:
        part, call = self.sent.pop(0)
        try:
            results = await call if call is not None else {}
        except CallsLost:
            await self._run_again(part)
            return
        _take(part, results, self.summary)

    async def _run_again(self, part: _Part) -> None:
        """The connection broke (or the server lost the script) with calls on their way:
        some may have run, in an order no longer known. Once every call on its way has
        settled, the part and every part sent behind it run again, one at a time (a
        replay skips what a room has already, and a room's stop comes out as it would;
        what such a part had applied is then counted as already there)."""
        behind, self.sent = self.sent, []
        for _part, call in behind:
            if call is not None:
                with contextlib.suppress(Exception):
                    await call
        log.warning("replay_calls_lost", parts=1 + len(behind))
        for again in (part, *(p for p, _call in behind)):
            results = await self.store.replay(again.runs, self.mode) if again.runs else {}
            _take(again, results, self.summary)


def _drop_answer(call: asyncio.Future[dict[str, ReplayResult]]) -> None:
    if not call.cancelled():
        call.exception()  # (retrieved: no "never retrieved" warning)


def _prepare(events: Chunk, summary: RecoverySummary) -> _Part:
    """One run per room, in stream order: rooms are independent, so only the order of each
    room's own events matters, and that is kept. A room that stopped at a gap gets none
    of its later events."""
    runs: dict[str, list[bytes]] = {}
    last_kind: dict[str, str] = {}
    for _seq, data in events:
        head = _head.decode(data)
        report = summary.reports.get(head.room)
        if report is None:
            report = summary.reports[head.room] = RoomReport(head.room)
        summary.rooms.add(head.room)
        if head.seq > report.stream_seq:
            report.stream_seq = head.seq
        if report.stop is not None:
            continue
        if head.type in ("room_deleted", "room_updated"):
            last_kind[head.room] = head.type
        run = runs.get(head.room)
        if run is None:
            runs[head.room] = [data]
        else:
            run.append(data)
    return _Part(runs, len(events), last_kind)


def _take(part: _Part, results: dict[str, ReplayResult], summary: RecoverySummary) -> None:
    """A part's results, in the order the parts were made ready. Rooms that stopped in an
    earlier part (after this one was made ready) keep their first stop and nothing of
    this part counts for them."""
    summary.events += part.events
    for room, kind in part.last_kind.items():
        if summary.reports[room].stop is not None:
            continue
        if kind == "room_deleted":
            summary.deleted.add(room)
        else:
            summary.deleted.discard(room)
    for room, result in results.items():
        report = summary.reports[room]
        if report.stop is not None:
            continue
        summary.applied += result.applied
        summary.skipped += result.skipped + result.conflicts
        report.gaps += result.gap_list
        report.orphans += result.orphans
        report.conflicts += result.conflicts
        if result.stop is not None:
            report.stop = result.stop
            log.error(
                "recovery_gap",
                room=room,
                kind=result.stop.kind,
                after=result.stop.after,
                next=result.stop.next,
                event_id=result.stop.id,
            )


def _log_summary(summary: RecoverySummary) -> None:
    log.info(
        "recovered",
        events=summary.events,
        applied=summary.applied,
        skipped=summary.skipped,
        rooms=len(summary.rooms),
        stopped=len(summary.stopped),
        seconds=round(summary.seconds, 3),
    )


def describe(report: RoomReport) -> str:
    """One line for an operator about a room's recovery."""
    parts = [f"{report.room}: store had seq {report.store_seq}, stream has {report.stream_seq}"]
    if report.passed_over:
        parts.append(f"{report.passed_over} unreadable snapshot(s) passed over")
    if report.snapshot_seq:
        parts.append(f"from snapshot at {report.snapshot_seq}")
    if report.ahead:
        parts.append(f"the store was {report.ahead} events ahead of the stream (not yet delivered)")
    if report.gaps:
        parts.append(
            "gaps accepted: " + ", ".join(f"{g.after + 1}..{g.next - 1}" for g in report.gaps)
        )
    if report.orphans:
        parts.append(f"{report.orphans} events named places lost in a gap")
    if report.conflicts:
        parts.append(f"{report.conflicts} events did not fit the state and were skipped")
    stop = report.stop
    if stop is not None:
        if stop.kind == "gap":
            parts.append(
                f"STOPPED: seqs {stop.after + 1}..{stop.next - 1} are missing on the stream "
                f"(the room has {stop.after}); it stays recovering (503) until "
                "`waitroom recover --accept-gap`"
            )
        elif stop.kind == TOO_NEW:
            parts.append(
                "STOPPED: its latest snapshot is of a later version; it stays recovering "
                "(503): run that version, or `waitroom recover --no-snapshots`"
            )
        else:
            parts.append(
                f"STOPPED at event {stop.id}: {stop.kind}; it stays recovering (503) until "
                "`waitroom recover --accept-gap`"
            )
    return "; ".join(parts)
