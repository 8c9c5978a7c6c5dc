"""The outbox relay: publishes each room's outbox to JetStream and trims only after the ack.

``Nats-Msg-Id`` is the event id, so an event published twice (a retry, or a replica that
lost its lease mid-batch) is stored once. Events of a room are published one after the
other, each awaited, so the stream holds them in ``seq`` order.
"""

from __future__ import annotations

import msgspec
import structlog
from redis.asyncio import Redis

from shared import keys
from shared.events import subject
from shared.nats_link import NatsLink

log = structlog.get_logger("relay")


class OutboxRelay:
    def __init__(self, redis: Redis, link: NatsLink, *, batch: int = 256) -> None:
        self.redis = redis
        self.link = link
        self.batch = batch

    async def drain(self, room: str) -> int:
        """Publish up to one batch of the room's outbox; returns how many were delivered."""
        js = await self.link.jetstream()
        if js is None:
            return 0
        outbox = keys.RoomKeys(room).outbox
        entries: list[tuple[str, dict[str, str]]] = await self.redis.xrange(
            outbox, "-", "+", count=self.batch
        )  # type: ignore[assignment]
        done: list[str] = []
        try:
            for entry_id, fields in entries:
                raw = fields["e"]
                event_type, event_id = _type_and_id(raw)
                await js.publish(
                    subject(room, event_type),
                    raw.encode(),
                    headers={"Nats-Msg-Id": event_id},
                    timeout=2,
                )
                done.append(entry_id)
        except Exception as exc:
            log.warning("relay_publish_failed", room=room, error=repr(exc), delivered=len(done))
        if done:
            await self.redis.xdel(outbox, *done)
        return len(done)


class _Head(msgspec.Struct):
    type: str
    id: str


_head = msgspec.json.Decoder(_Head)


def _type_and_id(raw: str) -> tuple[str, str]:
    head = _head.decode(raw)
    return head.type, head.id
