"""The room page under the room policies, in real headless Chromium: an invite link joins
ahead of the line, a pre-queue counts down to the opening and then shows the drawn place,
a full reject room and a closed room say so.

Screenshots go to tests/artifacts/screenshots/ (policy-*.png).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page

from shared.settings import Settings
from tests.helpers.api import ADMIN, RoomFactory
from tests.helpers.servers import GatewayServer, in_process_workers
from tests.helpers.wait import wait_until

SHOTS = Path(__file__).parent / "artifacts" / "screenshots"

pytestmark = pytest.mark.slow


async def open_room(browser: Browser, url: str) -> Page:
    page = await (await browser.new_context(viewport={"width": 390, "height": 844})).new_page()
    await page.goto(url)
    return page


async def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"policy-{name}.png"), full_page=True)


async def test_an_invite_link_joins_ahead_of_the_line(
    browser: Browser, gateway: GatewayServer, client: httpx.AsyncClient, make_room: RoomFactory
) -> None:
    room = await make_room(status="paused")
    for _ in range(3):
        await client.post(f"/v1/rooms/{room}/enqueue")
    r = await client.post(f"/v1/admin/rooms/{room}/invites", json={"priority": 5}, headers=ADMIN)
    invite = r.json()
    assert invite["url"].startswith(gateway.url)  # a loopback Host: an absolute link
    page = await open_room(browser, invite["url"])
    await page.wait_for_selector('#waitroom[data-position="1"]')  # ahead of the three
    assert "invite=" not in page.url  # spent: taken off the address
    await page.reload()  # the place is kept, the spent invite is not tried again
    await page.wait_for_selector('#waitroom[data-position="1"]')
    again = await open_room(browser, invite["url"])  # used up (one use): joins without it
    await again.wait_for_selector('#waitroom[data-invite-refused="invite_used_up"]')
    await again.wait_for_selector('#waitroom[data-position="5"]')


async def test_a_pre_queue_counts_down_then_shows_the_drawn_place(
    browser: Browser, gateway: GatewayServer, make_room: RoomFactory, settings: Settings
) -> None:
    opens = datetime.now(UTC) + timedelta(seconds=5)
    room = await make_room(opens_at=opens.isoformat(), status="paused")
    page = await open_room(browser, f"{gateway.url}/rooms/{room}")
    await page.wait_for_selector('#waitroom[data-show="waiting"][data-opens-in]')
    left = int(await page.get_attribute("#waitroom", "data-opens-in") or "0")
    assert 1 <= left <= 5
    assert "The line opens in 0:0" in (await page.text_content("#ahead") or "")
    await shot(page, "countdown")

    async def counted_down() -> bool:
        return int(await page.get_attribute("#waitroom", "data-opens-in") or "0") < left

    await wait_until(counted_down, seconds=5)
    async with in_process_workers(settings):  # the admission worker opens the line
        await page.wait_for_selector('#waitroom[data-position="1"]', timeout=20_000)
    assert "opens in" not in (await page.text_content("#ahead") or "")


async def test_a_full_reject_room_and_a_closed_room_say_so(
    browser: Browser, gateway: GatewayServer, client: httpx.AsyncClient, make_room: RoomFactory
) -> None:
    full = await make_room(queueing_method="reject", max_active=1)
    assert (await client.post(f"/v1/rooms/{full}/enqueue")).json()["state"] == "admitted"
    page = await open_room(browser, f"{gateway.url}/rooms/{full}")
    await page.wait_for_selector('#waitroom[data-show="full"]')
    assert await page.text_content("#full-reason") == "The room is full; try again later."
    await shot(page, "reject-full")

    closes = datetime.now(UTC) + timedelta(seconds=1)
    closed = await make_room(closes_at=closes.isoformat())
    while datetime.now(UTC) < closes:
        await page.wait_for_timeout(100)
    page = await open_room(browser, f"{gateway.url}/rooms/{closed}")
    await page.wait_for_selector('#waitroom[data-show="full"]')
    assert await page.text_content(".panel.full h2") == "This line has closed"
    assert "no new places" in (await page.text_content("#full-reason") or "")
    await shot(page, "closed")
