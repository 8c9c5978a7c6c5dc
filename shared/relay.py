"""The outbox relay: publishes each room's outbox to JetStream and trims only after the ack.

``Nats-Msg-Id`` is the event id, so an event published twice (a retry, or a replica that
lost its lease mid-batch) is stored once. A batch is published pipelined (every publish
sent, then the acks awaited in order), so the stream holds a room's events in ``seq``
order at a fraction of a round trip each; the first new event of a batch carries the
room's last stream sequence as an expectation (``Nats-Expected-Last-Subject-Sequence``
over the room's subjects), so two relays can never interleave a room's events.

Before it publishes a room for the first time (after taking its lease, after the data
store restarted or was replaced, after NATS came back) the relay compares the room's last
event on the stream with the store: a store behind the stream is caught up from it
(shared/catchup.py) before anything it made is published. While publishing, an ack that
says ``duplicate`` for an event whose stored payload differs means the same: the store
made another history with ids the stream has, and the room is caught up. The trim is
fenced: only the holder of the room's relay lease may drop what was delivered.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass

import msgspec
import structlog
from nats.js import JetStreamContext
from nats.js.errors import APIError
from redis.exceptions import RedisError

from shared.catchup import OutboxTrim, catch_up
from shared.errors import RoomNotFound, RoomRecovering, SnapshotUnreadable, StoreUnavailable
from shared.events import SUBJECT_PREFIX, room_subjects, subject
from shared.js_publish import BatchPublisher, Message
from shared.nats_link import NatsLink
from shared.store import RoomStore
from shared.store.snapshot_read import snapshot_seq
from shared.stream_reads import (
    LastEvent,
    Manifest,
    event_rooms,
    last_event,
    last_manifest,
    publish_manifest,
    publish_snapshot_parts,
)
from shared.tasks import cancel_and_wait
from shared.worker_metrics import WorkerMetrics

log = structlog.get_logger("relay")

WRONG_LAST_SEQUENCE = 10071


class StoreBehind(Exception):
    """The store made events the stream holds another version of (or is behind it)."""


@dataclass
class RoomTrack:
    """What the relay knows of a room's stream since it verified it under ``fence``."""

    fence: int
    stream_last: int
    """Stream sequence of the room's last event on the stream (0: none)."""
    last_seq: int
    """The room's last event seq on the stream."""
    snapshot_seq: int = 0
    snapshot_at: float = 0.0
    pending: Manifest | None = None
    """A snapshot whose parts are stored, published once its seq is delivered."""
    people: int = 0
    people_at: float = float("-inf")


