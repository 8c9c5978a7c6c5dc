"""uvicorn's httptools protocol with smaller per-connection objects.

A gateway holds thousands of open event streams, each one connection. uvicorn gives every
connection a pipeline ``deque`` and two ``asyncio.Event``s (flow control, request
messages), and an ``asyncio.Event`` keeps its waiters in a ``deque`` too: an empty deque
is about 750 bytes, so these three cost more than 2 KiB per connection. Here they are
lists, which behave the same for the few operations uvicorn uses (append, remove,
iterate; the pipeline: appendleft, pop) and cost under 100 bytes empty. And the raw
request line is not kept once it is parsed.
"""

from __future__ import annotations

import asyncio
from asyncio import Transport
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


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
