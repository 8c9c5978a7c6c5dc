"""Graceful scale-down, with real signals to real processes: a gateway told to stop tells
its event streams to reconnect (a short ``retry:`` and a ``reconnect`` event) and closes
them at once instead of holding them to the shutdown deadline; the people reconnect to
another gateway and miss nothing. A worker told to stop releases its leases, so another
replica takes its rooms at once rather than after the lease time."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from gateway.live import RECONNECT_RETRY_MS
from shared import keys
from shared.settings import Settings
from tests.helpers.api import RoomFactory, figures
from tests.helpers.servers import GatewayServer, ModuleProc, in_process_workers, settings_env
from tests.helpers.sse import SseClient
from tests.helpers.wait import wait_until
from waitroom.processes import free_port, wait_for_port

pytestmark = pytest.mark.slow

PEOPLE = 6


async def raw_stream(url: str, token: str, lines: list[str]) -> None:
    """Every line of one event stream, as sent (to see the retry hint)."""
    async with (
        httpx.AsyncClient(timeout=30) as c,
        c.stream("GET", url, params={"token": token}) as r,
    ):
        async for line in r.aiter_lines():
            lines.append(line)


async def test_a_stopping_gateway_sends_its_streams_elsewhere_at_once(
    settings: Settings,
    gateway: GatewayServer,
    client: httpx.AsyncClient,
    make_room: RoomFactory,
    tmp_path: Path,
) -> None:
    room = await make_room(status="paused", max_active=PEOPLE, heartbeat_timeout=600)
    tokens = [
        (await client.post(f"/v1/rooms/{room}/enqueue")).json()["token"] for _ in range(PEOPLE)
    ]
    port = free_port()
    log_path = tmp_path / "stopping-gateway.log"
    stopping = ModuleProc(
        "gateway", settings_env(settings, WAITROOM_PORT=str(port)), log_path
    ).start()
    try:
        wait_for_port(port, 20, stopping.proc)
        there = f"http://127.0.0.1:{port}/v1/rooms/{room}/events"
        streams = [SseClient(there, token) for token in tokens[1:]]
        raw: list[str] = []
        async with httpx.AsyncClient(timeout=30) as c:
            tasks = [asyncio.create_task(s.run(c)) for s in streams]
            tasks.append(asyncio.create_task(raw_stream(there, tokens[0], raw)))

            async def all_placed() -> bool:
                return all(s.first("position") for s in streams) and "event: position" in raw

            await wait_until(all_placed, seconds=20)
            stopped_at = time.time()
            stopping.signal(signal.SIGTERM)
            # every stream ends by itself, well before uvicorn's 10 s shutdown deadline
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=8)
        assert stopping.wait(15) == 0
    finally:
        stopping.stop()
    log = log_path.read_text()
    assert "timeout graceful shutdown exceeded" not in log  # nothing was cut at the deadline
    assert '"streams_told_to_reconnect"' in log
    for s in streams:
        _, last_event, data = s.events[-1]
        assert (last_event, data) == ("reconnect", {"reason": "shutdown"})
    told = [at for s in streams for at, e, _ in s.events if e == "reconnect"]
    print(f"\nstreams told to reconnect {max(told) - stopped_at:.3f} s after SIGTERM (max)")
    assert f"retry: {RECONNECT_RETRY_MS}" in raw
    assert raw.index(f"retry: {RECONNECT_RETRY_MS}") < raw.index("event: reconnect")

    # they reconnect to the other gateway, find their places and hear of their admission
    here = f"{gateway.url}/v1/rooms/{room}/events"
    again = [SseClient(here, token) for token in tokens]
    async with httpx.AsyncClient(timeout=30) as c, in_process_workers(settings):
        tasks = [asyncio.create_task(s.run(c)) for s in again]
        await wait_until(lambda: _all_seen(again, "position"), seconds=20)
        r = await client.put(
            f"/v1/admin/rooms/{room}",
            json={"status": "active", "release_rate": 50},
            headers={"Authorization": f"Bearer {settings.admin_key}"},
        )
        assert r.status_code == 200, r.text
        await wait_until(lambda: _all_seen(again, "admitted"), seconds=20)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert (await figures(client, room))["admitted"] == PEOPLE


async def _all_seen(clients: list[SseClient], event: str) -> bool:
    return all(s.first(event) for s in clients)


@pytest.mark.parametrize(
    ("module", "role"), [("admission_worker", "admission"), ("heartbeat_worker", "heartbeat")]
)
async def test_a_stopping_worker_hands_its_rooms_over_at_once(
    settings: Settings,
    redis: Redis,
    make_room: RoomFactory,
    tmp_path: Path,
    module: str,
    role: str,
) -> None:
    lease_ms = 600_000  # ten minutes: no lease runs out while this test runs
    room = await make_room(status="paused")
    workers = {
        name: ModuleProc(
            module,
            settings_env(settings, WAITROOM_INSTANCE=name, WAITROOM_LEASE_MS=str(lease_ms)),
            tmp_path / f"{name}.log",
        ).start()
        for name in (f"{settings.instance}-a", f"{settings.instance}-b")
    }
    lease_key = keys.RoomKeys(room).lease(role)

    async def holder() -> str | None:
        value = await redis.get(lease_key)
        if value is None:
            return None
        return next((n for n in workers if str(value).startswith(f"{role}-{n}:")), None)

    try:
        first = await wait_until(holder, seconds=20)
        other = next(name for name in workers if name != first)

        async def taken_over() -> bool:
            return await holder() == other

        stopped_at = time.monotonic()
        workers[first].signal(signal.SIGTERM)
        # the lease cannot run out in the test's lifetime: another holder means it was
        # released
        await wait_until(taken_over, seconds=60, every=0.01)
        took = time.monotonic() - stopped_at
        assert workers[first].wait(15) == 0
        assert "leases_released" in (tmp_path / f"{first}.log").read_text()
        print(f"\n{role} lease taken over {took:.3f} s after SIGTERM (lease {lease_ms / 1000} s)")
    finally:
        for proc in workers.values():
            proc.stop()
