"""Reading the event stream back: one room's events, its last event, and its snapshots.

A snapshot (``RoomStore.snapshot``: the store's raw answers, or room_snapshot.lua's JSON;
zlib-compressed) goes on the stream in parts on
``waitroom-snapshot.<room>.part``, then a small manifest on ``waitroom-snapshot.<room>.done``
once every part is stored and the relay has delivered the snapshot's own seq: a manifest
names a complete snapshot of a history that is on the stream. ``stream_from`` is the
stream's last sequence + 1 read *before* the state was taken, so every event after the
snapshot's ``seq`` lies at or after it: recovery restores the snapshot and replays from
there, skipping what the snapshot already holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from shared.errors import SnapshotUnreadable
from shared.events import SNAPSHOT_PREFIX, room_subjects, snapshot_subject
from shared.nats_client import WaitroomClient

PART_BYTES = 512 * 1024
"""Below NATS's default max_payload (1 MiB)."""
SNAPSHOT_LEVEL = 1
"""zlib level of a snapshot: a room's state is mostly random ids, so level 6 made it only
3 % smaller than level 1 for twice the CPU (a fifth of the relay's, taking one every
10,000 events). Any level decompresses the same way."""


class Manifest(msgspec.Struct, frozen=True):
    room: str
    seq: int
    """The room's event counter the snapshot holds the state at."""
    stream_from: int
    first_part: int
    """Stream sequence of the snapshot's first part."""
    parts: int
    snap_id: str
    ts: float


class _Seq(msgspec.Struct):
    seq: int


_seq = msgspec.json.Decoder(_Seq)


def event_seq_of(raw: bytes | str) -> int:
    return _seq.decode(raw).seq


@dataclass(frozen=True)
class Snapshot:
    manifest: Manifest
    state: bytes


@dataclass(frozen=True)
class LastEvent:
    stream_seq: int
    seq: int
    data: bytes


async def last_event(js: JetStreamContext, stream: str, room: str) -> LastEvent | None:
    """The room's last event on the stream, or None if it has none."""
    try:
        msg = await js.get_last_msg(stream, room_subjects(room))
    except NotFoundError:
        return None
    data = msg.data or b""
    return LastEvent(int(msg.seq or 0), event_seq_of(data), data)


async def room_events(
    js: JetStreamContext, stream: str, room: str, start: int, until: int
) -> list[tuple[int, bytes]]:
    """The room's events from stream sequence ``start`` through ``until``: (stream seq,
    event JSON) in stream order."""
    out: list[tuple[int, bytes]] = []
    if until < start:
        return out

    async def keep(chunk: list[tuple[int, bytes]]) -> None:
        out.extend(event for event in chunk if event[0] <= until)

    await read_events(js, stream, room_subjects(room), max(1, start), until, keep)
    return out


Chunk = list[tuple[int, bytes]]
"""(stream seq, message data) in stream order."""

JS_API = "$JS.API"
PULL_BATCH = 1000
PULLS_AHEAD = 2
"""Pull requests kept outstanding: the next batch is on its way while one is read."""
READ_AHEAD = 20_000
"""Messages read but not yet handed on, past which no further pull is asked for (a chunk
asked for is never larger)."""
READ_TIMEOUT = 10.0
"""Seconds without a message (while one is due) before the read fails."""


@dataclass
class _Read:
    """What the pull requests of one read brought so far."""

    until: int
    last: int
    buffer: Chunk = field(default_factory=list)
    due: int = 0
    """Messages asked for and not yet come."""
    error: BaseException | None = None
    woken: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def finished(self) -> bool:
        return self.last >= self.until or self.error is not None


