"""What every part of the benchmark is handed: the stack, the run it adds rows to, its
sizes, progress output, and HTTP helpers for the admin API."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from loadtest.bench.cpu import CpuWindow
from loadtest.bench.results import Run
from loadtest.bench.stack import ADMIN_KEY, BenchStack
from loadtest.bench.wrk import WrkResult, run_wrk

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
TARGET = "http://127.0.0.1:9/t"


@dataclass
class Sizes:
    seconds: float = 10.0
    """Length of each wrk run."""
    tokens: int = 500
    push_streams: int = 1000
    push_moves: int = 20
    admits: int = 20_000
    relay_events: int = 40_000
    replay_events: int = 60_000
    scale: tuple[int, int, int] = (1_000, 100_000, 1_000_000)
    streams: int = 10_000

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            seconds=2.0,
            tokens=200,
            push_streams=200,
            push_moves=5,
            admits=2_000,
            relay_events=4_000,
            replay_events=4_000,
            scale=(1_000, 10_000, 20_000),
            streams=500,
        )


@dataclass
class Bench:
    stack: BenchStack
    run: Run
    sizes: Sizes
    console: Console
    folder: Path

    def say(self, text: str) -> None:
        self.console.log(text)

    def gateway_client(self, **kwargs: Any) -> httpx.AsyncClient:
        assert self.stack.gateway is not None
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        return httpx.AsyncClient(
            base_url=self.stack.gateway.url, timeout=60, limits=limits, **kwargs
        )

    def floor_client(self) -> httpx.AsyncClient:
        assert self.stack.floor is not None
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        return httpx.AsyncClient(base_url=self.stack.floor.url, timeout=60, limits=limits)

    async def put_room(self, room: str, **fields: Any) -> dict[str, Any]:
        async with self.gateway_client() as c:
            r = await c.put(f"/v1/admin/rooms/{room}", headers=ADMIN, json=fields)
            r.raise_for_status()
            answer: dict[str, Any] = r.json()
            return answer

    async def figures(self, room: str) -> dict[str, Any]:
        async with self.gateway_client() as c:
            r = await c.get(f"/v1/admin/rooms/{room}", headers=ADMIN)
            r.raise_for_status()
            figures: dict[str, Any] = r.json()["figures"]
            return figures

    async def wait_outbox_empty(self, rooms: list[str], seconds: float = 600) -> bool:
        async def empty() -> bool:
            sizes = [int((await self.figures(room))["outbox"]) for room in rooms]
            return not any(sizes)

        return await self.poll(empty, seconds, every=0.1)

    async def poll(
        self, done: Callable[[], Awaitable[bool]], seconds: float = 600, every: float = 0.02
    ) -> bool:
        """Ask ``done()`` every ``every`` seconds until it says yes or ``seconds`` pass."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not await done():
            if loop.time() > deadline:
                return False
            await asyncio.sleep(every)
        return True

    def processes(self, *names: str) -> dict[str, int]:
        """Process ids by role: app (gateway), floor, workers, valkey, nats."""
        s = self.stack
        found: dict[str, int] = {}
        for name in names:
            if name == "app" and s.gateway is not None:
                found["app"] = s.gateway.process_id
            elif name == "floor" and s.floor is not None:
                found["floor"] = s.floor.process_id
            elif name == "workers":
                for child in s.workers:
                    found[child.name] = child.process_id
            elif name == "valkey" and s.valkey is not None:
                found["valkey"] = s.valkey.process_id
            elif name == "nats" and s.nats is not None:
                found["nats"] = s.nats.process_id
        return found

    async def wrk_cpu(
        self, processes: dict[str, int], url: str, **kwargs: Any
    ) -> tuple[WrkResult, dict[str, float]]:
        """A wrk run and the CPU each process used during it."""
        window = CpuWindow(processes).start()
        result = await asyncio.to_thread(run_wrk, url, **kwargs)
        return result, window.stop()
