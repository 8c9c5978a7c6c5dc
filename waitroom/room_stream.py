"""Reading one room's events back from the JetStream stream, from the start, in order."""

from __future__ import annotations

from typing import Any

import nats
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from shared.events import SUBJECT_PREFIX, Event, decode


async def read_room_events(
    nats_url: str,
    room: str,
    *,
    stream: str = "WAITROOM",
    batch: int = 1000,
    nats_options: dict[str, Any] | None = None,
) -> list[Event]:
    """Every event of ``room`` on the stream (an ephemeral consumer filtered to its
    subjects; needs nothing but read access to the stream). ``nats_options``: TLS and
    credentials (shared/nats_link.py connect_options)."""
    servers = [u.strip() for u in nats_url.split(",") if u.strip()]
    nc = await nats.connect(
        servers=servers, connect_timeout=5, max_reconnect_attempts=3, **(nats_options or {})
    )
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe(
            f"{SUBJECT_PREFIX}.{room}.>",
            stream=stream,
            config=ConsumerConfig(
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.NONE,
                inactive_threshold=60.0,
            ),
        )
        out: list[Event] = []
        while True:
            try:
                msgs = await sub.fetch(batch, timeout=2)
            except NatsTimeout:
                break  # nothing (more) for this room
            out += [decode(m.data) for m in msgs]
            if msgs[-1].metadata.num_pending == 0:
                break
        await sub.unsubscribe()
        return out
    finally:
        await nc.close()
