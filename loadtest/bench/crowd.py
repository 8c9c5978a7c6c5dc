"""Many people at once, from this process: joins over HTTP (for their tokens) and
Server-Sent Event streams on plain asyncio sockets (an httpx stream each would cost the
client more than the server we measure). Each stream sends its own ``X-Forwarded-For``
address (the stack trusts loopback as a proxy), so per-address stream limits do not cap a
crowd that comes from one machine."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote

import httpx


def fake_address(i: int) -> str:
    """The i-th address of 198.18.0.0/15, the range set aside for benchmarks (RFC 2544)."""
    return f"198.{18 + (i >> 16) % 2}.{(i >> 8) & 255}.{i & 255}"


async def join_many(
    client: httpx.AsyncClient,
    path: str,
    count: int,
    *,
    concurrency: int = 32,
    progress: Callable[[int], None] | None = None,
) -> list[str]:
    """``count`` joins by POST ``path``; their tokens, in the order they joined."""
    tokens: list[str] = [""] * count
    order = iter(range(count))
    done = 0

    async def worker() -> None:
        nonlocal done
        for i in order:
            for attempt in range(3):
                try:
                    r = await client.post(path)
                    break
                except httpx.TransportError:  # a keep-alive connection the server closed
                    if attempt == 2:
                        raise
            r.raise_for_status()
            tokens[i] = r.json()["token"]
            done += 1
            if progress is not None and done % 500 == 0:
                progress(done)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return tokens


@dataclass
class Stream:
    token: str
    address: str
    counts: Counter[str] = field(default_factory=Counter)
    status: int = 0
    closed: bool = False
    opened: asyncio.Event = field(default_factory=asyncio.Event)


class SseCrowd:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.streams: list[Stream] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def _run(self, path: str, stream: Stream) -> None:
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port, limit=1 << 16)
        except OSError:
            stream.closed = True
            stream.opened.set()
            return
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Accept: text/event-stream\r\nX-Forwarded-For: {stream.address}\r\n\r\n".encode()
        )
        try:
            status_line = await reader.readline()
            stream.status = int(status_line.split()[1]) if status_line else 0
            while (await reader.readline()).strip():
                pass  # headers
            stream.opened.set()
            event = ""
            while True:
                raw = await reader.readline()
                if not raw:
                    break
                if raw.startswith(b"event: "):
                    event = raw[7:].decode().strip()
                elif raw in (b"\n", b"\r\n") and event:
                    stream.counts[event] += 1
                    event = ""
        except (OSError, ValueError, IndexError):
            pass
        finally:
            stream.closed = True
            stream.opened.set()
            writer.close()

    def open(self, path_of: Callable[[str], str], tokens: list[str]) -> list[Stream]:
        start = len(self.streams)
        new = [Stream(token, fake_address(start + i + 1)) for i, token in enumerate(tokens)]
        self.streams.extend(new)
        self.tasks.extend(asyncio.create_task(self._run(path_of(s.token), s)) for s in new)
        return new

    async def open_in_batches(
        self,
        path_of: Callable[[str], str],
        tokens: list[str],
        *,
        batch: int = 500,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Open streams ``batch`` at a time, each batch waiting for its answers to start."""
        for at in range(0, len(tokens), batch):
            new = self.open(path_of, tokens[at : at + batch])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(s.opened.wait() for s in new)), timeout=60)
            if progress is not None:
                progress(len(self.streams))

    def live(self) -> list[Stream]:
        return [s for s in self.streams if not s.closed]

    def total(self, event: str) -> int:
        return sum(s.counts[event] for s in self.streams)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def events_path(prefix: str) -> Callable[[str], str]:
    return lambda token: f"{prefix}?token={quote(token)}"


async def until(check: Callable[[], bool], seconds: float, every: float = 0.05) -> bool:
    """Poll ``check()`` until it is true or ``seconds`` pass; says which."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        if check():
            return True
        await asyncio.sleep(every)
    return bool(check())
