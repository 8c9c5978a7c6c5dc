"""waitroom's NATS client: nats-py's, with messages of chosen subscriptions handed over raw.

A replay reads the event stream at tens of thousands of messages a second, and nats-py
spends most of its own time per message on what the replay never looks at: every stored
event carries headers (``Nats-Msg-Id``), which it parses into a dict, then it builds a
``Msg`` and queues it for the subscription's task. A subscription given to ``deliver_raw``
gets each message's reply subject and payload as they come off the parser, on the read
loop itself; a message without a reply subject (a status: heartbeat, timeout, error) still
takes nats-py's own way, with its headers parsed, to the subscription's callback. A handler
that raises is dropped (its error goes to the client's error callback): on the read loop an
error would end the connection's reading for every subscription.

A subscription given to ``take_raw`` (the relay's acks: one per event published) gets
every message's subject, raw header block and payload, called on the read loop without a
task switch; nats-py's own way (a ``Msg`` built, queued, then taken by the subscription's
task) cost the relay about a fifth of its CPU. Its handler is a plain function that keeps
its subscription when it raises (the error goes to the error callback): the relay's
batches would otherwise wait out their timeout, every one, while the connection is up.
A subscription removed (unsubscribed, drained) takes its handlers with it.

``subscriptions_on_server`` waits until the subscriptions made so far are on the server:
nats-py's ``flush`` alone does not promise that.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client
from nats.aio.subscription import Subscription

RawHandler = Callable[[bytes, bytes], Awaitable[None]]
"""Called with (reply subject, payload) of each message, in the order they arrive."""
TakenHandler = Callable[[bytes, bytes, bytes], None]
"""Called with (subject, header block or b"", payload) of each message, in order."""


class WaitroomClient(Client):
    def __init__(self) -> None:
        super().__init__()
        self._raw: dict[int, RawHandler] = {}
        self._taken: dict[int, TakenHandler] = {}

    def deliver_raw(self, sub: Subscription, handler: RawHandler) -> None:
        """Hand ``sub``'s messages with a reply subject to ``handler`` (until
        ``stop_raw``)."""
        self._raw[sub._id] = handler

    def take_raw(self, sub: Subscription, handler: TakenHandler) -> None:
        """Hand every message of ``sub`` to ``handler`` (until ``stop_raw`` or the
        subscription is removed), even after it raised."""
        self._taken[sub._id] = handler

    def stop_raw(self, sub: Subscription) -> None:
        self._raw.pop(sub._id, None)
        self._taken.pop(sub._id, None)

    def _remove_sub(self, sid: int, max_msgs: int = 0) -> None:
        self._raw.pop(sid, None)
        self._taken.pop(sid, None)
        super()._remove_sub(sid, max_msgs)

    async def _process_msg(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes
    ) -> None:
        taken = self._taken.get(sid)
        if taken is not None:
            self.stats["in_msgs"] += 1
            self.stats["in_bytes"] += len(data)
            try:
                taken(subject, headers or b"", data)
            except Exception as exc:  # the handler stays: its next message may be fine
                await self._error_cb(exc)
            return
        handler = self._raw.get(sid) if reply else None
        if handler is None:
            await super()._process_msg(sid, subject, reply, data, headers)
            return
        self.stats["in_msgs"] += 1
        self.stats["in_bytes"] += len(data)
        try:
            await handler(reply, data)
        except Exception as exc:
            # this runs on the connection's read loop, which stops for good on an error
            # and takes every other subscription with it: the handler is dropped instead
            self._raw.pop(sid, None)
            await self._error_cb(exc)


async def connect(**options: Any) -> WaitroomClient:
    """``nats.connect`` for a ``WaitroomClient`` (the same options)."""
    nc = WaitroomClient()
    await nc.connect(**options)
    return nc


async def subscriptions_on_server(nc: Client, flush_timeout: int = 2) -> None:
    """Return once every subscription ``nc`` has made is on the server, so that a message
    another connection publishes from now on reaches it.

    nats-py's ``flush`` writes its PING straight to the socket, ahead of a SUB still in
    the client's buffer, and the PONG can come back before the server has read that SUB
    (a message published meanwhile through another connection goes to nobody: under CPU
    load some 7 % of them did). The client's flusher writes that buffer just behind the
    first PING, so the second PING goes behind the SUB, and the server answers one
    connection's commands in order. Each flush waits ``flush_timeout`` seconds at most (then
    nats-py's ``FlushTimeoutError``)."""
    await nc.flush(flush_timeout)
    await nc.flush(flush_timeout)