async def read_events(
    js: JetStreamContext,
    stream: str,
    subjects: str,
    start: int,
    until: int,
    handle: Callable[[Chunk], Awaitable[None]],
    *,
    least: int = 1,
) -> None:
    """Hand every message on ``subjects`` from stream sequence ``start`` through ``until``
    (and any after it that came in the same pull) to ``handle``, in stream order, in
    chunks of at least ``least`` messages (but the last). Reading goes on while a chunk
    is handled (up to ``READ_AHEAD`` messages).
    ``TimeoutError`` when no message came for ``READ_TIMEOUT`` seconds.

    A raw pull consumer: pull requests of ``PULL_BATCH`` messages (no expiry: the read
    ends by deleting the consumer) replying to one subscription, the next asked for
    while ``PULLS_AHEAD - 1`` batches are still due; each message's stream sequence is
    read from its reply subject. nats-py's ``fetch`` waits for each message with a
    timeout of its own (a task and a timer per message), which made reading the stream
    most of a replay's time."""
    nc: Client = js._nc
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=start,
        ack_policy=AckPolicy.NONE,
        filter_subject=subjects,
        inactive_threshold=60.0,
        mem_storage=True,
    )
    info = await js.add_consumer(stream, config)
    consumer = info.name
    assert consumer is not None
    if not info.num_pending:  # nothing there (retention may have taken it meanwhile)
        with contextlib.suppress(Exception):
            await js.delete_consumer(stream, consumer)
        return
    read = _Read(until, last=start - 1)
    inbox = nc.new_inbox()
    next_subject = f"{JS_API}.CONSUMER.MSG.NEXT.{stream}.{consumer}"
    request = json.dumps({"batch": PULL_BATCH}).encode()

    async def top_up() -> None:
        while (
            read.due <= PULL_BATCH * (PULLS_AHEAD - 1)
            and len(read.buffer) < READ_AHEAD
            and not read.finished
        ):
            read.due += PULL_BATCH
            await nc.publish(next_subject, request, reply=inbox)

    async def on_raw(reply: bytes, data: bytes) -> None:
        try:
            read.last = _stream_seq(reply)
            read.buffer.append((read.last, data))
            read.due -= 1
            read.woken.set()
            await top_up()
        except Exception as exc:  # (not a JetStream delivery, or the client is closing)
            read.error = exc
            read.woken.set()

    async def on_message(msg: Msg) -> None:
        if not msg.reply:  # a status, not a message
            headers = msg.headers or {}
            status = headers.get("Status", "")
            if status != "100":  # (100: a heartbeat)
                description = headers.get("Description", "")
                read.error = ConnectionError(f"stream read ended: {status} {description}")
                read.woken.set()
            return
        await on_raw(msg.reply.encode(), msg.data)

    sub = await nc.subscribe(inbox, cb=on_message)
    if isinstance(nc, WaitroomClient):
        nc.deliver_raw(sub, on_raw)  # the messages; statuses still come to on_message
    try:
        await top_up()
        while True:
            while len(read.buffer) < least and not read.finished:
                read.woken.clear()
                async with asyncio.timeout(READ_TIMEOUT):
                    await read.woken.wait()
            if read.error is not None:
                raise read.error
            if not read.buffer:
                return  # finished
            chunk, read.buffer = read.buffer, []
            await handle(chunk)
            await top_up()
    finally:
        if isinstance(nc, WaitroomClient):
            nc.stop_raw(sub)
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        with contextlib.suppress(Exception):
            await js.delete_consumer(stream, consumer)


def _stream_seq(reply: bytes) -> int:
    """A JetStream message's stream sequence, from its reply subject:
    ``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>...`` (9 tokens) or, with a
    domain and account, ``$JS.ACK.<domain>.<account>.<stream>.<consumer>.<delivered>.
    <stream seq>...``."""
    tokens = reply.split(b".")
    return int(tokens[5] if len(tokens) == 9 else tokens[7])


async def last_manifest(js: JetStreamContext, stream: str, room: str) -> Manifest | None:
    """The manifest of the room's latest complete snapshot, or None;
    ``SnapshotUnreadable`` when it does not decode."""
    try:
        done = await js.get_last_msg(stream, f"{snapshot_subject(room)}.done")
    except NotFoundError:
        return None
    try:
        return msgspec.json.decode(done.data or b"", type=Manifest)
    except msgspec.DecodeError as exc:
        raise SnapshotUnreadable(f"{room}'s latest snapshot manifest: {exc}") from exc


async def latest_snapshot(js: JetStreamContext, stream: str, room: str) -> Snapshot | None:
    """The room's latest complete snapshot on the stream, or None (``SnapshotUnreadable``
    for one whose parts do not decompress)."""
    manifest = await last_manifest(js, stream, room)
    if manifest is None:
        return None
    return await snapshot_of(js, stream, manifest)


