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


class LeanHttpToolsProtocol(HttpToolsProtocol):
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
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle is not before:  # a new request: nobody waits yet
            cycle.message_event = LeanEvent()
            # the request line is parsed into the scope; its copy (with a stream's token in
            # the query, some 700 bytes) is read again only for a WebSocket upgrade, which
            # makes no new request cycle
            self.url = b""
