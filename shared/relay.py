"""The outbox relay: publishes each room's outbox to JetStream and trims only after the ack.

``Nats-Msg-Id`` is the event id, so an event published twice (a retry, or a replica that
lost its lease mid-batch) is stored once. Events of a room are published one after the
other, each awaited, so the stream holds them in ``seq`` order.
"""

from __future__ import annotations

import random
import time

import msgspec
import structlog

from shared.events import subject
from shared.nats_link import NatsLink
from shared.store import RoomStore

log = structlog.get_logger("relay")


class OutboxRelay:
    """While NATS is away the outboxes grow; past ``outbox_max`` entries a room's backlog
    is logged (every ``WARN_EVERY`` seconds) and shown by readiness and metrics, but
    nothing is dropped. A room whose publish failed is retried with backoff."""

    WARN_EVERY = 10.0

    def __init__(
        self, store: RoomStore, link: NatsLink, *, batch: int = 256, outbox_max: int = 100_000
    ) -> None:
        self.store = store
        self.link = link
        self.batch = batch
        self.outbox_max = outbox_max
        self._retry: dict[str, tuple[float, float]] = {}  # room -> (not before, backoff)
        self._warned: dict[str, float] = {}

    async def drain(self, room: str) -> int:
        """Publish up to one batch of the room's outbox; returns how many were delivered."""
        now = time.monotonic()
        not_before, backoff = self._retry.get(room, (0.0, 0.0))
        if now < not_before:
            return 0
        js = await self.link.jetstream()
        if js is None:
            await self._watch_backlog(room)
            return 0
        entries = await self.store.outbox_batch(room, self.batch)
        done: list[str] = []
        try:
            for entry_id, raw in entries:
                event_type, event_id = _type_and_id(raw)
                await js.publish(
                    subject(room, event_type),
                    raw.encode(),
                    headers={"Nats-Msg-Id": event_id},
                    timeout=2,
                )
                done.append(entry_id)
            self._retry.pop(room, None)
        except Exception as exc:
            backoff = min(max(backoff * 2, 0.1), 5.0)
            self._retry[room] = (time.monotonic() + backoff * (0.5 + random.random()), backoff)
            log.warning(
                "relay_publish_failed",
                room=room,
                error=repr(exc),
                delivered=len(done),
                retry_in=round(backoff, 2),
            )
            await self._watch_backlog(room)
        await self.store.outbox_delivered(room, done)
        return len(done)

    async def drain_all(self, room: str, attempts: int = 1000) -> None:
        """Deliver everything a room's outbox holds (at shutdown), while NATS answers."""
        for _ in range(attempts):
            if await self.drain(room) == 0:
                return

    async def _watch_backlog(self, room: str) -> None:
        backlog = await self.store.outbox_length(room)
        now = time.monotonic()
        if backlog > self.outbox_max and now - self._warned.get(room, 0.0) > self.WARN_EVERY:
            self._warned[room] = now
            log.warning("outbox_over_bound", room=room, backlog=backlog, bound=self.outbox_max)


class _Head(msgspec.Struct):
    type: str
    id: str


_head = msgspec.json.Decoder(_Head)


def _type_and_id(raw: str) -> tuple[str, str]:
    head = _head.decode(raw)
    return head.type, head.id
