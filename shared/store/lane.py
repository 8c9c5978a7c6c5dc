"""One pipelined connection to the data store: for the scripts a gateway runs per request,
and for a worker's short scripts and the reads its loops make on every tick.

redis-py gives each call in flight a connection of its pool: a checkout and a return, a
write and a read of its own, a retry wrapper and a timeout per call. Against a real valkey
with 64 calls in flight that cost 170-200 us of the client's CPU per script call on this
2-core machine; a join spent about a fifth of its gateway time there. Here every call made
in one turn of the event loop goes out in one write on one connection, and the answers are
read back in the order asked (the protocol's own pipelining): 15-20 us a call in the same
probe. The server's side gets cheaper too: one read for many calls. A worker's calls come
one or a few at a time: 55 us a call against the pool's 150 us.

It keeps the pool's promises (``shared/redis_conn.py``):
- a broken connection is retried twice, with the same backoff (every script is safe to
  run again after one);
- a store that answers nothing for ``timeout`` seconds while calls wait fails them with
  ``TimeoutError``, not retried (they may have run), and the connection is dropped;
- answers and errors are what redis-py returns with ``decode_responses``: its exception
  classes (``NoScriptError``, ``ResponseError``, ``BusyLoadingError``...), so
  ``shared/store/calls.py`` maps them the same way.

It speaks RESP2 (no ``HELLO``), which is how scripts answer unless they ask otherwise.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

from redis._parsers.base import BaseParser
from redis.asyncio.connection import SSLConnection, parse_url
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, InvalidResponse, NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

Arg = str | int | float | bytes
P = TypeVar("P", bound=asyncio.BaseProtocol)

RETRIES = 2
BACKOFF_BASE = 0.05
BACKOFF_CAP = 0.5
CONNECT_TIMEOUT = 2.0


INCOMPLETE = -1
"""``read_reply``'s position when the buffer ends inside an answer (wait for more bytes).
A position, not an exception: a raised exception kept every frame it passed through."""


def error_of(message: str) -> Exception:
    """The exception redis-py raises for an error answer (by its code: NOSCRIPT, LOADING...)."""
    error: Exception = BaseParser.parse_error(message)  # type: ignore[no-untyped-call]
    return error


def bulk(value: Arg) -> bytes:
    """One argument as a RESP bulk string, encoded as redis-py encodes it (which refuses
    what is not bytes, text or a number)."""
    if isinstance(value, bytes):
        data = value
    elif isinstance(value, str):
        data = value.encode()
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise DataError(f"invalid store argument of type {type(value).__name__}")
    elif isinstance(value, int):
        data = str(value).encode()
    else:
        data = repr(value).encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


def bulks(values: tuple[Arg, ...]) -> bytes:
    """``bulk`` of each value, joined: text and whole numbers (a join's arguments) without
    a call each (a join has 17 of them: the calls were 4 % of its gateway time)."""
    parts = []
    for value in values:
        if type(value) is str:
            data = value.encode()
        elif type(value) is int:
            data = b"%d" % value
        else:
            parts.append(bulk(value))
            continue
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def evalsha_frame(sha: str, packed_keys: bytes, key_count: int, args: tuple[Arg, ...]) -> bytes:
    """``EVALSHA sha key_count keys... args...`` as one RESP command; ``packed_keys`` are
    the keys already as bulk strings (a room's keys are packed once)."""
    head = b"*%d\r\n$7\r\nEVALSHA\r\n%s%s" % (
        3 + key_count + len(args),
        bulk(sha),
        bulk(key_count),
    )
    return head + packed_keys + bulks(args)


def read_reply(buf: bytes | bytearray, pos: int) -> tuple[Any, int]:
    """The answer starting at ``pos`` and the position after it (``INCOMPLETE`` if the
    buffer ends first). An error answer, or text that is not UTF-8, is an exception
    object in the answer's place: it fails its own call only, as in redis-py."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return None, INCOMPLETE
    kind = buf[pos]
    if kind == 0x24:  # $ bulk string
        size = int(buf[pos + 1 : end])
        if size < 0:
            return None, end + 2
        stop = end + 2 + size
        if stop + 2 > len(buf):
            return None, INCOMPLETE
        try:
            return buf[end + 2 : stop].decode(), stop + 2
        except UnicodeDecodeError as exc:
            return exc, stop + 2
    if kind == 0x3A:  # : integer
        return int(buf[pos + 1 : end]), end + 2
    if kind == 0x2A:  # * array
        count = int(buf[pos + 1 : end])
        pos = end + 2
        if count < 0:
            return None, pos
        items: list[Any] = []
        failed: UnicodeDecodeError | None = None
        for _ in range(count):
            item, pos = read_reply(buf, pos)
            if pos == INCOMPLETE:
                return None, INCOMPLETE
            if isinstance(item, UnicodeDecodeError):
                failed = item
            items.append(item)
        return (items if failed is None else failed), pos
    if kind == 0x2B:  # + status
        return buf[pos + 1 : end].decode(), end + 2
    if kind == 0x2D:  # - error (its exception; redis-py's answer in a list too)
        return error_of(buf[pos + 1 : end].decode()), end + 2
    raise InvalidResponse(f"unexpected answer type {chr(kind)!r} from the store")


class CallsLost(Exception):
    """Calls sent ahead of an answer that may or may not have run: the connection broke,
    or the server had lost the script. Their caller decides what to run again."""


class _Connection(asyncio.Protocol):
    """One connection: calls queued in order, written once per turn of the loop."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self.waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.out: list[bytes] = []
        self.buf = bytearray()
        self.progress_at = 0.0
        self.closed = False
        self._loop = asyncio.get_running_loop()
        self._watch: asyncio.TimerHandle | None = None

    # asyncio.Protocol --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # (uvloop's is no subclass)
        self._watch = self._loop.call_later(self.timeout / 4, self._check_progress)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        self.progress_at = self._loop.time()
        pos = 0
        waiting = self.waiting
        try:
            while pos < len(buf):
                value, after = read_reply(buf, pos)
                if after == INCOMPLETE:
                    break
                pos = after
                future = waiting.popleft()
                if future.done():  # its caller was cancelled; the answer is dropped
                    continue
                if isinstance(value, Exception):
                    future.set_exception(value)
                else:
                    future.set_result(value)
        except (ValueError, IndexError, InvalidResponse) as exc:  # not a store's answer
            self.abort(RedisConnectionError(f"unreadable answer from the store: {exc!r}"))
            return
        del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self.abort(RedisConnectionError(f"store connection lost: {exc!r}"))

    # calls -------------------------------------------------------------------------------
    def send(self, frame: bytes) -> asyncio.Future[Any]:
        if self.closed:
            raise RedisConnectionError("store connection closed")
        future: asyncio.Future[Any] = self._loop.create_future()
        if not self.waiting:
            self.progress_at = self._loop.time()
        self.waiting.append(future)
        if not self.out:
            self._loop.call_soon(self._flush)
        self.out.append(frame)
        return future

    def _flush(self) -> None:
        if self.out and not self.closed and self.transport is not None:
            self.transport.write(b"".join(self.out))
        self.out.clear()

    def _check_progress(self) -> None:
        if self.closed:
            return
        if self.waiting and self._loop.time() - self.progress_at > self.timeout:
            self.abort(RedisTimeoutError(f"no answer from the store in {self.timeout} s"))
            return
        self._watch = self._loop.call_later(self.timeout / 4, self._check_progress)

    def abort(self, error: Exception) -> None:
        """Fail every call waiting with ``error`` and drop the connection."""
        self.closed = True
        if self._watch is not None:
            self._watch.cancel()
        waiting, self.waiting = self.waiting, collections.deque()
        for future in waiting:
            if not future.done():
                future.set_exception(error)
        self.out.clear()
        if self.transport is not None:
            self.transport.abort()


class _WholeAnswer(asyncio.Protocol):
    """A connection that keeps every byte it is sent, unread, until they end with ``end``
    (``answer_whole``): a large answer costs the loop no parsing as it comes."""

    def __init__(self, end: bytes) -> None:
        self.end = end
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self.done: asyncio.Future[bytearray] = self._loop.create_future()
        self.progress_at = self._loop.time()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self.progress_at = self._loop.time()
        if not self.done.done() and self.buf.endswith(self.end):
            self.done.set_result(self.buf)  # (not copied: a snapshot's may be 100 MB)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(RedisConnectionError(f"store connection lost: {exc!r}"))


LANE_URL_PARTS = frozenset({"host", "port", "db", "username", "password", "path"})
"""What the lane takes from a URL (parsed by redis-py's ``parse_url``); a URL setting
anything else (``?socket_timeout=``, ``?ssl_cert_reqs=``...) is left to the pool."""


class ScriptLane:
    """EVALSHA calls (and a few plain commands) over one pipelined connection to ``url``
    (``redis://``, ``rediss://`` with ``tls_ca``, or ``unix://``; credentials and database
    as in the URL), opened on the first call and again after it broke. ``opened`` counts
    the connections it opened."""

    def __init__(self, url: str, *, tls_ca: Path | None = None, timeout: float = 5.0) -> None:
        if not self.serves(url):
            raise ValueError("the script lane does not take this URL's settings")
        self.params: dict[str, Any] = dict(parse_url(url))
        self.tls = self.params.pop("connection_class", None) is SSLConnection
        self.tls_ca = tls_ca
        self.timeout = timeout
        self._conn: _Connection | None = None
        self._opening: asyncio.Future[_Connection] | None = None
        self._loading: dict[str, asyncio.Future[Any]] = {}
        self._closed = False
        self.opened = 0

    @classmethod
    def for_url(cls, url: str, *, tls_ca: Path | None = None) -> ScriptLane | None:
        """A lane to ``url``, or None for a URL with settings of its own (the pool then
        takes every call)."""
        return cls(url, tls_ca=tls_ca) if cls.serves(url) else None

    @staticmethod
    def serves(url: str) -> bool:
        """Whether the lane can reach the store as the pool would at ``url``."""
        try:
            params = parse_url(url)
        except ValueError:
            return False
        return set(params) - {"connection_class"} <= LANE_URL_PARTS

    async def evalsha(
        self,
        sha: str,
        packed_keys: bytes,
        key_count: int,
        args: tuple[Arg, ...],
        *,
        retries: int = RETRIES,
    ) -> Any:
        """Run a loaded script; raises redis-py's errors (``NoScriptError`` if the server
        lost it). A broken connection is retried ``retries`` times; a caller that keeps
        several calls on their way in an order that matters asks for none (each retry is
        sent when its own backoff ends, so calls retried together may go in another
        order)."""
        return await self._send(evalsha_frame(sha, packed_keys, key_count, args), retries)

    async def command(self, *words: Arg) -> Any:
        """Any other command, for a read a process makes on every tick (``INFO``,
        ``SMEMBERS``); retried as ``evalsha``."""
        return await self._send(b"*%d\r\n%s" % (len(words), bulks(words)), RETRIES)

    async def _send(self, frame: bytes, retries: int) -> Any:
        failures = 0
        while True:
            try:
                conn = self._conn
                if conn is None or conn.closed:
                    conn = await self._connect()
                return await conn.send(frame)
            except RedisConnectionError:
                failures += 1
                if failures > retries or self._closed:
                    raise
                await asyncio.sleep(min(BACKOFF_CAP, BACKOFF_BASE * 2**failures))

    async def run(
        self, script: AsyncScript, packed_keys: bytes, key_count: int, args: tuple[Arg, ...]
    ) -> Any:
        """``evalsha`` of a script registered with a redis-py client; if the server lost it
        (it restarted), it is loaded again (once for all the calls that found it lost, on
        this connection) and run again."""
        try:
            return await self.evalsha(script.sha, packed_keys, key_count, args)
        except NoScriptError:
            await self._load(script)
            return await self.evalsha(script.sha, packed_keys, key_count, args)

    async def _load(self, script: AsyncScript) -> None:
        """SCRIPT LOAD, one at a time per script: a worker's thousand lease asks that found
        the store restarted wait for one load, not a thousand."""
        loading = self._loading.get(script.sha)
        if loading is None:
            source = script.script
            text = source if isinstance(source, str | bytes) else bytes(source)
            loading = asyncio.ensure_future(self.command("SCRIPT", "LOAD", text))
            self._loading[script.sha] = loading
            loading.add_done_callback(functools.partial(self._loaded, script.sha))
        await asyncio.shield(loading)

    def _loaded(self, sha: str, loading: asyncio.Future[Any]) -> None:
        self._loading.pop(sha, None)
        if not loading.cancelled():
            loading.exception()  # (its waiters have it; a waiter cancelled meanwhile not)

    async def aclose(self) -> None:
        self._closed = True
        if self._conn is not None:
            self._conn.abort(RedisConnectionError("store connection closed"))
            self._conn = None

    async def _connect(self) -> _Connection:
        """The connection, opened once for every caller waiting on it: they all get it, or
        all get the same error at once."""
        if self._closed:
            raise RedisConnectionError("store connection closed")
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._open())
            self._opening.add_done_callback(self._opened)
        return await asyncio.shield(self._opening)

    def _opened(self, opening: asyncio.Future[_Connection]) -> None:
        self._opening = None
        if opening.cancelled() or opening.exception() is not None:
            return
        conn = opening.result()
        if self._closed:  # closed while it was opening
            conn.abort(RedisConnectionError("store connection closed"))
            return
        self.opened += 1
        self._conn = conn

    def handshake_commands(self) -> list[bytes]:
        """What a connection of this lane sends first (their answers come first)."""
        return handshake(self.params)

    async def answer_whole(self, frame: bytes, end: bytes, *, within: float) -> bytearray:
        """The raw answers to ``frame``, after those to the URL's AUTH and SELECT
        (``handshake``), read on a connection of its own until they end with ``end``: the
        answer to the frame's last command, which the caller makes unmistakable. For an
        answer too large to parse on the loop (a room's snapshot); the lane's calls do not
        wait behind it. ``RedisTimeoutError`` if it is not whole in ``within`` seconds, or
        once the store sent nothing for the lane's ``timeout`` (an error answer in place of
        ``end``'s, say: a BUSY store, a refused AUTH)."""
        if self._closed:
            raise RedisConnectionError("store connection closed")
        whole = await self._dial(lambda: _WholeAnswer(end))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        try:
            assert whole.transport is not None
            whole.transport.write(b"".join(self.handshake_commands()) + frame)
            whole.progress_at = loop.time()
            while True:
                wait = min(self.timeout, deadline - loop.time())
                try:
                    return await asyncio.wait_for(asyncio.shield(whole.done), max(wait, 0))
                except TimeoutError as exc:
                    now = loop.time()
                    if now >= deadline or now - whole.progress_at >= self.timeout:
                        raise RedisTimeoutError(
                            f"no whole answer from the store ({len(whole.buf)} bytes came)"
                        ) from exc
        finally:
            if whole.transport is not None:
                whole.transport.abort()

    async def _open(self) -> _Connection:
        conn = await self._dial(lambda: _Connection(self.timeout))
        try:
            for command in handshake(self.params):
                await conn.send(command)
        except BaseException:
            conn.abort(RedisConnectionError("store handshake failed"))
            raise
        return conn

    async def _dial(self, made: Callable[[], P]) -> P:
        """A connection to the store speaking ``made()``'s protocol (no handshake yet)."""
        loop = asyncio.get_running_loop()
        params = self.params
        try:
            if "path" in params:
                connecting = loop.create_unix_connection(made, params["path"])
            else:
                host, port = params.get("host", "localhost"), params.get("port", 6379)
                context = None
                if self.tls:  # as redis-py: the system's CAs, and the given one
                    context = ssl.create_default_context()
                    if self.tls_ca is not None:
                        context.load_verify_locations(cafile=str(self.tls_ca))
                connecting = loop.create_connection(
                    made, host, port, ssl=context, server_hostname=host if context else None
                )
            _, conn = await asyncio.wait_for(connecting, CONNECT_TIMEOUT)
        except TimeoutError as exc:  # as redis-py: a timeout, not retried
            raise RedisTimeoutError("timed out connecting to the store") from exc
        except OSError as exc:
            raise RedisConnectionError(f"cannot connect to the store: {exc!r}") from exc
        return conn


def handshake(params: dict[str, Any]) -> list[bytes]:
    """AUTH and SELECT for the URL's credentials and database, as RESP commands."""
    commands: list[bytes] = []
    password, user = params.get("password"), params.get("username")
    if password is not None:
        words: list[Arg] = ["AUTH", user, password] if user else ["AUTH", password]
        commands.append(b"*%d\r\n" % len(words) + b"".join(bulk(w) for w in words))
    db = int(params.get("db") or 0)
    if db:
        commands.append(b"*2\r\n" + bulk("SELECT") + bulk(db))
    return commands
