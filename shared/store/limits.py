"""The shared rate limits' windows in the data store: one moving window per identity (the
times of its latest counted calls, at most the limit long), checked and counted in one
script call (``rate_window.lua``) on the store's clock, so every gateway counts the same.

A join asks once per call: through the store's lane when it has one (a gateway), so the
check costs a pipelined call instead of a pool connection's round trip of its own.
"""

from __future__ import annotations

from typing import Literal

from redis.asyncio import Redis

from shared.keys import PREFIX
from shared.scripts import register_named
from shared.store.calls import mapped
from shared.store.lane import ScriptLane, bulk

WindowMode = Literal["hit", "test"]


def window_key(kind: str, identity: tuple[str, ...]) -> str:
    """The key of one identity's window of a kind of limit (its own hash tag)."""
    return f"{PREFIX}:limits:{{{kind}:{':'.join(identity)}}}"


class LimitWindows:
    def __init__(self, redis: Redis, lane: ScriptLane | None = None) -> None:
        self.lane = lane
        self.script = register_named(redis, "rate_window")

    async def ask(
        self, kind: str, identity: tuple[str, ...], mode: WindowMode, limit: int, window_ms: int
    ) -> int:
        """0 when the window has room (``hit``: the call was counted), else the ms until it
        has; ``test`` counts nothing."""
        key = window_key(kind, identity)
        args = (mode, limit, window_ms)
        with mapped(self.script):
            if self.lane is None:
                return int(await self.script(keys=[key], args=list(args)))
            return int(await self.lane.run(self.script.script, bulk(key), 1, args))
