"""The shared rate limits' windows (shared/store/limits.py, rate_window.lua) against a real
valkey: a moving window, counted atomically however many gateways race on it, and a
limiter that lets calls through when its store is down."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from gateway.ratelimit import RateLimiter
from shared.errors import RateLimited
from shared.redis_conn import connect
from shared.settings import RateLimits, Settings
from shared.store.lane import ScriptLane
from shared.store.limits import LimitWindows
from tests.helpers.servers import ValkeyProc


@pytest.fixture(params=["lane", "pool"])
async def windows(
    request: pytest.FixtureRequest, redis: Redis, settings: Settings
) -> AsyncIterator[LimitWindows]:
    lane = ScriptLane(settings.redis_url) if request.param == "lane" else None
    yield LimitWindows(redis, lane)
    if lane is not None:
        await lane.aclose()


def identity() -> tuple[str, ...]:
    return (f"10.0.{secrets.randbelow(250)}.{secrets.randbelow(250)}", secrets.token_hex(4))


async def test_a_window_holds_its_limit_and_opens_as_its_calls_age(windows: LimitWindows) -> None:
    who = identity()
    assert await windows.ask("t", who, "hit", 3, 1000) == 0
    await asyncio.sleep(0.5)
    assert [await windows.ask("t", who, "hit", 3, 1000) for _ in range(2)] == [0, 0]
    wait = await windows.ask("t", who, "hit", 3, 1000)
    assert 300 < wait <= 500  # until the first call is a window old
    assert await windows.ask("t", who, "test", 3, 1000) > 0  # still full: refused, not counted
    await asyncio.sleep(wait / 1000 + 0.05)
    assert await windows.ask("t", who, "test", 3, 1000) == 0
    assert await windows.ask("t", who, "hit", 3, 1000) == 0  # the first call aged out
    assert await windows.ask("t", who, "hit", 3, 1000) > 0  # the other two have not


async def test_test_counts_nothing(windows: LimitWindows) -> None:
    who = identity()
    for _ in range(5):
        assert await windows.ask("t", who, "test", 2, 60_000) == 0
    assert await windows.ask("t", who, "hit", 2, 60_000) == 0
    assert await windows.ask("t", who, "hit", 2, 60_000) == 0
    assert await windows.ask("t", who, "test", 2, 60_000) > 0


async def test_gateways_racing_on_one_window_admit_exactly_the_limit(
    redis: Redis, settings: Settings
) -> None:
    """Three gateways (each its own lane) and the pool, 120 joins from one address at once,
    a limit of 10: 10 get through, wherever they landed."""
    lanes = [ScriptLane(settings.redis_url) for _ in range(3)]
    try:
        gates = [LimitWindows(redis, lane) for lane in lanes] + [LimitWindows(redis)]
        who = identity()
        answers = await asyncio.gather(
            *(gates[i % 4].ask("enqueue", who, "hit", 10, 60_000) for i in range(120))
        )
        assert answers.count(0) == 10
    finally:
        for lane in lanes:
            await lane.aclose()


@contextlib.asynccontextmanager
async def joins_limited(url: str, limit: str) -> AsyncIterator[RateLimiter]:
    """A gateway's limiter (over its own lane) with joins limited to ``limit``."""
    redis = connect(url)
    lane = ScriptLane(url)
    try:
        yield RateLimiter(RateLimits(enabled=True, enqueue=limit), LimitWindows(redis, lane))
    finally:
        await lane.aclose()
        await redis.aclose()


async def test_the_limiter_refuses_with_the_windows_wait(settings: Settings) -> None:
    async with joins_limited(settings.redis_url, "2/minute") as limiter:
        who = identity()[0]
        await limiter.check("enqueue", who)
        await limiter.check("enqueue", who)
        with pytest.raises(RateLimited) as refused:
            await limiter.check("enqueue", who)
        assert refused.value.retry is not None
        assert 55 <= refused.value.retry <= 60
        await limiter.check("enqueue", identity()[0])  # another address has its own window


async def test_the_limiter_lets_calls_through_while_its_store_is_down(
    own_store: tuple[ValkeyProc, Settings],
) -> None:
    proc, settings = own_store
    async with joins_limited(settings.redis_url, "1/minute") as limiter:
        who = identity()[0]
        await limiter.check("enqueue", who)
        with pytest.raises(RateLimited):
            await limiter.check("enqueue", who)
        proc.kill()
        await limiter.check("enqueue", who)  # let through (and logged), not a 503
        assert await limiter.exhausted("admin_failures", who) is None
