"""A room whose pace follows its site (``auto_release``), against the demo site in load
mode: each page takes longer the more visits are active. While the visitors pile up the
site slows past ``target_latency_ms`` and the pace falls; when they leave the site
recovers and the pace climbs back to ``release_rate``. Real gateway, real workers, real
WaitroomGuard reporting on its session heartbeats."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.events import Admitted, PaceChanged
from shared.settings import Settings
from tests.helpers.api import SITE_KEY, bearer, create_room, figures, fresh_room_id
from tests.helpers.servers import AppServer, GatewayServer, ModuleProc, room_events, settings_env
from tests.helpers.wait import wait_until
from waitroom.demo_site import create_demo_app

pytestmark = pytest.mark.slow

RELEASE_RATE = 5.0
TARGET_MS = 150
MS_PER_VISIT = 40.0  # 4 visits on the site: 160 ms a page, past the target


class Crowd:
    """People who join, wait, go to the site when admitted, and browse it: ``browsing``
    says whether a visitor keeps clicking (until told to stop) or leaves after one page."""

    def __init__(self, gateway: str, room: str, site: str) -> None:
        self.gateway, self.room, self.site = gateway, room, site
        self.browsing = True
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.pages = 0

    async def join(self, client: httpx.AsyncClient, n: int) -> None:
        for _ in range(n):
            token = (await client.post(f"/v1/rooms/{self.room}/enqueue")).json()["token"]
            self.tasks.append(asyncio.create_task(self._person(token)))

    async def _person(self, token: str) -> None:
        async with httpx.AsyncClient(base_url=self.gateway, timeout=30) as web:
            while not self.stop.is_set():
                r = await web.get(f"/v1/rooms/{self.room}/status", headers=bearer(token))
                if r.json()["state"] == "admitted":
                    break
                await asyncio.sleep(1.0)
            else:
                return
            go = r.json()["redirect_url"]
            page = await web.get(go, headers={"Accept": "text/html"}, follow_redirects=True)
            assert "You're in" in page.text
            self.pages += 1
            while self.browsing and not self.stop.is_set():
                await web.get(self.site, headers={"Accept": "text/html"})
                self.pages += 1
                await asyncio.sleep(0.3)
            await web.post(f"{self.site}done", headers={"Accept": "text/html"})

    async def close(self) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def watch(check: Callable[[], Awaitable[Any]], seconds: float) -> Any:
    return await wait_until(check, seconds=seconds, every=0.25)


async def test_auto_release_slows_admissions_while_the_site_is_slow_and_recovers_after(
    settings: Settings, gateway: GatewayServer, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    room = fresh_room_id("pace")
    demo = create_demo_app(
        gateway.url,
        room,
        ms_per_visit=MS_PER_VISIT,
        heartbeat_every=1.0,
        report_every=0.5,
        site_key=SITE_KEY,
    )
    async with AppServer(demo, lifespan="off") as site:
        await create_room(
            client,
            room,
            target_url=f"{site.url}/",
            max_active=40,
            release_rate=RELEASE_RATE,
            heartbeat_timeout=600,
            auto_release=True,
            target_latency_ms=TARGET_MS,
        )
        crowd = Crowd(gateway.url, room, f"{site.url}/")
        timeline: list[tuple[float, float, float | None]] = []
        started = time.monotonic()

        async def pace_below_half() -> bool:
            f = await figures(client, room)
            timeline.append((time.monotonic() - started, f["pace"], f["site_p95_ms"]))
            return bool(f["pace"] <= RELEASE_RATE / 2 and (f["site_p95_ms"] or 0) > TARGET_MS)

        async def pace_back_up() -> bool:
            f = await figures(client, room)
            timeline.append((time.monotonic() - started, f["pace"], f["site_p95_ms"]))
            return bool(f["pace"] == RELEASE_RATE)

        # the workers in processes of their own: this process serves the gateway, the site
        # and the crowd, and the site's latency is what the guard measures here
        worker = ModuleProc(
            "admission_worker",
            settings_env(settings, WAITROOM_INSTANCE=f"pace-{room}"),
            tmp_path / "admission.log",
        ).start()
        try:
            await crowd.join(client, 30)
            # the visitors pile up on the site, which slows down: the pace falls
            await watch(pace_below_half, seconds=40)
            slow_at = time.monotonic() - started
            # they finish; the few let in from now on look at one page and go
            crowd.browsing = False
            await watch(pace_back_up, seconds=60)
            back_at = time.monotonic() - started
        finally:
            worker.stop()
            await crowd.close()
            await demo.aclose()
            for at, pace, p95 in timeline[:: max(1, len(timeline) // 30)]:
                p95_ms = "-" if p95 is None else f"{p95:.0f} ms"
                print(f"  {at:5.1f}s  pace {pace:5.2f}/s  site p95 {p95_ms}")
    print(f"pace fell to half by {slow_at:.1f}s, back at {RELEASE_RATE}/s by {back_at:.1f}s")

    events = await room_events(settings.nats_url, room)
    changes = [e for e in events if isinstance(e, PaceChanged)]
    assert changes[0].pace == RELEASE_RATE  # following the site began at full pace
    lowest = min(changes, key=lambda e: e.pace)
    assert lowest.pace <= RELEASE_RATE / 2
    assert lowest.site_p95_ms is not None
    assert lowest.site_p95_ms > TARGET_MS  # the cut answered a slow site
    after = changes[changes.index(lowest) :]
    assert after[-1].pace == RELEASE_RATE  # and the pace came back with it
    rises = after[1:]
    assert rises
    # a rise answers a fast site, or a site with nobody on it to report (no p95: the
    # visitors may all have gone by then on a slow machine)
    measured = [e for e in rises if e.site_p95_ms is not None]
    assert all(e.site_p95_ms is not None and e.site_p95_ms < TARGET_MS for e in measured[-3:])
    # the pace is the bucket's rate: admissions while it was lowest went slower than 5/s
    low_from = lowest.ts
    low_until = next((e.ts for e in after if e.pace > lowest.pace), low_from + 5)
    admitted_low = [e for e in events if isinstance(e, Admitted) and low_from < e.ts <= low_until]
    assert len(admitted_low) <= max(1.0, lowest.pace) * (low_until - low_from) + 2
