"""uvicorn's httptools protocol with smaller per-connection objects.

A gateway holds thousands of open event streams, each one connection. uvicorn gives every
connection a pipeline ``deque`` and two ``asyncio.Event``s (flow control, request
messages), and an ``asyncio.Event`` keeps its waiters in a ``deque`` too: an empty deque
is about 750 bytes, so these three cost more than 2 KiB per connection. Here they are
lists, which behave the same for the few operations uvicorn uses (append, remove,
iterate; the pipeline: appendleft, pop) and cost under 100 bytes empty. And the raw
request line is not kept once it is parsed.

Status calls and heartbeats that this gateway's memory can answer (fast_answers.py) are
answered as soon as their head is parsed, written here in one go: no request task, no ASGI
messages, no framework. Only when nothing else on the connection is being answered (so
answers keep their order) and the client reads what it is sent.

Joins (fast_joins.py) are taken the same way, under the same conditions: the parser
gathers the body (within the size limit, and within the body deadline, else ``408``), and
one task of their own answers and writes them. Until it has, the connection's next
requests queue behind it as they would behind any request.

A response also goes out in one write, not two: uvicorn writes the head as soon as the app
starts the response and the body after. Each write is a system call, and on a connection
from a proxy on the same host each one also delivers a packet, so a small answer (a
status, a join) cost a tenth more than it needs to.
"""

from __future__ import annotations

import asyncio
import sys
from asyncio import Transport
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Literal, Protocol

import httptools
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from shared.errors import BodyTimeout

if TYPE_CHECKING:
    from uvicorn._types import ASGIVersions  # (uvicorn's private module: for types only)

Header = tuple[bytes, bytes]
WriteAnswer = Callable[[int, list[Header], bytes], None]
"""Writes an answer (status, headers, body) to the connection at once."""


class AnswersAtOnce(Protocol):
    """What answers some calls without waiting for anything (fast_answers.MemoryAnswers),
    found on the app's state as ``memory_answers``."""

    def answer(self, scope: Any, write: WriteAnswer) -> bool:
        """Write the answer with ``write`` and return True, or write nothing: False."""
        ...


class JoinsAtOnce(Protocol):
    """What answers joins taken as they are parsed (fast_joins.FastJoins), found on the
    app's state as ``fast_joins``."""

    def room_at_once(self, scope: Any) -> str | None:
        """The room, if the request is a join it takes now; else None."""
        ...

    @property
    def body_limits(self) -> tuple[int, float]:
        """The largest body a join may have, in bytes, and the seconds it may take."""
        ...

    def join_at_once(
        self, scope: Any, room: str, raw: bytes, write: WriteAnswer
    ) -> Coroutine[Any, Any, None]:
        """Answer the join whose whole body is ``raw`` with ``write`` (once)."""
        ...

    def refuse_at_once(self, scope: Any, exc: Any, write: WriteAnswer, waited: float) -> None:
        """Refuse, with ``write``, a join whose body took too long (``waited`` seconds)."""
        ...


HOT_METHODS = frozenset({b"GET", b"POST"})
INTERNAL_ERROR = b"Internal Server Error"
INTERNAL_ERROR_HEADERS = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", str(len(INTERNAL_ERROR)).encode("ascii")),
]
"""uvicorn's answer when an app fails before it answered."""


class _NobodyWaits:
    __slots__ = ()

    def set(self) -> None:
        pass


class _AnsweredAtOnce:
    """Stands in for the request cycle of a request answered as it was parsed: complete,
    nobody waits on it (uvicorn's own checks of ``self.cycle`` then pass it by)."""

    __slots__ = ()
    response_complete = True
    message_event = _NobodyWaits()


ANSWERED_AT_ONCE = _AnsweredAtOnce()


class _JoinAtOnce:
    """Stands in for the request cycle of a join taken as it was parsed (its body being
    gathered, then its answer made by a task of its own). uvicorn reads and sets the same
    few attributes on it as on its own cycle: whether the answer is complete, whether
    the client went away, whether the connection stays open after it (a shutdown says
    no), and the event it sets for news (nobody waits on it)."""

    __slots__ = (
        "body",
        "deadline",
        "disconnected",
        "keep_alive",
        "response_complete",
        "room",
        "scope",
        "started",
    )
    message_event = _NobodyWaits()

    def __init__(self, scope: Any, room: str, keep_alive: bool) -> None:
        self.scope = scope
        self.room = room
        self.keep_alive = keep_alive
        self.body = b""
        self.deadline: asyncio.TimerHandle | None = None
        self.disconnected = False
        self.response_complete = False
        self.started = False
        """Whether its body is whole and its task began (what the parser reports after
        that is another request's: one uvicorn upgrades to a WebSocket makes no cycle)."""


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


ServerAddress = tuple[str, int | None]
_ADDRESSES: dict[ServerAddress, ServerAddress] = {}
MAX_SHARED_ADDRESSES = 256
_ASGI_INFO: dict[str, ASGIVersions] = {
    version: {"version": version, "spec_version": "2.3"} for version in ("2.0", "3.0")
}


