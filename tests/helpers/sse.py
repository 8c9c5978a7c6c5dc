"""Reading Server-Sent Events as a browser's EventSource does."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class SseClient:
    """An EventSource-like reader: every event with the time it arrived."""

    url: str
    token: str
    events: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)
    last_id: str = ""

    async def run(self, client: httpx.AsyncClient) -> None:
        async with client.stream("GET", self.url, params={"token": self.token}) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            event, data = "message", ""
            async for line in r.aiter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    data += line[6:]
                elif line.startswith("id: "):
                    self.last_id = line[4:]
                elif line == "" and data:
                    self.events.append((time.time(), event, json.loads(data)))
                    event, data = "message", ""

    def first(self, name: str) -> tuple[float, dict[str, Any]] | None:
        return next(((t, d) for t, e, d in self.events if e == name), None)
