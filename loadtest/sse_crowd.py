"""Many Server-Sent Event streams from one process, on plain asyncio sockets (an httpx
stream each would cost the client more than the server we are measuring)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote


@dataclass
class Stream:
    token: str
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    status: int = 0
    closed: bool = False

    def count(self, name: str) -> int:
        return sum(1 for e, _ in self.events if e == name)


class SseCrowd:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.streams: list[Stream] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def _run(self, room: str, stream: Stream) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        path = f"/v1/rooms/{room}/events?token={quote(stream.token)}"
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        try:
            status_line = await reader.readline()
            stream.status = int(status_line.split()[1])
            while (await reader.readline()).strip():
                pass  # headers
            event, data = "", ""
            while True:
                raw = await reader.readline()
                if not raw:
                    break
                line = raw.decode().rstrip("\r\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    data += line[6:]
                elif line == "" and event and data:
                    stream.events.append((event, json.loads(data)))
                    event, data = "", ""
        finally:
            stream.closed = True
            writer.close()

    def open(self, room: str, tokens: list[str]) -> list[Stream]:
        new = [Stream(token) for token in tokens]
        self.streams.extend(new)
        self.tasks.extend(asyncio.create_task(self._run(room, s)) for s in new)
        return new

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def until(check: Any, seconds: float, every: float = 0.1) -> bool:
    """Poll ``check()`` until it is true or ``seconds`` pass; says which."""
    for _ in range(max(1, int(seconds / every))):
        if check():
            return True
        await asyncio.sleep(every)
    return bool(check())