def shared_address(address: ServerAddress | None) -> ServerAddress | None:
    """One tuple for each of the server's own addresses, kept for every connection and
    put in every request's scope (about 130 bytes each)."""
    if address is None or len(_ADDRESSES) >= MAX_SHARED_ADDRESSES:
        return address
    return _ADDRESSES.setdefault(address, address)


def asgi_info(version: Literal["2.0", "3.0"]) -> ASGIVersions:
    """A scope's ``asgi`` entry: one dict for every request (uvicorn makes one each, about
    180 bytes that an open event stream keeps). Nothing here or in Litestar writes to it."""
    return _ASGI_INFO[version]


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

    # Slots: uvicorn's protocol keeps 28 attributes in each connection's __dict__, and
    # past 30 the dict is no longer one sharing its keys with every other connection's
    # (about 1.6 KB each instead of about 0.3 KB, for every open event stream).
    __slots__ = (
        "_at_once",
        "_at_once_this_read",
        "_joins",
        "_keep_alive_now",
        "_unfinished",
        "_written",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pipeline = LeanPipeline()  # type: ignore[assignment]
        state = getattr(self.app, "state", None)
        self._at_once: AnswersAtOnce | None = getattr(state, "memory_answers", None)
        self._joins: JoinsAtOnce | None = getattr(state, "fast_joins", None)
        self._unfinished: list[Any] | None = None
        """The requests of this connection begun while another was being answered (and
        that one), until the connection ends; None while nobody pipelines."""
        self._keep_alive_now = True
        """Whether the connection stays open after the answer being written at once."""
        self._written = False
        """Whether the answer being written at once went out."""
        self._at_once_this_read = 0
        """Requests answered at once from the bytes of the last read (at most
        MAX_PIPELINED: one read's worth of pipelined requests must not hold the event
        loop long; the rest queue, within the same bound as any)."""

    def connection_made(self, transport: Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        writable = LeanEvent()
        writable.set()  # as FlowControl starts: writing is not paused
        self.flow._is_writable_event = writable
        self.server = shared_address(self.server)
        if self.client is not None:  # a proxy's address, on every connection it makes
            self.client = (sys.intern(self.client[0]), self.client[1])

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["asgi"] = asgi_info(self.asgi_version)

    def on_headers_complete(self) -> None:
        # an answer written at once earlier in this read armed the keep-alive wait; a
        # request has begun, so it must not cut this one (uvicorn stops it only when
        # bytes come, and they came before that answer)
        self._unset_keepalive_if_required()
        before = self.cycle
        queued = before is not None and not before.response_complete
        if (
            not queued
            and (self._at_once is not None or self._joins is not None)
            and self._at_once_this_read < MAX_PIPELINED
            and self._parsed_at_once()
        ):
            if self._at_once is not None and self._answered_at_once(self._at_once):
                self._at_once_this_read += 1
                return
            if self._joins is not None and self._join_taken(self._joins):
                return
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

    def data_received(self, data: bytes) -> None:
        self._at_once_this_read = 0
        super().data_received(data)

    def _parsed_at_once(self) -> bool:
        """Whether the request whose head was just parsed may be answered here; its scope
        then has what uvicorn would put in it. Not while the client leaves answers unread
        (uvicorn then waits before writing more, and reads no more requests meanwhile), nor
        for what uvicorn treats specially (upgrades, an escaped path, a root path, too many
        connections, a client waiting for ``100 Continue``)."""
        parser = self.parser
        method = parser.get_method()
        if method not in HOT_METHODS or self.flow.write_paused or self.root_path:
            return False
        if parser.should_upgrade() or self.expect_100_continue:
            return False
        limit = self.limit_concurrency
        if limit is not None and (len(self.connections) >= limit or len(self.tasks) >= limit):
            return False
        url = httptools.parse_url(self.url)
        raw_path: bytes = url.path
        if b"%" in raw_path:
            return False
        http_version = parser.get_http_version()
        scope = self.scope
        scope["method"] = method.decode("ascii")
        if http_version != "1.1":
            scope["http_version"] = http_version
        scope["path"] = raw_path.decode("ascii")
        scope["raw_path"] = raw_path
        scope["query_string"] = url.query or b""
        self._keep_alive_now = http_version != "1.0" and parser.should_keep_alive()
        return True

    def _answered_at_once(self, answers: AnswersAtOnce) -> bool:
        """Answer the request whose head was just parsed (``_parsed_at_once``), if
        ``answers`` can now."""
        self._written = False
        try:
            if not answers.answer(self.scope, self._write_at_once):
                return False
        except Exception:  # as uvicorn does when an app fails: a 500 if nothing went out
            self.logger.exception("Exception in an answer written at once")
            self._keep_alive_now = False
            if not self._written:
                self._write_at_once(500, INTERNAL_ERROR_HEADERS, INTERNAL_ERROR)
        self.cycle = ANSWERED_AT_ONCE  # type: ignore[assignment]
        if not self._keep_alive_now:
            self.transport.close()
        self.on_response_complete()  # counts it, and waits for the next (keep-alive)
        return True

    def _write_at_once(self, status: int, headers: list[Header], body: bytes) -> None:
        """The whole response in one write, with the server's headers, as uvicorn writes
        it (``connection: close`` when the connection ends after it)."""
        self._write(status, headers, body, keep_alive=self._keep_alive_now)
        self._written = True

    def _write(self, status: int, headers: list[Header], body: bytes, *, keep_alive: bool) -> None:
        content = [STATUS_LINE[status]]
        closing = False
        for name, value in (*self.server_state.default_headers, *headers):
            content += (name, b": ", value, b"\r\n")
            closing = closing or (name == b"connection" and value == b"close")
        if not keep_alive and not closing:
            content.append(b"connection: close\r\n")
        content += (b"\r\n", body)
        self.transport.write(b"".join(content))

    # joins taken as they are parsed ------------------------------------------------
    def _join_taken(self, joins: JoinsAtOnce) -> bool:
        """Take the join whose head was just parsed (``_parsed_at_once``), if it is one
        and its body fits: the parser gathers the body (on_body), and when it is whole
        (on_message_complete) a task answers it."""
        scope = self.scope
        room = joins.room_at_once(scope)
        if room is None:
            return False
        length = 0
        for name, value in self.headers:
            if name == b"transfer-encoding":
                return False  # a body of unknown size: the framework reads it
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    return False  # (the parser refuses it first)
        max_bytes, seconds = joins.body_limits
        if length > max_bytes:
            return False  # the framework refuses it (413), as it does now
        cycle = _JoinAtOnce(scope, room, self._keep_alive_now)
        self.cycle = cycle  # type: ignore[assignment]
        if length:  # a body that does not come whole in time is refused (408)
            cycle.deadline = self.loop.call_later(
                seconds, self._join_too_slow, joins, cycle, seconds
            )
        return True

    def on_body(self, body: bytes) -> None:
        cycle: Any = self.cycle
        if type(cycle) is _JoinAtOnce:
            if not cycle.started and not cycle.response_complete:
                cycle.body += body  # within its content-length (the parser holds it to it)
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        cycle: Any = self.cycle
        if type(cycle) is not _JoinAtOnce:
            super().on_message_complete()
            return
        if cycle.started:
            return  # a request uvicorn upgrades, pipelined behind the join
        cycle.started = True
        if cycle.deadline is not None:
            cycle.deadline.cancel()
            cycle.deadline = None
        joins = self._joins
        if cycle.response_complete or joins is None:
            return  # refused (too slow) already
        task = self.loop.create_task(self._answer_join(joins, cycle))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)  # counted in the concurrency limit; a shutdown waits for it

    async def _answer_join(self, joins: JoinsAtOnce, cycle: _JoinAtOnce) -> None:
        written = False

        def write(status: int, headers: list[Header], body: bytes) -> None:
            nonlocal written
            if not written and not cycle.disconnected and not self.transport.is_closing():
                self._write(status, headers, body, keep_alive=cycle.keep_alive)
            written = True

        try:
            await joins.join_at_once(cycle.scope, cycle.room, cycle.body, write)
        except BaseException:  # as uvicorn does when an app fails or a stop cancels it past
            # its grace: a 500 if nothing went out, and the connection closed
            self.logger.exception("Exception in a join answered at once")
            cycle.keep_alive = False
            write(500, INTERNAL_ERROR_HEADERS, INTERNAL_ERROR)
        finally:
            self._join_answered(cycle)

    def _join_too_slow(self, joins: JoinsAtOnce, cycle: _JoinAtOnce, waited: float) -> None:
        cycle.deadline = None
        if cycle.response_complete or cycle.disconnected:
            return
        cycle.keep_alive = False  # the client may still be sending
        try:
            if not self.transport.is_closing():
                joins.refuse_at_once(
                    cycle.scope,
                    BodyTimeout(),
                    lambda status, headers, body: self._write(
                        status, headers, body, keep_alive=False
                    ),
                    waited,
                )
        finally:
            self._join_answered(cycle)  # and closed, whatever happened

    def _join_answered(self, cycle: _JoinAtOnce) -> None:
        """As uvicorn ends a request cycle: complete; the connection closed unless it
        stays open; the next queued request started, or the keep-alive wait."""
        if cycle.response_complete:
            return
        cycle.response_complete = True
        if not cycle.keep_alive and not self.transport.is_closing():
            self.transport.close()
        self.on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        cycle: Any = self.cycle
        if type(cycle) is _JoinAtOnce and cycle.deadline is not None:
            cycle.deadline.cancel()
            cycle.deadline = None
        super().connection_lost(exc)
        for cycle in self._unfinished or ():
            if not cycle.response_complete:
                cycle.disconnected = True
                cycle.message_event.set()
        self._unfinished = None
