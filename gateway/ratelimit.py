"""Per-client rate limits.

Limits per address (joining, failed admin keys) are shared by every gateway pod (a moving
window per address in the data store, shared/store/limits.py): an address spreading its
calls over pods gains nothing (limits are written in the ``limits`` library's notation).
Limits per token (status, heartbeats, the site's session calls) are counted in each gateway
process: they guard a pod's own work, and a round trip to the store for each would cost
more than the answer they guard (a token spread over N pods gets N times the calls, and gains
nothing by it: none of them moves it in the line).

If the limit store itself fails, requests are let through (and logged): a rate limiter
must not turn a blip of the store into an outage of its own.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict

import structlog
from limits import RateLimitItem, parse

from shared.errors import RateLimited
from shared.settings import RateLimits
from shared.store.limits import LimitWindows, WindowMode

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
    """The limits of ``limits`` (``enabled`` off: none). Kinds counted in this process are
    ``LOCAL_KINDS``; the others are windows in the data store (``windows``), shared by
    every gateway."""

    def __init__(self, limits: RateLimits, windows: LimitWindows | None) -> None:
        self.enabled = limits.enabled
        self.items: dict[str, RateLimitItem] = {
            "enqueue": parse(limits.enqueue),
            "status": parse(limits.status),
            "heartbeat": parse(limits.heartbeat),
            "session": parse(limits.session),
            "admin_failures": parse(limits.admin_failures),
        }
        self._windows = windows if self.enabled else None
        self._local = LocalWindows()

    def used_up_here(self, kind: str, *identity: str) -> bool:
        """Whether this identity's limit of a kind counted in this process (status,
        heartbeat, session) is used up now (counts nothing)."""
        if not self.enabled:
            return False
        return self._local.used_up(self.items[kind], (kind, *identity))

    async def exhausted(self, kind: str, *identity: str) -> int | None:
        """Seconds until this identity may try again when its limit is used up, else None
        (counts nothing: see ``check`` for that)."""
        return await self._ask(kind, identity, "test")

    async def hit(self, kind: str, *identity: str) -> None:
        """Count one against the limit (if it has room), without refusing anything now."""
        await self._ask(kind, identity, "hit")

    def count_here(self, kind: str, *identity: str) -> None:
        """``check`` for a kind counted in this process (LOCAL_KINDS): no wait, so an
        answer written before the framework can count itself."""
        if not self.enabled:
            return
        retry = self._local.hit(self.items[kind], (kind, *identity))
        if retry is not None:
            raise RateLimited(retry_after=retry)

    async def check(self, kind: str, *identity: str) -> None:
        """Count one request; raise RateLimited (with Retry-After) when over the limit."""
        if kind in LOCAL_KINDS:
            self.count_here(kind, *identity)
            return
        retry = await self._ask(kind, identity, "hit")
        if retry is not None:
            raise RateLimited(retry_after=retry)

    async def _ask(self, kind: str, identity: tuple[str, ...], mode: WindowMode) -> int | None:
        """Seconds to wait when the window is full, else None; None too when the store
        fails (logged): a blip of the store must not become an outage of the limiter."""
        if self._windows is None:
            return None
        item = self.items[kind]
        try:
            wait_ms = await self._windows.ask(
                kind, identity, mode, item.amount, int(item.get_expiry() * 1000)
            )
        except Exception as exc:
            log.warning("rate_limit_store_failed", error=repr(exc))
            return None
        return max(1, math.ceil(wait_ms / 1000)) if wait_ms > 0 else None
