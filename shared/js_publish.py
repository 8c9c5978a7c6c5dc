"""Publishing a batch of messages to JetStream pipelined, the acks gathered in one wait.

nats-py's ``publish_async`` costs more per message than the relay's whole remaining work
(a semaphore taken with ``wait_for``, a NUID and random bytes per reply subject, a future
with a done callback, the ack parsed into a ``PubAck`` dataclass). Here every publish of a
batch replies to ``<inbox>.<batch>.<index>`` on one subscription per connection; an ack is
decoded by msgspec into its place in the batch's answers, and the batch is awaited once.
What JetStream stores and answers is the same: each message is an ordinary publish with
its headers (``Nats-Msg-Id``, expectations) and gets its own ack, in the order sent.

The batch's HPUB frames are built here and handed to the client's outgoing buffer at once
(nats-py's ``publish`` validates and frames each message on its own, with a regular
expression per header and a flush request per call: a seventh of the relay's CPU); the
client's own checks (closed, draining, buffer limit while reconnecting, max payload) are
made for the batch, and a subject, reply or header that could break the framing (space,
tab, CR, LF) is refused before anything is sent.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from dataclasses import dataclass
from typing import Any

import msgspec
from nats import errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.errors import APIError, NoStreamResponseError

from shared.nats_client import WaitroomClient

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


_UNSAFE = re.compile(r"[ \t\r\n]")
"""What would end a subject, a reply or a header line early (and let the rest of it be
read as protocol)."""
_HEADER_KEY = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def hpub_frame(
    subject: str, reply: str, headers: dict[str, str], payload: bytes, max_payload: int
) -> bytes:
    """One message as the NATS protocol's ``HPUB`` frame; ``BadSubjectError`` or
    ``BadHeaderError`` for anything that could break the framing, ``MaxPayloadError`` when
    its headers and payload together pass the server's limit (the server would close the
    connection, and every message sent with it would be lost)."""
    if not subject or _UNSAFE.search(subject) or _UNSAFE.search(reply):
        raise errors.BadSubjectError
    lines = ["NATS/1.0\r\n"]
    for key, value in headers.items():
        if not _HEADER_KEY.fullmatch(key) or "\r" in value or "\n" in value:
            raise errors.BadHeaderError(key)
        lines.append(f"{key}: {value}\r\n")
    lines.append("\r\n")
    head = "".join(lines).encode()
    size = len(head)
    if size + len(payload) > max_payload:
        raise errors.MaxPayloadError
    return b"".join(
        (
            f"HPUB {subject} {reply} {size} {size + len(payload)}\r\n".encode(),
            head,
            payload,
            b"\r\n",
        )
    )


@dataclass
class _Batch:
    outcomes: list[Outcome]
    left: int
    answered: asyncio.Future[None]


def _outcome(status: str | None, data: bytes) -> Ack | BaseException:
    """One answer as its outcome: ``status`` is the answer's status code, if any."""
    if status == NO_RESPONDERS:
        return NoStreamResponseError()
    try:
        ack = _ack.decode(data)
    except msgspec.DecodeError as exc:
        return exc
    if ack.error is not None:
        try:
            APIError.from_error(ack.error)  # raises the error's own class
        except APIError as exc:
            return exc
        except Exception:  # an error nats-py cannot read (no code, fields it lacks)
            return APIError(description=f"unreadable error from JetStream: {ack.error!r}")
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
        """Subscribe to the acks: taken raw from the read loop when the client can
        (shared/nats_client.py), else through nats-py's messages."""
        self._prefix = self.nc.new_inbox()
        acks = f"{self._prefix}.*.*"
        if isinstance(self.nc, WaitroomClient):
            self._sub = await self.nc.subscribe(acks)
            self.nc.take_raw(self._sub, self._on_raw_ack)
        else:
            self._sub = await self.nc.subscribe(acks, cb=self._on_ack)
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
            frames = b"".join(
                hpub_frame(subject, f"{prefix}{i}", headers, payload, self.nc.max_payload)
                for i, (subject, payload, headers) in enumerate(messages)
            )
            await self._send(frames, messages)
            await asyncio.wait([batch.answered], timeout=ack_wait)
        finally:
            del self._batches[batch_id]
        return batch.outcomes

    async def _send(self, frames: bytes, messages: list[Message]) -> None:
        """The frames into the client's outgoing buffer, under the checks its ``publish``
        makes (each frame's size was checked as it was made), then a flush (nats-py's
        private ``_send_command`` and ``_flush_pending``: it has no public call for a
        prepared frame)."""
        nc = self.nc
        if nc.is_closed:
            raise errors.ConnectionClosedError
        if nc.is_draining_pubs:
            raise errors.ConnectionDrainingError
        count, size = len(messages), sum(len(payload) for _s, payload, _h in messages)
        if not nc.is_connected:
            limit = nc._max_pending_size
            if limit <= 0 or len(frames) + nc._pending_data_size > limit:
                raise errors.OutboundBufferLimitError
        nc.stats["out_msgs"] += count
        nc.stats["out_bytes"] += size
        await nc._send_command(frames)
        if nc._flush_queue is not None and nc._flush_queue.empty():  # as its publish does
            await nc._flush_pending()

    async def _on_ack(self, msg: Msg) -> None:
        status = msg.headers.get("Status") if msg.headers else None
        self._answered(msg.subject.encode(), status, msg.data)

    def _on_raw_ack(self, subject: bytes, headers: bytes, data: bytes) -> None:
        status = None
        if headers:  # "NATS/1.0 503 ..." on its first line: a status
            words = headers.split(b"\r\n", 1)[0].split(None, 2)
            status = words[1].decode("ascii", "replace") if len(words) > 1 else None
        self._answered(subject, status, data)

    def _answered(self, subject: bytes, status: str | None, data: bytes) -> None:
        """An answer into its batch's place (by its subject, ``<inbox>.<batch>.<index>``);
        one no batch waits for (given up on at its timeout, or not ours) is dropped."""
        try:
            _prefix, batch_id, index = subject.rsplit(b".", 2)
            batch, i = self._batches.get(int(batch_id)), int(index)
        except ValueError:
            return
        if batch is None or not 0 <= i < len(batch.outcomes) or batch.outcomes[i] is not None:
            return
        batch.outcomes[i] = _outcome(status, data)
        batch.left -= 1
        if batch.left == 0 and not batch.answered.done():
            batch.answered.set_result(None)

    async def close(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()  # (its raw handler goes with it)
            self._sub = None
