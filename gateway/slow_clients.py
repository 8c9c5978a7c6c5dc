"""Caps on clients that send slowly or too much: headers that dribble in (a "slowloris"),
heads without end and bodies that never finish hold a connection, memory and a task each,
for free, unless someone stops them.

- ``header_deadline_protocol(seconds)``: uvicorn's HTTP protocol with a deadline on the
  request head: a connection whose request line and headers are not complete in time is
  answered ``408`` and closed (uvicorn itself waits for ever); and a cap on its size: a
  head going on for ``MAX_HEAD_BYTES`` past its first read is answered
  ``431 head_too_large`` and the connection closed (uvicorn's httptools protocol takes
  a head of any size, 100 MB and more, and keeps it). Trailer fields after a chunked
  body are not kept (nothing reads them), and a chunked message that goes on past the
  largest body and head (its trailers, which the parser holds whole, included) closes
  its connection.
- ``body_deadline_middleware``: the body of a request must arrive within its deadline and
  within the size limit, else ``408 body_timeout`` / ``413 body_too_large``; the body is
  read here and handed on whole, so the app never waits on the client.

Connections beyond a process's share are refused by uvicorn's ``limit_concurrency`` and
idle keep-alive connections close after ``timeout_keep_alive`` (see serving.py).
"""

from __future__ import annotations

import asyncio
import json
from asyncio import TimerHandle, Transport
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.lean_connections import LeanHttpToolsProtocol
from gateway.raw_calls import Answer, send_answer
from shared.errors import BodyTimeout, BodyTooLarge, HeadTooLarge, WaitroomError

TIMED_OUT_HEAD = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncontent-length: 0\r\n\r\n"
)
_HEAD_TOO_LARGE_BODY = json.dumps(
    {"error": {"code": HeadTooLarge.code, "message": HeadTooLarge.message}}
).encode()
HEAD_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%b"
    % (len(_HEAD_TOO_LARGE_BODY), _HEAD_TOO_LARGE_BODY)
)
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LINGER_SECONDS = 2.0
NOT_COUNTING, FIRST_READ = -2, -1
MAX_HEAD_BYTES = 64 * 1024
"""The most a request's line and header fields may take after the read they begin in (one
read is at most 256 KiB): a browser's, cookies and all, are a few kilobytes (nginx takes
8 KiB a field line by default; Node.js 16 KiB a head)."""

