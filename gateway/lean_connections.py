"""uvicorn's httptools protocol with smaller per-connection objects.

A gateway holds thousands of open event streams, each one connection. uvicorn gives every
connection a pipeline ``deque`` and two ``asyncio.Event``s (flow control, request
messages), and an ``asyncio.Event`` keeps its waiters in a ``deque`` too: an empty deque
is about 750 bytes, so these three cost more than 2 KiB per connection. Here they are
lists, which behave the same for the few operations uvicorn uses (append, remove,
iterate; the pipeline: appendleft, pop) and cost under 100 bytes empty. And the raw
request line is not kept once it is parsed.

A response also goes out in one write, not two: uvicorn writes the head as soon as the app
starts the response and the body after. Each write is a system call, and on a connection
from a proxy on the same host each one also delivers a packet, so a small answer (a
status, a join) cost a tenth more than it needs to.
"""

from __future__ import annotations

import asyncio
from asyncio import Transport
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle


class LeanEvent(asyncio.Event):
    """``asyncio.Event`` with its waiters in a list (one or none wait on these)."""

    def __init__(self) -> None:
        super().__init__()
        self._waiters: list[asyncio.Future[bool]] = []  # type: ignore[assignment]


class LeanPipeline(list[Any]):
    """The few ``deque`` operations uvicorn's pipeline of queued requests uses."""

    def appendleft(self, item: Any) -> None:
        self.insert(0, item)


MAX_PIPELINED = 8
"""Requests a connection may queue behind the one being answered. uvicorn sets no bound,
and behind an event stream (which lives for hours, and whose wait for the client to go
lets uvicorn read on) a client could queue requests without end, each kept until the
stream ends. One more is refused: 400 and the connection closed."""


class PipelineTooDeep(Exception):
    """More requests queued on one connection than MAX_PIPELINED."""


class _HeldHead:
    """Stands in for the transport while uvicorn writes a response's head: keeps it."""

    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data


class _HeadFirst:
    """Stands in for the transport while uvicorn writes a response's first body part:
    the held head goes out in the same write."""

    __slots__ = ("head", "transport")

    def __init__(self, transport: Any, head: bytes) -> None:
        self.transport = transport
        self.head = head

    def write(self, data: bytes) -> None:
        self.transport.write(self.head + data)

    def close(self) -> None:
        self.transport.close()

    def is_closing(self) -> bool:
        return bool(self.transport.is_closing())


class OneWriteCycle(RequestResponseCycle):
    """uvicorn's request cycle, writing a response's head together with its first body
    part. (A HEAD response has no body part: its head is written at once.)"""

    _head: bytes | None = None

    async def send(self, message: Any) -> None:
        kind = message["type"]
        if kind == "http.response.start" and not self.response_started:
            if self.scope["method"] == "HEAD":
                await super().send(message)
                return
            real, held = self.transport, _HeldHead()
            self.transport = held  # type: ignore[assignment]
            try:
                await super().send(message)
            finally:
                self.transport = real
            self._head = held.data
            return
        head = self._head
        if head is not None and kind == "http.response.body":
            self._head = None
            real = self.transport
            self.transport = _HeadFirst(real, head)  # type: ignore[assignment]
            try:
                await super().send(message)
            finally:
                self.transport = real
            return
        await super().send(message)


class LeanHttpToolsProtocol(HttpToolsProtocol):
    """Also: a connection's requests all hear that it was lost (uvicorn tells only the
    newest, so a stream with a request queued behind it would be written for ever), and
    at most MAX_PIPELINED wait behind the one being answered."""

    _unfinished: list[Any] | None = None
    """The requests of this connection begun while another was being answered (and that
    one), until the connection ends; None while nobody pipelines."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pipeline = LeanPipeline()  # type: ignore[assignment]

    def connection_made(self, transport: Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        writable = LeanEvent()
        writable.set()  # as FlowControl starts: writing is not paused
        self.flow._is_writable_event = writable

    def on_headers_complete(self) -> None:
        before = self.cycle
        queued = before is not None and not before.response_complete
        if queued and len(self.pipeline) >= MAX_PIPELINED:
            raise PipelineTooDeep()  # the parser fails: uvicorn answers 400 and closes
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle is not before:  # a new request: nobody waits yet
            if queued:
                unfinished = [c for c in self._unfinished or () if not c.response_complete]
                if before not in unfinished:
                    unfinished.append(before)
                self._unfinished = [*unfinished, cycle]
            cycle.message_event = LeanEvent()
            cycle.__class__ = OneWriteCycle  # its task has not run yet
            # the request line is parsed into the scope; its copy (with a stream's token in
            # the query, some 700 bytes) is read again only for a WebSocket upgrade, which
            # makes no new request cycle
            self.url = b""

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        for cycle in self._unfinished or ():
            if not cycle.response_complete:
                cycle.disconnected = True
                cycle.message_event.set()
        self._unfinished = None
