"""Headless Chromium for the tests (Debian's ``chromium``, driven by Playwright), and the
small steps they share: wait for a panel of the room page, save a screenshot."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

SHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def have_chromium() -> bool:
    return Path(CHROMIUM).exists()


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """A headless Chromium; skips the test where there is none (fails on CI)."""
    if not have_chromium():
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: scripts/test installs it with apt-get")
        pytest.skip("no chromium here (scripts/test installs Debian's chromium)")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            await browser.close()


async def shown(page: Page, panel: str, seconds: float = 15) -> None:
    """Wait until the room page shows this panel (waiting, admitted, paused, ...)."""
    await page.wait_for_selector(f'#waitroom[data-show="{panel}"]', timeout=seconds * 1000)


async def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
