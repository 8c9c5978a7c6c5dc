"""Reading the event stream back: one room's events, its last event, and its snapshots.

A snapshot (room_snapshot.lua's answer, zlib-compressed) goes on the stream in parts on
``waitroom-snapshot.<room>.part``, then a small manifest on ``waitroom-snapshot.<room>.done``
once every part is stored and the relay has delivered the snapshot's own seq: a manifest
names a complete snapshot of a history that is on the stream. ``stream_from`` is the
stream's last sequence + 1 read *before* the state was taken, so every event after the
snapshot's ``seq`` lies at or after it: recovery restores the snapshot and replays from
there, skipping what the snapshot already holds.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import msgspec
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from shared.events import SNAPSHOT_PREFIX, room_subjects, snapshot_subject

PART_BYTES = 512 * 1024
"""Below NATS's default max_payload (1 MiB)."""


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
    if until < start:
        return []
    sub = await js.pull_subscribe(
        room_subjects(room),
        stream=stream,
        config=ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=max(1, start),
            ack_policy=AckPolicy.NONE,
            inactive_threshold=30.0,
        ),
    )
    out: list[tuple[int, bytes]] = []
    try:
        while True:
            info = await sub.consumer_info()
            if info.num_pending == 0 and (not out or out[-1][0] >= until):
                break
            msgs = await sub.fetch(1000, timeout=5)
            for msg in msgs:
                seq = msg.metadata.sequence.stream
                if seq > until:
                    return out
                out.append((seq, msg.data))
            if out and out[-1][0] >= until:
                break
    finally:
        await sub.unsubscribe()
    return out


async def last_manifest(js: JetStreamContext, stream: str, room: str) -> Manifest | None:
    """The manifest of the room's latest complete snapshot, or None."""
    try:
        done = await js.get_last_msg(stream, f"{snapshot_subject(room)}.done")
    except NotFoundError:
        return None
    return msgspec.json.decode(done.data or b"", type=Manifest)


async def latest_snapshot(js: JetStreamContext, stream: str, room: str) -> Snapshot | None:
    """The room's latest complete snapshot on the stream, or None."""
    manifest = await last_manifest(js, stream, room)
    if manifest is None:
        return None
    parts: list[bytes] = []
    seq = manifest.first_part
    while len(parts) < manifest.parts:
        try:
            msg = await js.get_msg(
                stream, seq=seq, subject=f"{snapshot_subject(room)}.part", next=True
            )
        except NotFoundError:
            return None  # parts gone (retention): no usable snapshot
        if (msg.headers or {}).get("Waitroom-Snapshot") == manifest.snap_id:
            parts.append(msg.data or b"")
        seq = int(msg.seq or seq) + 1
    return Snapshot(manifest, zlib.decompress(b"".join(parts)))


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
    packed = zlib.compress(state, 6)
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