# plain ASGI shapes: this layer only moves messages along
Message = MutableMapping[str, Any]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class HeaderDeadlineProtocol(LeanHttpToolsProtocol):
    """uvicorn's httptools protocol (its lean variant, see lean_connections.py), closing
    a connection whose request head takes longer than ``seconds`` (from the connection's
    start or the first byte of a request). A class of the module, so several server
    processes can be given it by name.

    A new connection's deadline runs from its start until its first head is complete.
    After that it is set only for a head still incomplete when the bytes at hand are
    parsed: a later head that comes whole in one read (nearly all) costs no timer."""

    __slots__ = ("_chunked", "_counted", "_head_deadline", "_in_head", "_limit", "_refused")
    # (slots: see LeanHttpToolsProtocol's)
    seconds = 10.0
    max_body_bytes = 16_384

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: TimerHandle | None = None
        self._in_head = False
        self._counted = NOT_COUNTING
        """Bytes of the reads after the one a head began in while it is incomplete, or
        after the one a chunked body began in until its message ends (its trailers
        included): the parser keeps a field whole before it hands it on. At most
        ``_limit``. The first read is not counted (FIRST_READ until it ends): it may
        also hold requests before, pipelined, bodies and all."""
        self._limit = MAX_HEAD_BYTES
        """A head's: MAX_HEAD_BYTES; a chunked body's: ``max_body_bytes`` + MAX_HEAD_BYTES,
        the most the app takes and the most a head may be."""
        self._chunked = False
        """The head being read says ``Transfer-Encoding``."""
        self._refused = False
        """A head was refused: what still comes is read and dropped until the close."""

    def connection_made(self, transport: Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)
        if self._counted != NOT_COUNTING:  # (a new head or body resets it to FIRST_READ)
            self._counted = 0 if self._counted == FIRST_READ else self._counted + len(data)
            if self._counted > self._limit:
                self._cut_off()
                return
        if self._in_head or self._idle():
            self._arm()

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_head:  # else a trailer field after a chunked body: not kept
            HttpToolsProtocol.on_header(self, name, value)
            if self.headers[-1][0] == b"transfer-encoding":  # (as uvicorn keeps it: lower)
                self._chunked = True

    def _cut_off(self) -> None:
        """Past ``_limit``: a head is answered 431; a chunked message's connection is
        closed with no answer (the app may have answered already, and the client is not
        reading what it sends)."""
        if self._in_head:
            self._refuse(HEAD_TOO_LARGE)
            return
        self._refused = True
        self._disarm()
        self.transport.close()

    def _idle(self) -> bool:
        """Whether no request is begun or being answered after a read: the bytes began
        none (blank lines between requests). uvicorn stopped its keep-alive wait when
        they came, so the head deadline takes over."""
        cycle = self.cycle
        idle = cycle is None or cycle.response_complete
        return idle and self.timeout_keep_alive_task is None

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._chunked = False
        self._counted, self._limit = FIRST_READ, MAX_HEAD_BYTES

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm()
        if self._chunked:
            self._counted, self._limit = FIRST_READ, self.max_body_bytes + MAX_HEAD_BYTES
        else:
            self._counted = NOT_COUNTING
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._counted = NOT_COUNTING
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._head_deadline is None:
            self._head_deadline = self.loop.call_later(self.seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _too_slow(self) -> None:
        self._head_deadline = None
        self._refuse(TIMED_OUT_HEAD)

    def _refuse(self, answer: bytes) -> None:
        """Answer a head refused (too slow, too large) and end the connection: the answer,
        then our side shut, then what the client still sends read and dropped for up to
        LINGER_SECONDS before the close (closed with unread bytes, the connection would be
        reset, and a client still sending would lose the answer)."""
        self._disarm()
        transport = self.transport
        if transport.is_closing():
            return
        self._refused = True
        transport.write(answer)
        if transport.can_write_eof():
            transport.write_eof()
            self._head_deadline = self.loop.call_later(LINGER_SECONDS, transport.close)
        else:
            transport.close()


def header_deadline_protocol(seconds: float, max_body_bytes: int) -> type[HttpToolsProtocol]:
    """The protocol class, with this process's deadline for request heads and its largest
    request body."""
    HeaderDeadlineProtocol.seconds = seconds
    HeaderDeadlineProtocol.max_body_bytes = max_body_bytes
    return HeaderDeadlineProtocol


def body_deadline_middleware(seconds: float, max_bytes: int) -> Any:
    """ASGI middleware factory: read a request's whole body within ``seconds`` and
    ``max_bytes``, then hand it to the app."""

    def middleware(app: ASGIApp) -> ASGIApp:
        async def read_whole(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http" or scope.get("method") not in BODY_METHODS:
                await app(scope, receive, send)
                return
            try:
                body = await read_body_in_time(receive, seconds, max_bytes)
            except WaitroomError as exc:
                await refuse(send, exc)
                return
            if body is None:
                return  # the client went away
            sent = False

            async def replay() -> Message:
                nonlocal sent
                if sent:
                    return await receive()  # after the body: a disconnect, in time
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}

            await app(scope, replay, send)

        return read_whole

    return middleware


async def read_body_in_time(
    receive: Callable[[], Awaitable[Any]], seconds: float, max_bytes: int
) -> bytes | None:
    """The whole body, or None if the client disconnected first; 408 ``body_timeout``
    when it takes longer than ``seconds``, 413 ``body_too_large`` past ``max_bytes``."""
    try:
        async with asyncio.timeout(seconds):
            return await _read_body(receive, max_bytes)
    except TimeoutError:
        raise BodyTimeout() from None


async def _read_body(receive: Callable[[], Awaitable[Any]], max_bytes: int) -> bytes | None:
    """The whole body, or None if the client disconnected first."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise BodyTooLarge()
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def refusal(exc: WaitroomError, headers: tuple[tuple[bytes, bytes], ...] = ()) -> Answer:
    """The answer to a body that came too slowly or is too large: status, headers (the
    connection closes after it: the client may still be sending), body."""
    body = json.dumps({"error": {"code": exc.code, "message": exc.detail}}).encode()
    return (
        exc.status,
        [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            *headers,
        ],
        body,
    )


async def refuse(
    send: Callable[[Any], Awaitable[None]],
    exc: WaitroomError,
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    """Answer a body that came too slowly or is too large, and close the connection."""
    await send_answer(send, refusal(exc, headers))