async def snapshot_of(js: JetStreamContext, stream: str, manifest: Manifest) -> Snapshot | None:
    """The snapshot a manifest names, or None when its parts are gone (retention);
    ``SnapshotUnreadable`` when they do not decompress."""
    if manifest.first_part < (await js.stream_info(stream)).state.first_seq:
        return None  # its first part is gone (retention)
    parts: list[bytes] = []
    seq = manifest.first_part
    while len(parts) < manifest.parts:
        try:
            msg = await js.get_msg(
                stream, seq=seq, subject=f"{snapshot_subject(manifest.room)}.part", next=True
            )
        except NotFoundError:
            return None  # parts gone (retention): no usable snapshot
        if (msg.headers or {}).get("Waitroom-Snapshot") == manifest.snap_id:
            parts.append(msg.data or b"")
        seq = int(msg.seq or seq) + 1
    try:
        return Snapshot(manifest, zlib.decompress(b"".join(parts)))
    except zlib.error as exc:  # (corrupt on the way or on disk)
        raise SnapshotUnreadable(f"snapshot {manifest.snap_id}: {exc!r}") from exc


async def room_manifests(js: JetStreamContext, stream: str, room: str) -> list[Manifest]:
    """Every manifest of the room's snapshots still on the stream, newest first (one that
    cannot be decoded is left out): the ones to fall back on when the latest cannot be
    read. Read with one consumer on their subject, a few round trips for thousands."""
    subject = f"{snapshot_subject(room)}.done"
    try:
        last = await js.get_last_msg(stream, subject)
    except NotFoundError:
        return []
    found: list[Manifest] = []

    async def take(chunk: Chunk) -> None:
        for _seq, data in chunk:
            with contextlib.suppress(msgspec.DecodeError):
                found.append(msgspec.json.decode(data, type=Manifest))

    first = (await js.stream_info(stream)).state.first_seq
    await read_events(js, stream, subject, max(1, first), int(last.seq or 0), take)
    return found[::-1]


async def first_event_seq(js: JetStreamContext, stream: str, room: str) -> int | None:
    """The room's seq of its first event still on the stream (1 when the stream holds its
    whole history), or None when it holds none."""
    first = (await js.stream_info(stream)).state.first_seq
    try:
        msg = await js.get_msg(stream, seq=max(1, first), subject=room_subjects(room), next=True)
    except NotFoundError:
        return None
    return event_seq_of(msg.data or b"")


async def snapshot_rooms(js: JetStreamContext, stream: str) -> set[str]:
    """Rooms with a snapshot manifest on the stream."""
    info = await js.stream_info(stream, subjects_filter=f"{SNAPSHOT_PREFIX}.*.done")
    return {subj.split(".")[1] for subj in (info.state.subjects or {})}


async def event_rooms(js: JetStreamContext, stream: str, prefix: str) -> set[str]:
    """Rooms with at least one event on the stream."""
    info = await js.stream_info(stream, subjects_filter=f"{prefix}.*.*")
    return {subj.split(".")[1] for subj in (info.state.subjects or {})}


async def publish_snapshot_parts(
    js: JetStreamContext, room: str, state: bytes, snap_id: str
) -> tuple[int, int]:
    """The snapshot's parts on the stream; answers (first part's stream seq, parts)."""
    packed = zlib.compress(state, SNAPSHOT_LEVEL)
    chunks = [packed[i : i + PART_BYTES] for i in range(0, len(packed), PART_BYTES)] or [b""]
    first = 0
    for i, chunk in enumerate(chunks):
        ack = await js.publish(
            f"{snapshot_subject(room)}.part",
            chunk,
            headers={"Nats-Msg-Id": f"{snap_id}:{i}", "Waitroom-Snapshot": snap_id},
            timeout=5,
        )
        first = first or ack.seq
    return first, len(chunks)


async def publish_manifest(js: JetStreamContext, manifest: Manifest) -> None:
    await js.publish(
        f"{snapshot_subject(manifest.room)}.done",
        msgspec.json.encode(manifest),
        headers={"Nats-Msg-Id": f"{manifest.snap_id}:done"},
        timeout=5,
    )
