"""Live updates over Server-Sent Events, across gateway pods."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis

from shared.events import Admitted
from shared.settings import Settings
from tests.helpers.api import ADMIN, bearer
from tests.helpers.servers import (
    GatewayServer,
    ModuleProc,
    in_process_workers,
    room_events,
    settings_env,
)
from tests.helpers.sse import SseClient
from tests.helpers.wait import wait_until


async def test_sse_opens_with_the_current_state_and_follows_the_line(
    client: httpx.AsyncClient, make_room: Any
) -> None:
    room = await make_room(status="paused")
    people = [(await client.post(f"/v1/rooms/{room}/enqueue")).json() for _ in range(3)]
    sse = SseClient(f"/v1/rooms/{room}/events", people[2]["token"])
    task = asyncio.create_task(sse.run(client))
    try:
        await wait_until(lambda: _has(sse, "position"))
        opening = sse.first("position")
        assert opening is not None
        assert opening[1]["position"] == 3
        assert sse.first("room") is not None
        await client.post(f"/v1/rooms/{room}/leave", headers=bearer(people[0]["token"]))

        async def moved_up() -> bool:
            return any(e == "position" and d["position"] == 2 for _, e, d in sse.events)

        await wait_until(moved_up, seconds=5)
        await client.put(f"/v1/admin/rooms/{room}", headers=ADMIN, json={"status": "maintenance"})

        async def told_maintenance() -> bool:
            return any(e == "room" and d["status"] == "maintenance" for _, e, d in sse.events)

        await wait_until(told_maintenance, seconds=5)
    finally:
        task.cancel()


async def _has(sse: SseClient, name: str) -> bool:
    return sse.first(name) is not None


async def test_admitted_reaches_every_client_on_both_gateways_within_a_second(
    settings: Settings, redis: Redis, tmp_path: Path
) -> None:
    async with (
        GatewayServer(settings) as one,
        GatewayServer(settings) as two,
        httpx.AsyncClient(timeout=30) as c,
    ):
        room = "live-" + settings.instance
        r = await c.put(
            f"{one.url}/v1/admin/rooms/{room}",
            headers=ADMIN,
            json={
                "target_url": "http://127.0.0.1:9/t",
                "status": "paused",
                "max_positions_per_ip": 0,
                "release_rate": 15,
                "max_active": 100,
            },
        )
        assert r.status_code == 201
        people = [(await c.post(f"{one.url}/v1/rooms/{room}/enqueue")).json() for _ in range(40)]
        clients = [
            SseClient(f"{(one, two)[i % 2].url}/v1/rooms/{room}/events", p["token"])
            for i, p in enumerate(people)
        ]
        tasks = [asyncio.create_task(s.run(c)) for s in clients]
        worker = ModuleProc(
            "admission_worker", settings_env(settings, WAITROOM_INSTANCE="live"), tmp_path / "w"
        ).start()
        try:

            async def all_opened() -> bool:
                return all(s.first("position") for s in clients)

            await wait_until(all_opened)
            await c.put(
                f"{two.url}/v1/admin/rooms/{room}", headers=ADMIN, json={"status": "active"}
            )

            async def all_admitted() -> bool:
                return all(s.first("admitted") for s in clients)

            await wait_until(all_admitted, seconds=20)
        finally:
            worker.stop()
            for t in tasks:
                t.cancel()
    admitted_at = {
        e.position_id: e.ts
        for e in await room_events(settings.nats_url, room)
        if isinstance(e, Admitted)
    }
    lags = []
    for person, sse in zip(people, clients, strict=True):
        got = sse.first("admitted")
        assert got is not None
        received, data = got
        assert data["redirect_url"].startswith(f"{(one.url, two.url)[clients.index(sse) % 2]}/")
        assert data["access_token"]
        lags.append(received - admitted_at[person["position_id"]])
    # admissions were spread over ~3 s at 15/s; each reached its client within a second
    assert max(lags) < 1.0, sorted(lags)[-5:]


async def test_an_open_stream_keeps_a_place_alive(
    client: httpx.AsyncClient, make_room: Any, settings: Settings
) -> None:
    # the stream marks its place seen every heartbeat_interval; three of them fit in the
    # timeout, so a busy machine's late tick does not expire it
    room = await make_room(status="paused", heartbeat_interval=2, heartbeat_timeout=6)
    streaming = (await client.post(f"/v1/rooms/{room}/enqueue")).json()
    silent = (await client.post(f"/v1/rooms/{room}/enqueue")).json()
    sse = SseClient(f"/v1/rooms/{room}/events", streaming["token"])
    task = asyncio.create_task(sse.run(client))
    try:
        async with in_process_workers(settings):

            async def silent_gone() -> bool:
                r = await client.get(f"/v1/rooms/{room}/status", headers=bearer(silent["token"]))
                return bool(r.json()["state"] == "expired")

            await wait_until(silent_gone, seconds=15)
            await asyncio.sleep(3)  # well past the timeout for the one that only streams
        r = await client.get(f"/v1/rooms/{room}/status", headers=bearer(streaming["token"]))
        assert r.json()["state"] == "waiting"
        assert r.json()["position"] == 1
        moved = [d for _, e, d in sse.events if e == "position"]
        assert moved[-1]["position"] == 1  # and the stream told it it moved up
    finally:
        task.cancel()
