"""Fixtures: real valkey-server and nats-server on free loopback ports (one pair for the
whole run), the real gateway app served over HTTP, and an httpx client for it. Helpers
the tests share live in ``tests/helpers``, never here.

Set WAITROOM_TEST_REDIS_URL / WAITROOM_TEST_NATS_URL to run against servers of your own
(a DragonFly, say); tests that kill servers are skipped then.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser
from redis.asyncio import Redis

from gateway.serving import KEEP_ALIVE_SECONDS
from shared.redis_conn import connect
from shared.settings import RateLimits, Settings
from shared.store import RoomStore
from tests.helpers.api import (
    ADMIN_KEY,
    METRICS_TOKEN,
    SITE_KEY,
    RoomFactory,
    create_room,
    fresh_room_id,
)
from tests.helpers.browser import chromium
from tests.helpers.servers import GatewayServer, NatsProc, Servers, ValkeyProc
from waitroom.processes import free_port


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/unit is the fast layer: no servers."""
    for item in items:
        if "/tests/unit/" in str(item.path):
            item.add_marker(pytest.mark.unit)


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    base = tmp_path_factory.mktemp("servers")
    redis_url = os.environ.get("WAITROOM_TEST_REDIS_URL")
    nats_url = os.environ.get("WAITROOM_TEST_NATS_URL")
    valkey = nats_proc = None
    if not redis_url:
        valkey = ValkeyProc("valkey", free_port(), base / "valkey")
        valkey.data_dir.mkdir()
        valkey.start()
        redis_url = valkey.url
    if not nats_url:
        nats_proc = NatsProc("nats", free_port(), base / "nats")
        nats_proc.data_dir.mkdir()
        nats_proc.start()
        nats_url = nats_proc.url
    yield Servers(redis_url, nats_url, valkey, nats_proc)
    for proc in (nats_proc, valkey):
        if proc is not None:
            proc.stop()


@pytest.fixture(scope="session")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys")


@pytest.fixture
def settings(servers: Servers, keys_dir: Path) -> Settings:
    return Settings(
        redis_url=servers.redis_url,
        nats_url=servers.nats_url,
        keys_dir=keys_dir,
        admin_key=ADMIN_KEY,
        metrics_token=METRICS_TOKEN,
        site_key=SITE_KEY,
        rate_limits=RateLimits(enabled=False),
        admission_tick_ms=50,
        heartbeat_tick_ms=100,
        lease_ms=1000,
        instance="test-" + secrets.token_hex(3),
        log_json=True,
    )


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = connect(settings.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def store(redis: Redis) -> RoomStore:
    return RoomStore(redis)


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[GatewayServer]:
    async with GatewayServer(settings) as server:
        yield server


@pytest.fixture
async def client(gateway: GatewayServer) -> AsyncIterator[httpx.AsyncClient]:
    # an idle connection is dropped before the gateway closes it (see crowd_client): a
    # request sent on it in the moment the server closes it would fail unanswered
    limits = httpx.Limits(
        max_connections=200,
        max_keepalive_connections=200,
        keepalive_expiry=KEEP_ALIVE_SECONDS / 2,
    )
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30, limits=limits) as c:
        yield c


@pytest.fixture
def make_room(client: httpx.AsyncClient) -> RoomFactory:
    """Create a room with a fresh id through the admin API; returns its id."""

    async def make(**config: Any) -> str:
        room = fresh_room_id()
        await create_room(client, room, **config)
        return room

    return make


@pytest.fixture
async def own_store(
    servers: Servers, settings: Settings, tmp_path: Path
) -> AsyncIterator[tuple[ValkeyProc, Settings]]:
    """A data store of this test's own, so it can be killed or rolled back, and a NATS of
    its own: the stream is the record of this store alone (``waitroom recover`` and a
    relay's catch-up take every room the stream holds, and other tests' rooms are no part
    of this one). Answers the store and the settings that point at both."""
    if servers.valkey is None or servers.nats is None:
        pytest.skip("needs servers the tests start themselves")
    (tmp_path / "valkey").mkdir(exist_ok=True)
    proc = ValkeyProc("valkey", free_port(), tmp_path / "valkey")
    proc.start()
    bus = NatsProc("nats", free_port(), tmp_path / "nats")
    bus.start()
    yield proc, settings.with_changes(redis_url=proc.url, nats_url=bus.url)
    bus.stop()
    proc.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Headless Chromium (Debian's), for the tests of the page."""
    async with chromium() as found:
        yield found