@dataclass(frozen=True)
class SnapshotPolicy:
    """When a room is snapshotted: after ``every_events`` events, or ``every_seconds``
    after the last snapshot if it changed meanwhile (so every room that changes has a
    snapshot on the stream younger than that; the stream's retention relies on it). A
    snapshot reads the whole room in one transaction, holding the store for a time that
    grows with the room (32-110 ms at 100,000-200,000 people; snapshot_read.py), so by
    events a room of more than
    twice ``every_events`` people waits longer: for half as many events as it holds
    people (a room that only grew: as many as it held at its last snapshot). The store
    then copies about two records per event for snapshots, whatever the room's size,
    plus one snapshot per ``every_seconds``."""

    every_events: int = 10_000
    every_seconds: float = 300.0

    def due(self, since: int, elapsed: float, people: int = 0) -> bool:
        """Whether a room of ``people`` is due, ``since`` events and ``elapsed`` seconds
        after its last snapshot. With ``people`` 0 (not counted yet), whether it may be."""
        if since <= 0:
            return False
        return since >= max(self.every_events, people // 2) or elapsed >= self.every_seconds


class OutboxRelay:
    """While NATS is away the outboxes grow; past ``outbox_max`` entries a room's backlog
    is logged (every ``WARN_EVERY`` seconds) and new joins are refused with
    ``events_backlog``, but nothing is dropped. A room whose publish failed is retried
    with backoff."""

    WARN_EVERY = 10.0
    ACK_TIMEOUT = 5.0
    DRAIN_SECONDS = 0.5
    PEOPLE_COUNT_SECONDS = 5.0
    """How long one drain goes on publishing full batches before it lets the loop on."""

    def __init__(
        self,
        store: RoomStore,
        link: NatsLink,
        *,
        holder: str = "relay",
        lease_ms: int = 5000,
        batch: int = 512,
        outbox_max: int = 100_000,
        outbox_age_alert: float = 30.0,
        snapshots: SnapshotPolicy | None = None,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.link = link
        self.holder = holder
        self.lease_ms = lease_ms
        self.batch = batch
        self.outbox_max = outbox_max
        self.outbox_age_alert = outbox_age_alert
        self.snapshots = snapshots or SnapshotPolicy()
        self.tracks: dict[str, RoomTrack] = {}
        self._retry: dict[str, tuple[float, float]] = {}  # room -> (not before, backoff)
        self._warned: dict[str, float] = {}
        self._store_id = ""
        self._store_id_at = 0.0
        self._link_generation = -1

    @property
    def stream(self) -> str:
        return self.link.stream

    async def drain(self, room: str, fence: int = 0) -> int:
        """Publish the room's outbox (full batches for up to ``DRAIN_SECONDS``); answers
        how many events were delivered."""
        now = time.monotonic()
        not_before, backoff = self._retry.get(room, (0.0, 0.0))
        if now < not_before:
            return 0
        js = await self.link.jetstream()
        publisher = await self.link.publisher() if js is not None else None
        if js is None or publisher is None:
            await self._watch_backlog(room)
            return 0
        delivered = 0
        try:
            await self._forget_if_changed()
            read = await self.store.outbox_read(room, self.batch)  # one round trip for both
            owner = read.recovering
            first: list[tuple[str, str]] | None = read.entries
            if owner not in (None, "relay"):
                raise RoomRecovering()  # `waitroom recover` owns it, or a gap stopped it
            track = self.tracks.get(room)
            if owner == "relay" or track is None or track.fence != fence:
                # a catch-up cut short (a relay died, the store went away) is done again
                track = self.tracks[room] = await self._verify(
                    js, room, fence, redo=owner == "relay"
                )
                first = None  # (a catch-up changes the outbox: read it again)
            until = time.monotonic() + self.DRAIN_SECONDS
            while True:
                if first is None:
                    entries = await self.store.outbox_batch(room, self.batch)
                else:
                    entries, first = first, None
                sent, full = await self._publish_batch(js, publisher, room, track, entries)
                delivered += sent
                if not full or time.monotonic() > until:
                    break
            await self._snapshot_if_due(js, room, track)
            self._retry.pop(room, None)
        except (RoomRecovering, RoomNotFound):
            self.tracks.pop(room, None)
        except StoreBehind:
            self.tracks.pop(room, None)  # caught up on the next drain, after a verify
        except APIError as exc:
            self.tracks.pop(room, None)
            self._back_off(room, backoff, exc, delivered)
        except (TimeoutError, ConnectionError, OSError) as exc:
            self._back_off(room, backoff, exc, delivered)
        return delivered

    async def drain_all(self, room: str, fence: int = 0, attempts: int = 1000) -> None:
        """Deliver everything a room's outbox holds (at shutdown), while NATS answers."""
        for _ in range(attempts):
            if await self.drain(room, fence) == 0:
                return

    async def outbox_age(self, room: str) -> float:
        """Seconds the room's oldest undelivered event has waited (the loss window)."""
        return await self.store.outbox_age(room)

    # checks ---------------------------------------------------------------------------
    async def _forget_if_changed(self) -> None:
        """A data store that restarted (or was replaced) or a NATS that reconnected may be
        out of step: every room is verified again before its next publish."""
        generation = self.link.generation
        now = time.monotonic()
        if now - self._store_id_at > 0.05:
            self._store_id_at = now
            store_id = await self.store.server_id()
            if store_id != self._store_id or generation != self._link_generation:
                if self._store_id:
                    log.info("relay_reverifies", store_changed=store_id != self._store_id)
                self.tracks.clear()
                if store_id != self._store_id:
                    await self._adopt_missing_rooms()
                self._store_id, self._link_generation = store_id, generation

    async def _adopt_missing_rooms(self) -> None:
        """Rooms alive on the stream that the store does not know at all (it came back
        from before they were made) are listed again: their relay then finds the store
        behind the stream and catches them up."""
        js = await self.link.jetstream()
        if js is None:
            return
        known = set(await self.store.rooms()) | set(await self.store.draining_rooms())
        for room in sorted(await event_rooms(js, self.stream, SUBJECT_PREFIX) - known):
            last = await last_event(js, self.stream, room)
            if last is None or _head.decode(last.data).type == "room_deleted":
                continue
            log.warning("room_missing_from_store", room=room, stream_seq=last.seq)
            await self.store.index.add(room)

    async def _verify(
        self, js: JetStreamContext, room: str, fence: int, *, redo: bool = False
    ) -> RoomTrack:
        """Compare the room's last event on the stream with the store; catch the store up
        when it is behind (or ``redo`` a catch-up cut short). Answers what the relay may
        rely on from now."""
        track = await self._tracked(js, room, fence)
        last = await last_event(js, self.stream, room)
        store_seq = await self.store.event_seq(room)
        if last is None:
            if redo:
                await self.store.mark_recovering([room], on=False, owner="relay")
            return track
        head = await self.store.outbox_batch(room, 1)
        head_seq = _seq_of(head[0][1]) if head else store_seq + 1
        trim = OutboxTrim(self.store, room, self.holder, fence, self.lease_ms)
        if redo:
            await self._catch_up(js, room, last, trim, track)
        elif head and head_seq <= last.seq and last.seq <= store_seq:
            entries = await self.store.outbox_batch(room, last.seq - head_seq + 1)
            same = [
                e for e, raw in entries if _seq_of(raw) == last.seq and raw.encode() == last.data
            ]
            if not same:
                await self._catch_up(js, room, last, trim, track)
            # else delivered before a restart, not trimmed: the same history
            await trim([e for e, raw in entries if _seq_of(raw) <= last.seq])
        elif store_seq < last.seq:
            await self._catch_up(js, room, last, trim, track)
        elif head_seq > last.seq + 1:
            log.error(
                "stream_gap",
                room=room,
                after=last.seq,
                next=head_seq,
                hint="the stream lost events the store had delivered; recover needs --accept-gap",
            )
        track.stream_last, track.last_seq = last.stream_seq, last.seq
        return track

    async def _tracked(self, js: JetStreamContext, room: str, fence: int) -> RoomTrack:
        track = RoomTrack(fence, 0, 0)
        try:
            manifest = await last_manifest(js, self.stream, room)
        except SnapshotUnreadable as exc:  # as if none: a new one is taken in due course
            log.error("snapshot_unreadable", room=room, error=str(exc))
            manifest = None
        if manifest is not None:
            age = max(0.0, time.time() - manifest.ts)
            track.snapshot_seq, track.snapshot_at = manifest.seq, time.monotonic() - age
        return track

    async def _catch_up(
        self, js: JetStreamContext, room: str, last: LastEvent, trim: OutboxTrim, track: RoomTrack
    ) -> None:
        keeper = asyncio.create_task(self._keep_lease(room, track.fence))
        try:
            report = await catch_up(self.store, js, self.stream, room, last, trim=trim)
        finally:
            await cancel_and_wait(keeper)
        if report.stop is not None:
            raise RoomRecovering()  # stays marked until an operator recovers it
        if report.passed_over:  # the latest snapshot cannot be read: a new one is due now
            track.snapshot_seq = 0
            track.snapshot_at = time.monotonic() - self.snapshots.every_seconds

    async def _keep_lease(self, room: str, fence: int) -> None:
        """Renew the room's lease while it is caught up: a big room's catch-up outlasts a
        lease (the room loop renews only between ticks), and another relay taking it over
        meanwhile would start a catch-up beside this one, each wiping the other's work."""
        try:
            while True:
                await asyncio.sleep(self.lease_ms / 4000)
                [held] = await self.store.lease_attempts(
                    [room], "relay", self.holder, self.lease_ms
                )
                if held != fence:
                    log.warning("lease_lost", role="relay", room=room, fence=fence, now=held)
                    return
        except (StoreUnavailable, RedisError, OSError) as exc:  # the catch-up fails too
            log.warning("lease_renewal_failed", room=room, error=repr(exc))

    # publishing -----------------------------------------------------------------------
    async def _publish_batch(
        self,
        js: JetStreamContext,
        publisher: BatchPublisher,
        room: str,
        track: RoomTrack,
        entries: list[tuple[str, str]],
    ) -> tuple[int, bool]:
        """One batch, the outbox's oldest ``entries``, pipelined (every event published,
        then the acks awaited at once and taken in order); answers (delivered, whether the
        batch was full)."""
        if not entries:
            return 0, False
        heads = [_head.decode(raw) for _entry_id, raw in entries]
        messages: list[Message] = []
        expect = True
        for head, (_entry_id, raw) in zip(heads, entries, strict=True):
            headers = {"Nats-Msg-Id": head.id}
            if expect and head.seq > track.last_seq:
                headers["Nats-Expected-Last-Subject-Sequence"] = str(track.stream_last)
                headers["Nats-Expected-Last-Subject-Sequence-Subject"] = room_subjects(room)
                expect = False
            messages.append((subject(room, head.type), raw.encode(), headers))
        written = time.time()
        outcomes = await publisher.publish(messages, self.ACK_TIMEOUT)
        done: list[tuple[str, str]] = []
        lags: list[float] = []
        outbox_changed = False
        try:
            # the first ack that failed (or is still missing at the timeout) ends the batch
            for head, (entry_id, raw), (_subject, payload, _headers), ack in zip(
                heads, entries, messages, outcomes, strict=True
            ):
                if ack is None:
                    raise TimeoutError("no ack from JetStream")
                if isinstance(ack, BaseException):
                    raise ack
                if ack.duplicate:
                    stored = await js.get_msg(self.stream, ack.seq)
                    if stored.data != payload:
                        log.error("relay_duplicate_differs", room=room, seq=head.seq)
                        raise StoreBehind()
                else:
                    if head.seq != track.last_seq + 1 and track.last_seq:
                        log.error("stream_gap", room=room, after=track.last_seq, next=head.seq)
                    track.stream_last = ack.seq
                track.last_seq = max(track.last_seq, head.seq)
                done.append((entry_id, raw))
                if head.ts:
                    lags.append(head.ts)
        finally:
            if self.metrics is not None and lags:
                acked = time.time()
                observe = self.metrics.relay_lag.observe
                for written_at in lags:
                    observe(max(0.0, acked - written_at))
            if done:  # the batch's first len(done) entries: the outbox's oldest
                trimmed = await self.store.outbox_delivered_through(
                    room, done, holder=self.holder, fence=track.fence, lease_ms=self.lease_ms
                )
                if trimmed < 0:  # the outbox is not the one read (a store failed over)
                    log.warning("relay_outbox_changed", room=room)
                    self.tracks.pop(room, None)  # verified again before the next publish
                    outbox_changed = True
                log.debug("relay_published", room=room, count=len(done), took=time.time() - written)
                if self.metrics is not None:
                    self.metrics.relay_published.labels(room).inc(len(done))
        if outbox_changed:  # (raised here, not in the finally: an ack's error goes first)
            raise StoreBehind()
        return len(done), len(entries) == self.batch

    async def _snapshot_if_due(self, js: JetStreamContext, room: str, track: RoomTrack) -> None:
        """Take a snapshot when enough events or time went by; publish its manifest once
        the events up to its seq are on the stream."""
        pending = track.pending
        if pending is not None:
            if track.last_seq >= pending.seq:
                await publish_manifest(js, pending)
                track.pending = None
                track.snapshot_seq, track.snapshot_at = pending.seq, time.monotonic()
            return
        if track.snapshot_at == 0.0:
            track.snapshot_at = time.monotonic()  # first sight: count from now
        since = track.last_seq - track.snapshot_seq
        elapsed = time.monotonic() - track.snapshot_at
        if not self.snapshots.due(since, elapsed):
            return
        if elapsed < self.snapshots.every_seconds:
            # by events only; a count kept from a moment ago may say no, a yes is
            # checked with a fresh one
            if not self.snapshots.due(since, elapsed, await self._people(room, track)):
                return
            people = await self._people(room, track, fresh=True)
            if not self.snapshots.due(since, elapsed, people):
                return
        stream_from = (await js.stream_info(self.stream)).state.last_seq + 1
        state = await self.store.snapshot(room)
        seq = snapshot_seq(state)
        snap_id = f"{room}:snap:{seq}:{uuid.uuid4().hex[:8]}"
        first, parts = await publish_snapshot_parts(js, room, state, snap_id)
        track.pending = Manifest(room, seq, stream_from, first, parts, snap_id, time.time())
        log.info("snapshot_taken", room=room, seq=seq, bytes=len(state), parts=parts)

    async def _people(self, room: str, track: RoomTrack, *, fresh: bool = False) -> int:
        """The room's people (waiting, pre-queued, admitted, active), counted at most
        every PEOPLE_COUNT_SECONDS, or ``fresh`` (counted now: a count from a moment ago
        may be from before the joins that made the snapshot look due)."""
        now = time.monotonic()
        if fresh or now - track.people_at >= self.PEOPLE_COUNT_SECONDS:
            figures = await self.store.figures(room)
            track.people = figures.waiting + figures.prequeue + figures.admitted + figures.active
            track.people_at = now
        return track.people

    def _back_off(self, room: str, backoff: float, exc: BaseException, delivered: int) -> None:
        backoff = min(max(backoff * 2, 0.1), 5.0)
        self._retry[room] = (time.monotonic() + backoff * (0.5 + random.random()), backoff)
        log.warning(
            "relay_publish_failed",
            room=room,
            error=repr(exc),
            delivered=delivered,
            retry_in=round(backoff, 2),
        )

    async def _watch_backlog(self, room: str) -> None:
        backlog = await self.store.outbox_length(room)
        now = time.monotonic()
        if now - self._warned.get(room, 0.0) <= self.WARN_EVERY:
            return
        age = await self.store.outbox_age(room)
        if backlog > self.outbox_max or age > self.outbox_age_alert:
            self._warned[room] = now
            log.warning(
                "outbox_over_bound",
                room=room,
                backlog=backlog,
                bound=self.outbox_max,
                oldest_seconds=round(age, 1),
            )


class _Head(msgspec.Struct):
    type: str
    id: str
    seq: int
    ts: float = 0.0


_head = msgspec.json.Decoder(_Head)


def _seq_of(raw: str) -> int:
    return _head.decode(raw).seq
