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

A snapshot that cannot be read (its state corrupt or cut short) is passed over for the one
before it, here and in `waitroom recover` (``restore_newest``); with none left, the room is
rebuilt from its whole stream, if the stream still holds its first event. If not, the
store's state is kept and the room stops there, reported, for `waitroom recover
--accept-gap`.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from nats.js import JetStreamContext

from shared.errors import RoomRecovering, SnapshotTooNew, SnapshotUnreadable
from shared.store import RoomStore
from shared.store.views import ReplayResult, ReplayStop
from shared.stream_reads import (
    LastEvent,
    Manifest,
    Snapshot,
    event_seq_of,
    first_event_seq,
    last_manifest,
    room_events,
    room_manifests,
    snapshot_of,
)

log = structlog.get_logger("catchup")

REPLAY_CHUNK = 500
MOST_PASSED_OVER = 5
"""Snapshots tried after an unreadable one, before the room's whole stream is."""


TOO_NEW = "snapshot_too_new"
"""A stop's kind: the room's latest snapshot was written by a later version."""


def stop_hint(stop: ReplayStop) -> str:
    """What an operator does about a room stopped so."""
    if stop.kind == TOO_NEW:
        return (
            "run the version that wrote the room's snapshot, or `waitroom recover "
            "--no-snapshots` (the whole stream)"
        )
    return "run `waitroom recover --accept-gap` to go on past it"


@dataclass
class Restored:
    """What ``restore_newest`` did."""

    snapshot: Snapshot | None = None
    """The snapshot the room now holds; None when none was restored (the room as it was)."""
    passed_over: int = 0
    """Snapshots that could not be read, newest first."""


async def restore_newest(
    store: RoomStore,
    js: JetStreamContext,
    stream: str,
    room: str,
    *,
    above: int = 0,
    upto: int | None = None,
) -> Restored:
    """Restore ``room`` from its latest snapshot on the stream, when its seq is above
    ``above`` (what the store holds already) and at most ``upto`` (the stream's last
    event of the room: one past it is of another history). A snapshot that cannot be read
    (corrupt, cut short: ``SnapshotUnreadable``) is logged and passed over for the one
    before it, and so on; the room is left as it was until one is restored. One of a later
    version (``SnapshotTooNew``) is raised: this version must not guess at it."""
    result = Restored()
    try:
        latest = await last_manifest(js, stream, room)
    except SnapshotUnreadable as exc:  # the manifest itself: those before it, below upto
        _passed_over(result, room, exc)
        candidates = _earlier(await room_manifests(js, stream, room), None, upto, above)
    else:
        if latest is None or latest.seq <= above or (upto is not None and latest.seq > upto):
            return result
        candidates = [latest]
    while candidates:
        manifest = candidates.pop(0)
        try:
            snapshot = await snapshot_of(js, stream, manifest)
            if snapshot is None:
                return result  # its parts are gone (retention): those before it too
            await store.restore(room, snapshot.state)
        except SnapshotUnreadable as exc:
            _passed_over(result, room, exc, manifest)
            if result.passed_over == 1:
                candidates = _earlier(
                    await room_manifests(js, stream, room), manifest, manifest.seq, above
                )
            continue
        result.snapshot = snapshot
        return result
    return result


def _passed_over(
    result: Restored, room: str, exc: Exception, manifest: Manifest | None = None
) -> None:
    result.passed_over += 1
    log.error(
        "snapshot_unreadable",
        room=room,
        seq=manifest.seq if manifest else None,
        snapshot=manifest.snap_id if manifest else None,
        error=str(exc),
        hint="passed over for the snapshot before it, or the room's whole stream",
    )


def _earlier(
    manifests: list[Manifest], failed: Manifest | None, upto: int | None, above: int
) -> list[Manifest]:
    """The manifests (newest first) to try after ``failed`` (or after a latest manifest
    that did not decode): those before it on the stream, at most ``upto``, whose seqs
    keep going down (one whose seq rises again is of an earlier history: a store that
    started the room over), above ``above``; at most ``MOST_PASSED_OVER``."""
    earlier: list[Manifest] = []
    floor = upto
    for manifest in manifests:
        if failed is not None and manifest.snap_id == failed.snap_id:
            continue
        if floor is None:
            floor = manifest.seq
        if manifest.seq > floor or manifest.seq <= above:
            break
        earlier.append(manifest)
        floor = manifest.seq
    return earlier[:MOST_PASSED_OVER]


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
    passed_over: int = 0
    """The room's snapshots that could not be read (``restore_newest``)."""
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
    try:
        restored = await restore_newest(store, js, stream, room, upto=last.seq)
    except SnapshotTooNew:  # (a version rolled back): nothing changed; an operator decides
        restored, report.stop = Restored(), ReplayStop(TOO_NEW)
    report.passed_over = restored.passed_over
    on_stream: list[tuple[int, bytes]] = []
    if report.stop is not None:
        pass
    elif restored.snapshot is not None:
        on_stream = await room_events(
            js, stream, room, restored.snapshot.manifest.stream_from, last.stream_seq
        )
    elif (first := await first_event_seq(js, stream, room)) != 1:
        # no snapshot to start from, and the stream no longer holds the room's first
        # events: the store's state (older, perhaps a fork) is kept for an operator
        report.stop = ReplayStop("gap", after=0, next=first or 0)
    else:
        await store.restore(room, None)  # from nothing: the whole stream
        on_stream = await room_events(js, stream, room, 1, last.stream_seq)
    if report.stop is None:
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
            hint=stop_hint(report.stop),
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
