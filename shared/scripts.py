"""The Lua scripts in ``shared/lua``, read and registered once per Redis client.

Every room script is the prelude ``_lib.lua`` followed by the script's own body, sent as
one script: each call is one atomic check + write + outbox append.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

SCRIPT_NAMES = (
    "enqueue",
    "status",
    "leave",
    "admit",
    "claim",
    "complete",
    "expire_silent",
    "expire_unclaimed",
    "end_sessions",
    "purge_ended",
    "room_put",
    "room_delete",
    "room_figures",
    "lease",
    "replay",
    "room_digest",
)


def script_source(name: str) -> str:
    """The full text sent to the server for one script: prelude, then body."""
    folder = resources.files("shared") / "lua"
    prelude = (folder / "_lib.lua").read_text(encoding="utf-8")
    body = (folder / f"{name}.lua").read_text(encoding="utf-8")
    return f"{prelude}\n-- {name}.lua\n{body}"


@dataclass(frozen=True)
class Scripts:
    enqueue: AsyncScript
    status: AsyncScript
    leave: AsyncScript
    admit: AsyncScript
    claim: AsyncScript
    complete: AsyncScript
    expire_silent: AsyncScript
    expire_unclaimed: AsyncScript
    end_sessions: AsyncScript
    purge_ended: AsyncScript
    room_put: AsyncScript
    room_delete: AsyncScript
    room_figures: AsyncScript
    lease: AsyncScript
    replay: AsyncScript
    room_digest: AsyncScript

    @classmethod
    def register(cls, redis: Redis) -> Scripts:
        """Register every script with this client (EVALSHA, falling back to EVAL once)."""
        return cls(**{name: redis.register_script(script_source(name)) for name in SCRIPT_NAMES})
