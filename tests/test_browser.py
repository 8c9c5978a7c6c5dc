"""The person waiting, in real headless Chromium: the page, the redirect, the protected site.

Screenshots of the page (waiting, admitted, paused, expired, maintenance) are saved to
tests/artifacts/screenshots/.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
import uvicorn
from playwright.async_api import Browser, BrowserContext, Page

from shared.settings import Settings
from tests.helpers.api import ADMIN, bearer, create_room
from tests.helpers.servers import GatewayServer, in_process_workers
from tests.helpers.wait import wait_until
from waitroom.demo_site import create_demo_app
from waitroom.processes import free_port

SHOTS = Path(__file__).parent / "artifacts" / "screenshots"

pytestmark = pytest.mark.slow


class DemoSite:
    """The demo protected site, guarded by waitroom_site, on a loopback port."""

    def __init__(self, gateway_url: str, room: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.app = create_demo_app(gateway_url, room)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)

    async def __aenter__(self) -> DemoSite:
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        await self.task
        await self.app.aclose()


async def shown(page: Page, panel: str, seconds: float = 15) -> None:
    await page.wait_for_selector(f'#waitroom[data-show="{panel}"]', timeout=seconds * 1000)


async def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def test_a_person_waits_refreshes_is_admitted_and_reaches_the_site(
    browser: Browser, gateway: GatewayServer, client: httpx.AsyncClient, settings: Settings
) -> None:
    room = "web-" + settings.instance
    async with DemoSite(gateway.url, room) as site:
        await create_room(
            client,
            room,
            target_url=site.url,
            status="paused",
            max_active=1,
            release_rate=2,
            heartbeat_interval=2,
            heartbeat_timeout=60,
            title="Spring drop",
            message="Sneakers go on sale at noon. Thanks for your patience.",
            brand_color="#8a2be2",
        )
        others = [(await client.post(f"/v1/rooms/{room}/enqueue")).json() for _ in range(3)]
        ctx = await browser.new_context(viewport={"width": 390, "height": 844})
        page = await ctx.new_page()
        await page.goto(f"{gateway.url}/rooms/{room}")
        await shown(page, "paused")
        await page.wait_for_selector('#waitroom[data-position="4"]')
        announced = await page.text_content("#announce")
        assert announced is not None
        assert "number 4" in announced  # what a screen reader hears
        token = await page.evaluate(f"localStorage.getItem('waitroom:{room}')")
        await page.reload()  # a refresh keeps the place
        await page.wait_for_selector('#waitroom[data-position="4"]')
        assert await page.evaluate(f"localStorage.getItem('waitroom:{room}')") == token
        tab = await ctx.new_page()  # and so does a new tab
        await tab.goto(f"{gateway.url}/rooms/{room}")
        await tab.wait_for_selector('#waitroom[data-position="4"]')
        await tab.close()

        seen: list[str] = []

        async def watch_position() -> None:
            while True:
                text = await page.evaluate(
                    "document.getElementById('position') && "
                    "document.getElementById('position').textContent"
                )
                if text and (not seen or seen[-1] != text):
                    seen.append(text)
                await asyncio.sleep(0.05)

        async def site_finishes_visits() -> None:
            """The people ahead are admitted one by one and finish their visits."""
            pending = list(others)
            while pending:
                for person in list(pending):
                    s = (
                        await client.get(
                            f"/v1/rooms/{room}/status", headers=bearer(person["token"])
                        )
                    ).json()
                    if s["state"] == "admitted":
                        await client.post("/v1/session/complete", headers=bearer(s["access_token"]))
                        pending.remove(person)
                await asyncio.sleep(0.1)

        watcher = asyncio.create_task(watch_position())
        async with in_process_workers(settings):
            await client.put(f"/v1/admin/rooms/{room}", headers=ADMIN, json={"status": "active"})
            await shown(page, "waiting")
            await shot(page, "waiting")
            finisher = asyncio.create_task(site_finishes_visits())
            await shown(page, "admitted", seconds=30)
            await shot(page, "admitted")
            await page.wait_for_selector("#allowed", timeout=15_000)  # on the protected site
            await finisher
        watcher.cancel()
        assert [int(s) for s in seen if s.isdigit()][:1] == [4]
        falling = [int(s) for s in seen if s.isdigit()]
        assert falling == sorted(falling, reverse=True)
        assert len(set(falling)) >= 3  # the page followed the line down: 4, 3, 2, 1
        assert page.url.startswith(site.url)
        assert "waitroom_token" not in page.url  # the token left the address bar
        allowed = await page.text_content("#allowed")
        assert allowed is not None
        assert "You're in" in allowed
        await shot(page, "target")

        stranger = await browser.new_context()  # no token: sent to the waiting room
        other = await stranger.new_page()
        await other.goto(site.url)
        assert other.url.startswith(f"{gateway.url}/rooms/{room}")
        await other.wait_for_selector("#waitroom")
        await stranger.close()
        await ctx.close()


async def test_paused_expired_and_maintenance_pages(
    browser: Browser, gateway: GatewayServer, client: httpx.AsyncClient, settings: Settings
) -> None:
    room = "calm-" + settings.instance
    await create_room(
        client,
        room,
        target_url="http://127.0.0.1:9/t",
        status="paused",
        heartbeat_interval=1,
        heartbeat_timeout=2,
    )
    lost = (await client.post(f"/v1/rooms/{room}/enqueue")).json()
    ctx: BrowserContext = await browser.new_context(viewport={"width": 1000, "height": 760})
    page = await ctx.new_page()
    await page.goto(f"{gateway.url}/rooms/{room}")
    await shown(page, "paused")
    await shot(page, "paused")

    async with in_process_workers(settings):  # the silent person's place expires

        async def expired() -> bool:
            r = await client.get(f"/v1/rooms/{room}/status", headers=bearer(lost["token"]))
            return bool(r.json()["state"] == "expired")

        await wait_until(expired, seconds=10)
        returning = await browser.new_context(viewport={"width": 1000, "height": 760})
        await returning.add_cookies(
            [
                {
                    "name": f"waitroom_{room}",
                    "value": lost["token"],
                    "url": f"{gateway.url}/rooms/{room}",
                }
            ]
        )
        back = await returning.new_page()
        await back.goto(f"{gateway.url}/rooms/{room}")
        await shown(back, "expired")
        await shot(back, "expired")
        await back.click("#rejoin")  # a new place, at the end of the line
        await shown(back, "paused")
        await back.wait_for_selector('#waitroom[data-position="2"]')
        await returning.close()

    await client.put(f"/v1/admin/rooms/{room}", headers=ADMIN, json={"status": "maintenance"})
    await shown(page, "maintenance")
    await shot(page, "maintenance")
    await ctx.close()


async def test_the_page_falls_back_to_polling_when_event_streams_are_blocked(
    browser: Browser, gateway: GatewayServer, client: httpx.AsyncClient, settings: Settings
) -> None:
    room = "poll-" + settings.instance
    await create_room(
        client, room, target_url="http://127.0.0.1:9/t", status="paused", heartbeat_interval=30
    )
    first = (await client.post(f"/v1/rooms/{room}/enqueue")).json()
    ctx = await browser.new_context()
    await ctx.route("**/events?*", lambda route: route.abort())  # a proxy that kills streams
    page = await ctx.new_page()
    await page.goto(f"{gateway.url}/rooms/{room}")
    await page.wait_for_selector('#waitroom[data-position="2"]')
    await page.wait_for_selector('#waitroom[data-live="polling"]', timeout=15_000)
    await client.post(f"/v1/rooms/{room}/leave", headers=bearer(first["token"]))
    await page.wait_for_selector('#waitroom[data-position="1"]')
    await ctx.close()


async def test_the_page_follows_again_when_its_gateway_stops(
    browser: Browser, gateway: GatewayServer, client: httpx.AsyncClient, settings: Settings
) -> None:
    """A gateway told to stop sends its streams ``reconnect`` (gateway/draining.py); the
    page opens its stream again at once and goes on hearing about the line."""
    room = "move-" + settings.instance
    await create_room(
        client, room, target_url="http://127.0.0.1:9/t", status="paused", heartbeat_interval=30
    )
    ahead = [(await client.post(f"/v1/rooms/{room}/enqueue")).json() for _ in range(3)]
    ctx = await browser.new_context()
    page = await ctx.new_page()
    opened: list[str] = []
    page.on("request", lambda r: opened.append(r.url) if "/events?" in r.url else None)
    await page.goto(f"{gateway.url}/rooms/{room}")
    await page.wait_for_selector('#waitroom[data-position="4"]')
    live = gateway.app.state.services.live

    async def following() -> bool:
        return len(live.writing) == 1

    await wait_until(following)
    for i, person in enumerate(ahead):  # more stops than the failures that make it poll
        before = len(opened)
        assert live.drain() == 1  # what SIGTERM does to the page's stream
        live.draining = False  # another gateway, as far as the page can tell
        await wait_until(lambda before=before: _more(opened, before))
        await wait_until(following)
        await client.post(f"/v1/rooms/{room}/leave", headers=bearer(person["token"]))
        await page.wait_for_selector(f'#waitroom[data-position="{3 - i}"]')
    assert await page.get_attribute("#waitroom", "data-live") == "sse"
    await ctx.close()


async def _more(seen: list[str], than: int) -> bool:
    return len(seen) > than


async def test_the_operators_live_page(
    browser: Browser, gateway: GatewayServer, client: httpx.AsyncClient, settings: Settings
) -> None:
    room = "ops-" + settings.instance
    await create_room(client, room, target_url="http://127.0.0.1:9/t", status="paused")
    for _ in range(3):
        await client.post(f"/v1/rooms/{room}/enqueue")
    ctx = await browser.new_context(viewport={"width": 1100, "height": 800})
    page = await ctx.new_page()
    await page.goto(f"{gateway.url}/admin")
    await page.fill("#key", "not-the-key")
    await page.click("#login button")
    await page.wait_for_selector("#note:has-text('refused')")
    await page.fill("#key", settings.admin_key)
    await page.click("#login button")
    card = page.locator(f'section.card[data-room="{room}"]')
    await card.wait_for()
    assert (await card.locator(".figure .value").first.text_content()) == "3"  # waiting
    await client.post(f"/v1/rooms/{room}/enqueue")
    await page.wait_for_selector(
        f'section.card[data-room="{room}"] .figure:first-child .value:text-is("4")'
    )  # live: it follows the room without a reload
    await shot(page, "admin")
    await ctx.close()


async def test_a_room_under_attack_asks_the_page_for_proof_of_work(
    browser: Browser, gateway: GatewayServer, client: httpx.AsyncClient, settings: Settings
) -> None:
    """The page solves the challenge in a Web Worker and joins; how long it took at the
    suggested difficulty (20 bits) is printed."""
    room = "pow-" + settings.instance
    await create_room(client, room, status="paused", pow_difficulty=20)
    page = await browser.new_page()
    await page.goto(f"{gateway.url}/rooms/{room}")
    await shown(page, "paused", seconds=120)
    took = await page.get_attribute("#waitroom", "data-pow-ms")
    assert took is not None
    print(f"\nproof of work at 20 bits solved in Chromium in {int(took)} ms")
    figures = (await client.get(f"/v1/admin/rooms/{room}", headers=ADMIN)).json()["figures"]
    assert figures["waiting"] == 1
    await page.close()
