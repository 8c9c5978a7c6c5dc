"""Config changes this gateway made, kept until their events are on the stream.

A change (an emergency pause) sits in the room's outbox until the relay delivers it. If the
data store is lost before that, `waitroom recover` rebuilds the room as the stream has it,
without the change, and nobody would notice. The gateway that made the change remembers it
until its event has left the outbox; a room whose config version fell below it (same
incarnation) lost the change: it is logged (``config_change_lost``) and made again, as a
new event.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import structlog

from shared.errors import RoomRecovering, StoreUnavailable, WaitroomError
from shared.room import RoomUpdate
from shared.store import RoomStore
from shared.store.views import PutResult
from shared.tasks import cancel_and_wait

log = structlog.get_logger("config_guard")


@dataclass
class _Change:
    update: RoomUpdate
    seq: int
    version: int
    inc: str
    at: float


class ConfigGuard:
    def __init__(self, store: RoomStore, *, every: float = 1.0, keep: float = 3600.0) -> None:
        self.store = store
        self.every = every
        self.keep = keep
        """Seconds a change is watched at most (an outbox stuck longer is alerted on)."""
        self.pending: dict[str, _Change] = {}
        self._task: asyncio.Task[None] | None = None

    def made(self, room: str, update: RoomUpdate, result: PutResult) -> None:
        """A change made: watched until its event is delivered. Changes still watched are
        merged, so a store that lost several gets them all back."""
        earlier = self.pending.get(room)
        if earlier is not None and earlier.inc == result.inc:
            update = RoomUpdate(**{**earlier.update.given(), **update.given()})
        self.pending[room] = _Change(update, result.seq, result.version, result.inc, time.time())

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="config-guard")

    async def close(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)  # a store call may swallow one cancellation

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            try:
                await self.check()
            except (StoreUnavailable, RoomRecovering):
                continue  # the store is away or the room is rebuilt: look again later

    async def check(self) -> None:
        """Forget changes on the stream; make again the ones the store lost."""
        for room, change in list(self.pending.items()):
            found = await self.store.config_version(room)
            if time.time() - change.at > self.keep or (
                found is not None and found[1] != change.inc
            ):
                del self.pending[room]  # too old, or the room was made anew since
            elif found is None:
                continue  # not rebuilt yet (or deleted): wait
            elif found[0] < change.version:
                log.error(
                    "config_change_lost",
                    room=room,
                    version=change.version,
                    store_version=found[0],
                    change=change.update.given(),
                )
                try:
                    result = await self.store.put_room_change(room, change.update)
                except (StoreUnavailable, RoomRecovering):
                    raise
                except WaitroomError as exc:
                    log.error("config_change_not_reapplied", room=room, error=repr(exc))
                    del self.pending[room]
                    continue
                self.made(room, change.update, result)
            elif await self.store.delivered(room, change.seq):
                del self.pending[room]
