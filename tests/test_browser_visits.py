"""The room page as people see it, in real headless Chromium: in their own language, with
its tab title and an opt-in notification, and a restaurant's evening from joining the
list to the table given back.

Screenshots go to tests/artifacts/screenshots/ (room-de, room-ja, bistro-*).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext

from shared.settings import Settings
from tests.helpers.api import ADMIN, bearer, create_room, figures, fresh_room_id
from tests.helpers.browser import shot, shown
from tests.helpers.servers import AppServer, GatewayServer, in_process_workers
from tests.helpers.wait import wait_until
from waitroom.demo_site import create_demo_app

pytestmark = pytest.mark.slow

# Counts the page's calls for notification permission, passing each one on.
PERMISSION_SPY = """
window.__askedForNotices = 0;
if (window.Notification) {
  const ask = Notification.requestPermission.bind(Notification);
  Notification.requestPermission = function (cb) { window.__askedForNotices++; return ask(cb); };
}
"""


async def spied(browser: Browser, **options: Any) -> BrowserContext:
    ctx = await browser.new_context(**options)
    await ctx.add_init_script(PERMISSION_SPY)
    return ctx


async def test_the_page_in_german_and_japanese_with_its_title_and_an_opt_in_notice(
    browser: Browser, gateway: GatewayServer, client: httpx.AsyncClient
) -> None:
    room = fresh_room_id("lang")
    await create_room(client, room, status="paused", title="Spring drop")
    await client.post(f"/v1/rooms/{room}/enqueue")  # one person ahead
    expected = {  # each browser is one more person: 2nd, then 3rd in line
        "de-DE": (
            2,
            "Ihr Platz in der Warteschlange",
            "1 Person ist vor Ihnen",
            "(2) Gleich sind Sie dran · Spring drop",
            "Benachrichtigen, wenn ich dran bin",
        ),
        "ja-JP": (
            3,
            "あなたの順番",
            "あなたの前に2人います",
            "(3) まもなくあなたの番です · Spring drop",
            "順番が来たら通知する",
        ),
    }
    for locale, (position, label, ahead, title, button) in expected.items():
        ctx = await spied(browser, locale=locale, viewport={"width": 420, "height": 860})
        page = await ctx.new_page()
        await page.goto(f"{gateway.url}/rooms/{room}")
        await shown(page, "paused")
        await page.wait_for_selector(f'#waitroom[data-position="{position}"]')
        assert await page.get_attribute("html", "lang") == locale[:2]
        assert label in (await page.text_content(".place .label") or "")
        assert await page.text_content("#ahead") == ahead  # the script's texts, same language
        assert await page.title() == title  # nearly at the front: the tab says so
        assert await page.text_content("#notify") == button
        # the button is offered, and nothing is asked of the browser until it is pressed
        assert await page.is_visible("#notify")
        assert await page.evaluate("window.__askedForNotices") == 0
        await shot(page, f"room-{locale[:2]}")
        await page.click("#notify")
        await page.wait_for_function("window.__askedForNotices === 1")
        await ctx.close()


async def status_of(client: httpx.AsyncClient, room: str, joined: dict[str, Any]) -> Any:
    return (await client.get(f"/v1/rooms/{room}/status", headers=bearer(joined["token"]))).json()


async def test_a_party_of_four_waits_for_its_table_checks_in_and_gives_it_back(
    browser: Browser, gateway: GatewayServer, client: httpx.AsyncClient, settings: Settings
) -> None:
    """A restaurant with 8 seats at tables and 2 at the counter. Two parties of 4 are ahead
    at the tables; ours (4, joining from the restaurant's link ``?lane=table&size=4``) sees
    its place fall live while a couple who came later is seated at the counter at once (a
    lane of its own), is told "your table is ready" (the room's own texts) with a
    notification it asked for, checks in within the claim window, is warned on the site
    that its time ends soon, and when its time is up its 4 seats come back."""
    room = fresh_room_id("bistro")
    demo = create_demo_app(gateway.url, room, heartbeat_every=2)
    async with AppServer(demo, lifespan="off") as site:
        await create_room(
            client,
            room,
            target_url=f"{site.url}/",
            status="paused",
            max_active=10,
            lanes={"table": 8, "counter": 2},
            max_party_size=4,
            release_rate=2,
            claim_window=60,
            max_session=20,
            heartbeat_interval=2,
            title="Chez Waitroom",
            message="Join the list and we will call you when your table is ready.",
            brand_color="#7a2e1f",
            texts={
                "en": {
                    "admitted_heading": "Your table is ready",
                    "admitted_text": "Please check in at the host stand now.",
                    "go_button": "Check in",
                    "notify_title": "Your table is ready",
                    "title_admitted": "Your table is ready",
                }
            },
        )
        ahead = [
            (
                await client.post(f"/v1/rooms/{room}/enqueue", json={"size": 4, "lane": "table"})
            ).json()
            for _ in range(2)
        ]
        ctx = await spied(browser, viewport={"width": 420, "height": 860}, locale="en-GB")
        await ctx.grant_permissions(["notifications"], origin=gateway.url)
        page = await ctx.new_page()
        await page.goto(f"{gateway.url}/rooms/{room}?lane=table&size=4")
        await shown(page, "paused")
        await page.wait_for_selector('#waitroom[data-position="3"]')
        await page.click("#notify")  # granted already: no prompt, just the opt-in
        await page.wait_for_selector('#waitroom[data-notify="on"]')
        assert await page.evaluate("window.__askedForNotices") == 0
        ours = (await figures(client, room))["waiting"]
        assert ours == 3
        couple = (
            await client.post(f"/v1/rooms/{room}/enqueue", json={"size": 2, "lane": "counter"})
        ).json()

        positions: list[str] = []

        async def follow_place() -> None:
            while True:
                text = await page.get_attribute("#waitroom", "data-position")
                if text and (not positions or positions[-1] != text):
                    positions.append(text)
                await asyncio.sleep(0.05)

        watcher = asyncio.create_task(follow_place())
        async with in_process_workers(settings):
            await client.put(f"/v1/admin/rooms/{room}", headers=ADMIN, json={"status": "active"})
            await shown(page, "waiting")
            await page.wait_for_selector('#waitroom[data-position="1"]', timeout=15_000)
            # the couple came last, but the counter is free: seated while we wait

            async def couple_seated() -> bool:
                return bool((await status_of(client, room, couple))["state"] == "admitted")

            await wait_until(couple_seated, seconds=10, every=0.2)
            assert (await status_of(client, room, ahead[0]))["state"] == "admitted"
            assert (await figures(client, room))["lanes_used"] == {"table": 8, "counter": 2}
            assert await page.title() == "(1) Almost your turn · Chez Waitroom"
            await shot(page, "bistro-next")
            # the first party finishes its meal: its 4 seats are ours
            first = (
                await client.get(f"/v1/rooms/{room}/status", headers=bearer(ahead[0]["token"]))
            ).json()
            await client.post("/v1/session/complete", headers=bearer(first["access_token"]))
            await shown(page, "admitted", seconds=15)
            assert await page.text_content("#admitted-heading") == "Your table is ready"
            assert await page.text_content("#go") == "Check in"
            assert await page.title() == "Your table is ready · Chez Waitroom"
            assert await page.get_attribute("#waitroom", "data-notified") == "1"
            await shot(page, "bistro-table-ready")
            assert (await figures(client, room))["lanes_used"]["table"] == 8
            # checking in (/go) takes the party to the restaurant's site, within the window
            await page.wait_for_selector("#allowed", timeout=15_000)
            watcher.cancel()
            notice = page.locator("#time-notice")
            await notice.wait_for(state="visible")
            assert "Your time ends in" in (await notice.text_content() or "")
            await shot(page, "bistro-time-ends-soon")

            async def seats_back() -> bool:
                return int((await figures(client, room))["lanes_used"]["table"]) == 4

            await wait_until(seats_back, seconds=40, every=0.5)  # max_session: 20 s
            await page.wait_for_selector("#time-notice:has-text('Your time is up')")
        await ctx.close()
        await demo.aclose()
    falling = [int(p) for p in positions]
    assert falling[0] == 3
    assert falling == sorted(falling, reverse=True)
    assert 1 in falling
    f = await figures(client, room)
    assert f["expired_total"] >= 1  # the session ended at its time: the seats came back
