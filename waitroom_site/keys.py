"""The gateway's public keys (its JWKS), fetched once and cached.

A key id the cache does not know makes one fetch for everyone who asks at that moment
(single flight), and at most one fetch every ``min_interval`` seconds: a flood of tokens
with made-up key ids cannot turn into a flood of fetches. A stale cache is refreshed in
the background while the keys it holds keep verifying, so visitors never wait on the
gateway for a key the site already has.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import httpx
import jwt


class KeySet:
    def __init__(
        self,
        url: str,
        client: httpx.AsyncClient,
        *,
        ttl: float = 300.0,
        min_interval: float = 10.0,
        wait: float = 2.0,
    ) -> None:
        self.url = url
        self.client = client
        self.ttl = ttl
        self.min_interval = min_interval
        self.wait = wait
        self.keys: dict[str, Any] = {}
        self.fetches = 0
        """Fetches started (a figure for tests and metrics)."""
        self._fetched_at = 0.0  # monotonic time of the last good fetch
        self._tried_at = float("-inf")  # monotonic time of the last attempt
        self._flight: asyncio.Task[None] | None = None

    async def key(self, kid: str) -> Any | None:
        now = time.monotonic()
        known = self.keys.get(kid)
        if known is not None:
            if now - self._fetched_at > self.ttl:
                self._start_fetch(now)  # refresh behind the visitor's back
            return known
        flight = self._start_fetch(now)
        if flight is None:
            return None  # fetched lately; a made-up kid does not get another fetch
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(flight), timeout=self.wait)
        return self.keys.get(kid)

    def _start_fetch(self, now: float) -> asyncio.Task[None] | None:
        """The fetch in flight, or a new one if the last began ``min_interval`` ago; None
        when neither (too soon to ask again)."""
        if self._flight is not None and not self._flight.done():
            return self._flight
        if now - self._tried_at < self.min_interval:
            return None
        self._tried_at = now
        self.fetches += 1
        self._flight = asyncio.create_task(self._fetch(), name="waitroom-jwks")
        return self._flight

    async def _fetch(self) -> None:
        try:
            r = await self.client.get(self.url, timeout=self.wait)
            r.raise_for_status()
            jwks = jwt.PyJWKSet.from_dict(r.json())
        except (httpx.HTTPError, jwt.PyJWTError, ValueError):
            return  # keep the keys we have; a gateway blip must not lock visitors out
        self.keys = {k.key_id: k.key for k in jwks.keys if k.key_id}
        self._fetched_at = time.monotonic()

    async def aclose(self) -> None:
        if self._flight is not None and not self._flight.done():
            self._flight.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flight
