"""The loop every worker replica runs: per room, hold a lease, do one tick of work.

A replica takes a room's lease for its role (SET NX PX with a fencing token, in Lua),
renews it every quarter of the lease, and does the room's work only under it; the work
scripts check the fence themselves, so a replica that stalled past its lease cannot write.
A replica takes no more than its fair share of rooms (rooms / live replicas, rounded up),
so rooms spread over replicas; a killed replica's rooms are taken by another once its
leases run out.

While it holds fewer than its share, a replica asks for a room another replica holds when
that lease runs out (the refusal says when), not on every tick: with 1,000 rooms and three
replicas, the one below its share asked for 668 leases every 50 ms. A lease given up
early (handed over to a replica that joined, released on a graceful stop or when more came
free than a share) is counted in the store, and when that count or the count of live
replicas changes, a replica asks for every free room on every tick for a while
(``eager_for``), so such rooms move at once, however long the lease.

Shutdown is two-phase: ``stop`` is set, the current tick finishes, the leases are released
so another replica can take over at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable

import structlog
from redis.exceptions import RedisError

from shared.errors import LeaseLost, RoomNotFound, RoomRecovering, StoreUnavailable
from shared.scripts import ScriptError
from shared.store import RoomStore
from shared.store.index import Liveness
from shared.worker_metrics import WorkerMetrics

log = structlog.get_logger("room_loop")

RoomWork = Callable[[str, int], Awaitable[object]]


class RoomLoop:
    def __init__(
        self,
        store: RoomStore,
        *,
        role: str,
        holder: str,
        tick_ms: int,
        lease_ms: int,
        work: RoomWork,
        include_draining: bool = False,
        finish: RoomWork | None = None,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        """``finish`` runs once per held room after ``stop``, before leases go (the relay
        delivers what is left)."""
        self.store = store
        self.role = role
        self.holder = holder
        self.tick = tick_ms / 1000
        self.lease_ms = lease_ms
        self.work = work
        self.include_draining = include_draining
        self.finish = finish
        self.metrics = metrics
        self.held: dict[str, int] = {}
        self.draining: set[str] = set()
        self.replicas = store.replicas(role)
        self._rooms: list[str] = []
        self._rooms_at = 0.0
        self.renew_every = max(self.tick, lease_ms / 4000)
        """Seconds between renewals of the leases held: a quarter of the lease, so three
        renewals may fail before one runs out."""
        self._renewed_at = -self.renew_every
        self._busy_until: dict[str, float] = {}
        """Rooms another replica holds: when (monotonic) their lease runs out."""
        self._liveness_seen: Liveness | None = None
        self._eager_until = 0.0
        self.eager_for = max(self.renew_every, 1.0)
        """Seconds to ask for every free room on every tick after the count of live
        replicas or of leases given up changed: more than the others take to hand rooms
        over or release them (each release counts again)."""

    async def _room_list(self) -> list[str]:
        now = time.monotonic()
        if now - self._rooms_at > min(1.0, self.tick * 5):
            rooms = await self.store.rooms()
            if self.include_draining:
                self.draining = set(await self.store.draining_rooms())
                rooms = sorted(set(rooms) | self.draining)
            self._rooms, self._rooms_at = rooms, now
        return self._rooms

    async def _live_replicas(self) -> Liveness:
        """Mark this replica alive and count the live ones of its role (every tick: a
        replica that left is counted out at once, so its rooms are taken on the next)."""
        return await self.replicas.mark_alive(self.holder, self.lease_ms)

    async def run_tick(self) -> None:
        rooms = await self._room_list()
        listed = set(rooms)
        liveness = await self._live_replicas()
        share = math.ceil(len(rooms) / liveness.alive) if rooms else 0
        for room in list(self.held):
            if room not in listed:
                self._drop(room)
        for room in sorted(self.held)[share:]:  # a replica joined: hand our surplus over
            fence = self._drop(room)
            await self.store.lease_release(room, self.role, self.holder, fence)
            log.info("lease_handed_over", role=self.role, room=room)
        # renew what we hold and, below our share, try for the rest: one round trip
        now = time.monotonic()
        if liveness != self._liveness_seen:  # replicas came or went, leases were given up
            self._liveness_seen = liveness
            self._eager_until = now + self.eager_for
        eager = now < self._eager_until
        candidates = [
            r
            for r in rooms
            if r in self.held
            or (len(self.held) < share and (eager or now >= self._busy_until.get(r, 0.0)))
        ]
        if all(r in self.held for r in candidates) and now - self._renewed_at < self.renew_every:
            await self._work_held()
            return
        fences = await self.store.lease_attempts(candidates, self.role, self.holder, self.lease_ms)
        self._renewed_at = now
        self._busy_until = {r: t for r, t in self._busy_until.items() if r in listed}
        for room, fence in zip(candidates, fences, strict=True):
            if fence <= 0:  # another replica holds it: ask again when its lease runs out
                self._busy_until[room] = now + -fence / 1000
                self._drop(room)
            elif room in self.held:
                self.held[room] = fence
            elif len(self.held) < share:
                log.info("lease_taken", role=self.role, room=room, fence=fence)
                self._busy_until.pop(room, None)
                self.held[room] = fence
                if self.metrics is not None:
                    self.metrics.lease_taken(room, self.role)
            else:  # more came free at once than our share: leave them to the others
                await self.store.lease_release(room, self.role, self.holder, fence)
        await self._work_held()

    async def _work_held(self) -> None:
        await asyncio.gather(*(self._work_one(room, fence) for room, fence in self.held.items()))

    async def _work_one(self, room: str, fence: int) -> None:
        try:
            await self.work(room, fence)
        except LeaseLost:
            log.warning("lease_lost", role=self.role, room=room, fence=fence)
            self._drop(room)
        except RoomNotFound:
            self._drop(room)
        except RoomRecovering:
            pass  # replay owns the room until `waitroom recover` is done
        except ScriptError as exc:  # a bug or a torn record in one room: not a store outage
            log.error("room_work_failed", role=self.role, room=room, error=str(exc))

    def _drop(self, room: str) -> int:
        """Forget a room's lease (lost, released or handed over); answers its fence."""
        fence = self.held.pop(room, 0)
        if fence and self.metrics is not None:
            self.metrics.lease_gone(room, self.role)
        return fence

    def _store_up(self, up: bool) -> None:
        if self.metrics is not None:
            self.metrics.store_up.set(1 if up else 0)

    async def run(self, stop: asyncio.Event) -> None:
        """Tick until ``stop`` is set; sleeps are drift-free and cut short by ``stop``."""
        backoff = self.tick
        next_at = time.monotonic()
        while not stop.is_set():
            try:
                await self.run_tick()
                backoff = self.tick
                self._store_up(True)
            except (StoreUnavailable, RedisError, OSError) as exc:
                log.warning("store_unavailable", role=self.role, error=repr(exc), retry_in=backoff)
                self._store_up(False)
                for room in list(self.held):
                    self._drop(room)
                next_at = time.monotonic() + backoff
                backoff = min(backoff * 2, 5.0)
            except Exception:
                log.exception("tick_failed", role=self.role)
                next_at = time.monotonic() + 1.0
            next_at = max(next_at + self.tick, time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(0.0, next_at - time.monotonic()))
        if self.finish is not None:
            for room, fence in list(self.held.items()):
                try:
                    await self.finish(room, fence)
                except Exception as exc:
                    log.warning("finish_failed", role=self.role, room=room, error=repr(exc))
        await self.release_all()

    async def release_all(self) -> None:
        """Leave the live replicas first, then free the leases: the others count one
        replica fewer by the time they see the rooms free, so their fair share already
        has room for them and they take them on their next tick."""
        try:
            await self.replicas.leave(self.holder)
        except Exception as exc:
            log.warning("replica_leave_failed", error=repr(exc))
        for room, fence in list(self.held.items()):
            try:
                await self.store.lease_release(room, self.role, self.holder, fence)
            except Exception as exc:
                log.warning("lease_release_failed", room=room, error=repr(exc))
            self._drop(room)
        log.info("leases_released", role=self.role)
