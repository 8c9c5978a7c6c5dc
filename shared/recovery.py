"""Rebuilding every room from the event stream into an empty (or older) data store.

The stream is read from the start in order; each event is applied by replay.lua, which
makes the same change the original script made and skips events the room already has
(by its event counter), so running recovery twice gives the same state. While a room is
being replayed it carries a ``recovering`` mark: every state-changing script refuses it
(503 room_recovering), so no new change can interleave with the replay. At the end the
marks go and the rooms are indexed again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import nats
import structlog
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from shared.events import SUBJECT_PREFIX
from shared.store import RoomStore

log = structlog.get_logger("recovery")

Progress = Callable[[int, int], None]
"""Called with (events done, events in all) as the replay goes."""


class _Head(msgspec.Struct):
    room: str
    type: str


_head = msgspec.json.Decoder(_Head)


@dataclass
class RecoverySummary:
    events: int = 0
    applied: int = 0
    skipped: int = 0
    rooms: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


async def recover(
    store: RoomStore,
    nats_url: str,
    *,
    stream: str = "WAITROOM",
    batch: int = 2000,
    nats_options: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> RecoverySummary:
    started = time.perf_counter()
    summary = RecoverySummary()
    servers = [u.strip() for u in nats_url.split(",") if u.strip()]
    nc = await nats.connect(
        servers=servers, connect_timeout=5, max_reconnect_attempts=3, **(nats_options or {})
    )
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        first, last = info.state.first_seq, info.state.last_seq
        total = info.state.messages
        if total == 0:
            return summary
        sub = await js.pull_subscribe(
            f"{SUBJECT_PREFIX}.>",
            stream=stream,
            config=ConsumerConfig(
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.NONE,
                inactive_threshold=60.0,
            ),
        )
        seen_seq = first - 1
        fetching = asyncio.ensure_future(sub.fetch(batch, timeout=10))
        while seen_seq < last:
            msgs = await fetching
            seen_seq = msgs[-1].metadata.sequence.stream
            if seen_seq < last:  # read the next batch while this one is applied
                fetching = asyncio.ensure_future(sub.fetch(batch, timeout=10))
            await _apply(store, msgs, summary)
            if progress is not None:
                progress(summary.events, total)
        await sub.unsubscribe()
    finally:
        await nc.close()
    await store.end_recovery(sorted(summary.rooms), summary.deleted)
    summary.seconds = time.perf_counter() - started
    log.info(
        "recovered",
        events=summary.events,
        applied=summary.applied,
        skipped=summary.skipped,
        rooms=len(summary.rooms),
        seconds=round(summary.seconds, 3),
    )
    return summary


async def _apply(store: RoomStore, msgs: list[Msg], summary: RecoverySummary) -> None:
    """One pipeline for a fetched batch, one script call per room: rooms are independent,
    so only the order of each room's own events matters, and that is kept."""
    runs: dict[str, list[bytes]] = {}
    for msg in msgs:
        head = _head.decode(msg.data)
        summary.rooms.add(head.room)
        if head.type == "room_deleted":
            summary.deleted.add(head.room)
        elif head.type == "room_updated":
            summary.deleted.discard(head.room)
        runs.setdefault(head.room, []).append(msg.data)
    applied = await store.replay(runs, now_ms=int(time.time() * 1000))
    summary.applied += applied
    summary.skipped += len(msgs) - applied
    summary.events += len(msgs)
