"""Per-client rate limits.

Limits per address (joining, failed admin keys) are shared by every gateway pod (``limits``
on the shared Redis): an address spreading its calls over pods gains nothing. Limits per
token (status, heartbeats, the site's session calls) are counted in each gateway process:
they guard a pod's own work, and a round trip to the store for each would cost more than
the answer they guard (a token spread over N pods gets N times the calls, and gains
nothing by it: none of them moves it in the line).

If the limit store itself fails, requests are let through (and logged): a rate limiter
must not turn a blip of the store into an outage of its own.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from pathlib import Path

import structlog
from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import BlockingConnectionPool

from shared.errors import RateLimited
from shared.redis_conn import tls_options
from shared.settings import RateLimits

log = structlog.get_logger("ratelimit")

LOCAL_KINDS = frozenset({"status", "heartbeat", "session"})


class LocalWindows:
    """Fixed windows counted in this process, for at most ``max_keys`` identities (the
    oldest forgotten first: a flood of made-up tokens costs bounded memory)."""

    def __init__(self, max_keys: int = 200_000) -> None:
        self.max_keys = max_keys
        self._windows: OrderedDict[tuple[str, ...], tuple[float, int]] = OrderedDict()

    def hit(self, item: RateLimitItem, key: tuple[str, ...]) -> int | None:
        """Count one; seconds until the window ends when over the limit, else None."""
        now = time.monotonic()
        length = item.get_expiry()
        start, count = self._windows.get(key, (now, 0))
        if now - start >= length:
            start, count = now, 0
        count += 1
        self._windows[key] = (start, count)
        self._windows.move_to_end(key)
        if len(self._windows) > self.max_keys:
            self._windows.popitem(last=False)
        if count > item.amount:
            return max(1, math.ceil(start + length - now))
        return None

    def used_up(self, item: RateLimitItem, key: tuple[str, ...]) -> bool:
        """Whether one more would be over the limit (counts nothing)."""
        found = self._windows.get(key)
        if found is None:
            return False
        start, count = found
        return time.monotonic() - start < item.get_expiry() and count >= item.amount


class RateLimiter:
    def __init__(self, redis_url: str, limits: RateLimits, *, tls_ca: Path | None = None) -> None:
        self.enabled = limits.enabled
        self.items: dict[str, RateLimitItem] = {
            "enqueue": parse(limits.enqueue),
            "status": parse(limits.status),
            "heartbeat": parse(limits.heartbeat),
            "session": parse(limits.session),
            "admin_failures": parse(limits.admin_failures),
        }
        self._pool: BlockingConnectionPool | None = None
        self._limiter: MovingWindowRateLimiter | None = None
        self._local = LocalWindows()
        if self.enabled:
            # our own pool, handed to the limit store, so we can close it
            self._pool = BlockingConnectionPool.from_url(
                redis_url,
                max_connections=64,
                timeout=2,
                socket_timeout=2,
                socket_connect_timeout=2,
                **tls_options(redis_url, tls_ca),
            )
            storage = RedisStorage(
                "async+" + redis_url,
                implementation="redispy",
                key_prefix="wr:limits",
                connection_pool=self._pool,  # type: ignore[arg-type]
            )
            self._limiter = MovingWindowRateLimiter(storage)

    async def close(self) -> None:
        """Close the limit store's connections (who opens a client closes it)."""
        if self._pool is not None:
            await self._pool.aclose()
            self._pool = None
            self._limiter = None

    def used_up_here(self, kind: str, *identity: str) -> bool:
        """Whether this identity's limit of a kind counted in this process (status,
        heartbeat, session) is used up now (counts nothing)."""
        if self._limiter is None:
            return False
        return self._local.used_up(self.items[kind], (kind, *identity))

    async def exhausted(self, kind: str, *identity: str) -> int | None:
        """Seconds until this identity may try again when its limit is used up, else None
        (counts nothing: see ``check`` for that)."""
        if self._limiter is None:
            return None
        item = self.items[kind]
        try:
            if await self._limiter.test(item, kind, *identity):
                return None
            stats = await self._limiter.get_window_stats(item, kind, *identity)
        except Exception as exc:
            log.warning("rate_limit_store_failed", error=repr(exc))
            return None
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def hit(self, kind: str, *identity: str) -> None:
        """Count one against the limit, without refusing anything now."""
        if self._limiter is None:
            return
        try:
            await self._limiter.hit(self.items[kind], kind, *identity)
        except Exception as exc:
            log.warning("rate_limit_store_failed", error=repr(exc))

    def count_here(self, kind: str, *identity: str) -> None:
        """``check`` for a kind counted in this process (LOCAL_KINDS): no wait, so an
        answer written before the framework can count itself."""
        if self._limiter is None:
            return
        retry = self._local.hit(self.items[kind], (kind, *identity))
        if retry is not None:
            raise RateLimited(retry_after=retry)

    async def check(self, kind: str, *identity: str) -> None:
        """Count one request; raise RateLimited (with Retry-After) when over the limit."""
        if kind in LOCAL_KINDS:
            self.count_here(kind, *identity)
            return
        if self._limiter is None:
            return
        item = self.items[kind]
        try:
            if await self._limiter.hit(item, kind, *identity):
                return
            stats = await self._limiter.get_window_stats(item, kind, *identity)
        except Exception as exc:
            log.warning("rate_limit_store_failed", error=repr(exc))
            return
        raise RateLimited(retry_after=max(1, math.ceil(stats.reset_time - time.time())))
