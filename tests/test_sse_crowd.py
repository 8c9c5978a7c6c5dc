"""2,000 event streams on one gateway process stay open and hear about the line moving."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from loadtest.sse_crowd import SseCrowd
from shared.settings import Settings
from tests.helpers.api import ADMIN, bearer
from tests.helpers.servers import ModuleProc, settings_env
from tests.helpers.wait import wait_until
from waitroom.processes import free_port, wait_for_port

pytestmark = pytest.mark.slow
STREAMS = 2000


async def test_2000_streams_on_one_gateway_stay_open_and_get_updates(
    settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    gateway = ModuleProc(
        "gateway",
        # 2,000 streams from one test client: one address, so its cap is raised
        settings_env(settings, WAITROOM_PORT=str(port), WAITROOM_STREAMS_PER_ADDRESS="100000"),
        tmp_path / "gw.log",
    ).start()
    crowd = SseCrowd("127.0.0.1", port)
    try:
        wait_for_port(port, 20, gateway.proc)
        room = "crowd-" + settings.instance
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=60, limits=limits
        ) as c:
            r = await c.put(
                f"/v1/admin/rooms/{room}",
                headers=ADMIN,
                json={
                    "target_url": "http://127.0.0.1:9/t",
                    "status": "paused",
                    "max_positions_per_ip": 0,
                    "heartbeat_timeout": 600,
                },
            )
            assert r.status_code == 201
            sem = asyncio.Semaphore(32)

            async def join() -> str:
                async with sem:
                    token: str = (await c.post(f"/v1/rooms/{room}/enqueue")).json()["token"]
                    return token

            tokens = await asyncio.gather(*(join() for _ in range(STREAMS)))
            streams = crowd.open(room, tokens)

            async def all_placed() -> bool:
                return all(s.count("position") >= 1 for s in streams)

            await wait_until(all_placed, seconds=120, every=0.2)
            assert all(s.status == 200 for s in streams)
            placed = {s.token: s.events[-1][1]["position"] for s in streams}
            assert sorted(placed.values()) == list(range(1, STREAMS + 1))
            front = next(s for s in streams if placed[s.token] == 1)
            rest = [s for s in streams if s is not front]
            await c.post(f"/v1/rooms/{room}/leave", headers=bearer(front.token))

            async def all_moved_up() -> bool:
                return all(s.count("position") >= 2 for s in rest)

            await wait_until(all_moved_up, seconds=60, every=0.2)
            for s in rest:
                moved = [d for e, d in s.events if e == "position"][-1]
                assert moved["position"] == placed[s.token] - 1
            assert not any(s.closed for s in streams)  # all 2,000 still connected
            metrics = (await c.get("/metrics")).text
            assert f"waitroom_sse_streams {STREAMS}.0" in metrics
    finally:
        await crowd.close()
        gateway.stop()
