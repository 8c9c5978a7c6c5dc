"""Catching a room up with the stream when its data store is behind it.

A store that comes back older than the stream (killed with AOF everysec, a snapshot
reloaded, a failover to a lagging replica, a room made again after a loss without
`waitroom recover`) holds a room whose event counter is below the stream's. Its next
events would reuse ids the stream already holds (JetStream would drop them as duplicates)
and move ``seq`` backwards. The relay notices before it publishes (shared/relay.py) and
calls ``catch_up``: the room is marked recovering (every other change waits, 503
room_recovering), its state is rebuilt from its latest snapshot and the stream's events
after it, and the events the older store made meanwhile (a fork: same seqs, another
history) are put on top as new events where they still apply — someone who joined keeps a
place at their arrival, an admission still due is made, a pause is applied again. Events
of the outbox that the stream holds already, identical, are simply dropped.

A snapshot that cannot be read (its state corrupt, cut short, or of a later version) is
passed over for the room's whole stream (``restored``), here and in `waitroom recover`: the
room is rebuilt from its first event, or stops at the gap retention left, reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from nats.js import JetStreamContext
from redis.exceptions import InvalidResponse

from shared.errors import RoomRecovering
from shared.scripts import ScriptError
from shared.store import RoomStore
from shared.store.views import ReplayResult, ReplayStop
from shared.stream_reads import LastEvent, Snapshot, event_seq_of, latest_snapshot, room_events

log = structlog.get_logger("catchup")

REPLAY_CHUNK = 500
UNREADABLE = (InvalidResponse, ScriptError)
"""What a restore raises for a snapshot it cannot read: a raw one not whole or naming
answers this version does not know; JSON room_restore.lua cannot decode or apply."""


async def restored(store: RoomStore, room: str, snapshot: Snapshot) -> bool:
    """Restore ``room`` from ``snapshot``; False (logged) when the snapshot cannot be read,
    for the caller to rebuild the room from its whole stream instead. (Its state may then
    be half restored: room_restore.lua decodes before it changes anything, but a decoded
    snapshot lacking a part fails on the way.)"""
    try:
        await store.restore(room, snapshot.state)
    except UNREADABLE as exc:
        log.error(
            "snapshot_unreadable",
            room=room,
            seq=snapshot.manifest.seq,
            snapshot=snapshot.manifest.snap_id,
            error=repr(exc),
            hint="the room is rebuilt from its whole stream instead",
        )
        return False
    return True


@dataclass
class CatchUpReport:
    room: str
    store_seq: int
    """The room's event counter in the store before (what it had kept)."""
    stream_seq: int
    """The room's last seq on the stream (what the record holds)."""
    replayed: int = 0
    forked: int = 0
    """Events the older store made that the stream does not hold."""
    reapplied: int = 0
    dropped: int = 0
    """Outbox events the stream held already (identical)."""
    stop: ReplayStop | None = None


async def replay_chunks(
    store: RoomStore, room: str, events: list[bytes], mode: str
) -> tuple[int, ReplayStop | None]:
    applied = 0
    for i in range(0, len(events), REPLAY_CHUNK):
        results: dict[str, ReplayResult] = await store.replay(
            {room: events[i : i + REPLAY_CHUNK]},
            mode,  # type: ignore[arg-type]
        )
        result = results[room]
        applied += result.applied
        if result.stop is not None:
            return applied, result.stop
    return applied, None


async def catch_up(
    store: RoomStore,
    js: JetStreamContext,
    stream: str,
    room: str,
    last: LastEvent,
    *,
    trim: OutboxTrim,
) -> CatchUpReport:
    """Rebuild ``room`` from the stream (up to ``last``) and put the fork on top. A gap in
    the stream leaves the room recovering, reported (``stop``), for `waitroom recover
    --accept-gap`."""
    if await store.mark_recovering([room], owner="relay"):
        raise RoomRecovering()  # `waitroom recover` is rebuilding it
    report = CatchUpReport(room, await store.event_seq(room), last.seq)
    outbox = await store.outbox_batch(room, 10_000_000)
    snapshot = await latest_snapshot(js, stream, room)
    if snapshot is not None and snapshot.manifest.seq > last.seq:
        snapshot = None  # not of this history
    if snapshot is None or not await restored(store, room, snapshot):
        snapshot = None
        await store.restore(room, None)
    start = snapshot.manifest.stream_from if snapshot else 1
    on_stream = await room_events(js, stream, room, start, last.stream_seq)
    report.replayed, report.stop = await replay_chunks(
        store, room, [data for _seq, data in on_stream], "strict"
    )
    if report.stop is not None:
        await store.mark_recovering([room], owner="stuck", take=True)  # recover may take it
        log.error(
            "catch_up_stopped",
            room=room,
            stop=report.stop.kind,
            after=report.stop.after,
            next=report.stop.next,
            event_id=report.stop.id,
            hint="run `waitroom recover --accept-gap` to go on past it",
        )
        return report
    stream_by_seq = {event_seq_of(data): data for _seq, data in on_stream}
    fork: list[bytes] = []
    for _entry_id, raw in outbox:
        if stream_by_seq.get(event_seq_of(raw)) == raw.encode():
            report.dropped += 1
        else:
            fork.append(raw.encode())
    report.forked = len(fork)
    # re-applied first (as new outbox entries), then the old entries trimmed by id: cut
    # short in between, a catch-up done again finds the fork still there (re-applying
    # skips what already holds) rather than lost
    report.reapplied, _ = await replay_chunks(store, room, fork, "reapply")
    await trim([entry_id for entry_id, _raw in outbox])
    await store.mark_recovering([room], on=False, owner="relay")
    if await store.get_config(room) is not None:
        await store.index.add(room)
    else:  # deleted on the record: gone here too, once its outbox is delivered
        await store.index.retire(room)
    log.warning(
        "store_behind_stream",
        room=room,
        store_seq=report.store_seq,
        stream_seq=report.stream_seq,
        replayed=report.replayed,
        forked=report.forked,
        reapplied=report.reapplied,
        dropped=report.dropped,
    )
    return report


class OutboxTrim:
    """Drops outbox entries under the relay's lease (see RoomStore.outbox_delivered)."""

    def __init__(self, store: RoomStore, room: str, holder: str, fence: int, lease_ms: int):
        self.store, self.room, self.holder = store, room, holder
        self.fence, self.lease_ms = fence, lease_ms

    async def __call__(self, entry_ids: list[str]) -> None:
        for i in range(0, len(entry_ids), 5000):
            await self.store.outbox_delivered(
                self.room,
                entry_ids[i : i + 5000],
                holder=self.holder,
                fence=self.fence,
                lease_ms=self.lease_ms,
            )
