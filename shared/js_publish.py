"""Publishing a batch of messages to JetStream pipelined, the acks gathered in one wait.

nats-py's ``publish_async`` costs more per message than the relay's whole remaining work
(a semaphore taken with ``wait_for``, a NUID and random bytes per reply subject, a future
with a done callback, the ack parsed into a ``PubAck`` dataclass). Here every publish of a
batch replies to ``<inbox>.<batch>.<index>`` on one subscription per connection; an ack is
decoded by msgspec into its place in the batch's answers, and the batch is awaited once.
What JetStream stores and answers is the same: each message is an ordinary publish with
its headers (``Nats-Msg-Id``, expectations) and gets its own ack, in the order sent.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.errors import APIError, NoStreamResponseError

NO_RESPONDERS = "503"


class Ack(msgspec.Struct):
    """JetStream's answer to one publish: where it is stored, or an error."""

    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: dict[str, Any] | None = None


_ack = msgspec.json.Decoder(Ack)

Outcome = Ack | BaseException | None
"""Per message: its ack, the error JetStream answered, or None (no answer in time)."""

Message = tuple[str, bytes, dict[str, str]]
"""(subject, payload, headers)."""


@dataclass
class _Batch:
    outcomes: list[Outcome]
    left: int
    answered: asyncio.Future[None]


def _outcome(msg: Msg) -> Ack | BaseException:
    if msg.headers and msg.headers.get("Status") == NO_RESPONDERS:
        return NoStreamResponseError()
    try:
        ack = _ack.decode(msg.data)
    except msgspec.DecodeError as exc:
        return exc
    if ack.error is not None:
        try:
            APIError.from_error(ack.error)  # raises the error's own class
        except APIError as exc:
            return exc
    return ack


class BatchPublisher:
    """One per NATS connection (see NatsLink.publisher)."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self._prefix = ""
        self._sub: Subscription | None = None
        self._batches: dict[int, _Batch] = {}
        self._ids = itertools.count(1)

    async def start(self) -> BatchPublisher:
        self._prefix = self.nc.new_inbox()
        self._sub = await self.nc.subscribe(f"{self._prefix}.*.*", cb=self._on_ack)
        return self

    async def publish(self, messages: list[Message], ack_wait: float) -> list[Outcome]:
        """Publish every message in order, then wait (up to ``ack_wait`` seconds) for all
        their acks; answers each message's outcome, in the order given."""
        if not messages:
            return []
        batch_id = next(self._ids)
        batch = _Batch([None] * len(messages), len(messages), asyncio.Future())
        self._batches[batch_id] = batch
        prefix = f"{self._prefix}.{batch_id}."
        try:
            for i, (subject, payload, headers) in enumerate(messages):
                await self.nc.publish(subject, payload, reply=f"{prefix}{i}", headers=headers)
            await asyncio.wait([batch.answered], timeout=ack_wait)
        finally:
            del self._batches[batch_id]
        return batch.outcomes

    async def _on_ack(self, msg: Msg) -> None:
        _prefix, batch_id, index = msg.subject.rsplit(".", 2)
        batch = self._batches.get(int(batch_id))
        if batch is None:
            return  # a batch given up on (timeout): its late acks are dropped
        i = int(index)
        if batch.outcomes[i] is not None:
            return
        batch.outcomes[i] = _outcome(msg)
        batch.left -= 1
        if batch.left == 0 and not batch.answered.done():
            batch.answered.set_result(None)

    async def close(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None
