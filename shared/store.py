"""Typed calls into the room scripts. Every method is one script call: one round trip,
one atomic change. Nothing here reads, decides in Python and then writes."""

from __future__ import annotations

import hashlib
import math
import secrets
from typing import Any, Literal

import msgspec
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared import keys
from shared.errors import (
    Conflict,
    InvalidRoomId,
    RoomNotFound,
    StoreUnavailable,
    WaitroomError,
    from_script_error,
)
from shared.room import RoomConfig, RoomUpdate, from_stored, merge, to_stored
from shared.scripts import Scripts

State = Literal["waiting", "admitted", "active", "completed", "expired", "left"]
RATE_TAU_MS = 30_000


class PersonView(msgspec.Struct, frozen=True):
    """What a script answers about one person and the room around them."""

    position_id: str
    state: State
    rank: int
    total: int
    arrival: int
    size: int
    priority: int
    joined: int
    admitted_at: int
    claim_deadline: int
    session_deadline: int
    reason: str
    bind: str
    room_status: str
    release_rate: float
    session_ttl: int
    heartbeat_interval: int
    target_url: str
    incarnation: str
    """The room's incarnation: new each time a room of this name is created."""
    rate: float
    rate_ts: int
    rate_since: int
    event_seq: int
    now: int
    created: bool

    @property
    def position(self) -> int | None:
        return self.rank + 1 if self.state == "waiting" and self.rank >= 0 else None

    @property
    def ahead(self) -> int | None:
        return self.rank if self.state == "waiting" and self.rank >= 0 else None

    def observed_rate(self) -> float:
        return observed_rate(self.rate, self.rate_ts, self.rate_since, self.now)


def observed_rate(rate: float, rate_ts: int, rate_since: int, now: int) -> float:
    """Admissions per second over roughly the last half minute.

    The admit script keeps an exponentially decaying count; here it is decayed to now and
    corrected for the short history of a room that started admitting recently.
    """
    if rate_ts <= 0:
        return 0.0
    decayed = rate * math.exp(-max(0, now - rate_ts) / RATE_TAU_MS)
    history = max(1, now - rate_since)
    warmup = 1 - math.exp(-history / RATE_TAU_MS)
    return decayed / warmup if warmup > 0.05 else decayed


class AdmitResult(msgspec.Struct, frozen=True):
    admitted: list[str] | dict[str, Any]
    used_units: int
    status: str

    @property
    def position_ids(self) -> list[str]:
        # cjson encodes an empty Lua table as {}
        return self.admitted if isinstance(self.admitted, list) else []


class RoomFigures(msgspec.Struct, frozen=True):
    config: dict[str, str]
    stats: dict[str, str] | list[Any]
    waiting: int
    admitted: int
    active: int
    outbox: int
    now: int

    def stat(self, name: str) -> int:
        stats = self.stats if isinstance(self.stats, dict) else {}
        return int(float(stats.get(name, "0")))

    def admit_rate(self) -> float:
        stats = self.stats if isinstance(self.stats, dict) else {}
        return observed_rate(
            float(stats.get("rate", "0")),
            int(stats.get("rate_ts", "0")),
            int(stats.get("rate_since", "0")),
            self.now,
        )


class PutResult(msgspec.Struct, frozen=True):
    created: bool
    version: int


_person = msgspec.json.Decoder(PersonView)
_admit = msgspec.json.Decoder(AdmitResult)
_figures = msgspec.json.Decoder(RoomFigures)
_put = msgspec.json.Decoder(PutResult)


def check_room_id(room: str) -> None:
    if not keys.ROOM_ID_PATTERN.match(room):
        raise InvalidRoomId()


class RoomStore:
    """The data-store side of waitroom. It is handed a client and never closes it."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.scripts = Scripts.register(redis)

    async def _run(self, script: Any, room: str, *args: str | int | float | bytes) -> Any:
        try:
            return await script(keys=keys.RoomKeys(room).all(), args=[room, *args])
        except ResponseError as exc:
            err = from_script_error(str(exc))
            if err is None:
                raise
            raise err from None
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StoreUnavailable() from exc

    # people ---------------------------------------------------------------------------
    async def enqueue(
        self,
        room: str,
        *,
        position_id: str | None = None,
        size: int = 1,
        priority: int = 0,
        ip_hash: str = "",
        metadata: str = "",
        bind: str = "",
        restore_arrival: int = 0,
        incarnation: str = "",
        pow_id: str = "",
        pow_difficulty: int = 0,
        pow_expires_ms: int = 0,
    ) -> PersonView:
        """Join the line, or (``restore_arrival``) put back a place the store lost, in the
        room's ``incarnation`` the token names; ``pow_*`` is a checked proof of work."""
        position_id = position_id or new_position_id()
        raw = await self._run(
            self.scripts.enqueue,
            room,
            position_id,
            size,
            priority,
            ip_hash,
            metadata,
            bind,
            restore_arrival,
            incarnation,
            pow_id,
            pow_difficulty,
            pow_expires_ms,
        )
        return _person.decode(raw)

    async def status(self, room: str, position_id: str, *, touch: bool = False) -> PersonView:
        return _person.decode(
            await self._run(self.scripts.status, room, position_id, 1 if touch else 0)
        )

    async def statuses(
        self, room: str, position_ids: list[str], *, touch: bool = False
    ) -> dict[str, PersonView]:
        """Many people's status in one pipeline (each its own script call); people the
        store does not know are left out."""
        room_keys = keys.RoomKeys(room).all()
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for position_id in position_ids:
                    await self.scripts.status(
                        keys=room_keys, args=[room, position_id, 1 if touch else 0], client=pipe
                    )
                results = await pipe.execute(raise_on_error=False)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StoreUnavailable() from exc
        return {
            position_id: _person.decode(res)
            for position_id, res in zip(position_ids, results, strict=True)
            if not isinstance(res, Exception)
        }

    async def leave(self, room: str, position_id: str) -> PersonView:
        return _person.decode(await self._run(self.scripts.leave, room, position_id))

    async def claim(self, room: str, position_id: str, *, touch: bool = False) -> PersonView:
        mode = "touch" if touch else "claim"
        return _person.decode(await self._run(self.scripts.claim, room, position_id, mode))

    async def complete(self, room: str, position_id: str) -> PersonView:
        return _person.decode(await self._run(self.scripts.complete, room, position_id))

    # workers --------------------------------------------------------------------------
    async def admit(
        self, room: str, holder: str, fence: int, lease_ms: int, max_batch: int = 500
    ) -> AdmitResult:
        raw = await self._run(self.scripts.admit, room, holder, fence, lease_ms, max_batch)
        return _admit.decode(raw)

    async def expire(
        self,
        room: str,
        holder: str,
        fence: int,
        lease_ms: int,
        *,
        max_batch: int = 1000,
        retention_ms: int = 3_600_000,
    ) -> dict[str, int]:
        """Every expiry job of the heartbeat worker, each its own script, in one pipeline."""
        room_keys = keys.RoomKeys(room).all()
        args: list[str | int] = [room, holder, fence, lease_ms, max_batch]
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for script in (
                    self.scripts.expire_silent,
                    self.scripts.expire_unclaimed,
                    self.scripts.end_sessions,
                ):
                    await script(keys=room_keys, args=args, client=pipe)
                await self.scripts.purge_ended(
                    keys=room_keys, args=[*args, retention_ms], client=pipe
                )
                results = await pipe.execute(raise_on_error=False)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StoreUnavailable() from exc
        for res in results:
            if isinstance(res, ResponseError):
                err = from_script_error(str(res))
                raise err if err is not None else res
        silent, unclaimed, sessions, purged = (int(r) for r in results)
        return {"silent": silent, "unclaimed": unclaimed, "sessions": sessions, "purged": purged}

    async def lease_acquire(self, room: str, role: str, holder: str, lease_ms: int) -> int:
        """The fence if this holder now has the room's lease for ``role``, else 0."""
        return int(await self._run(self.scripts.lease, room, "acquire", role, holder, lease_ms, 0))

    async def lease_acquire_many(
        self, rooms: list[str], role: str, holder: str, lease_ms: int
    ) -> list[int]:
        """``lease_acquire`` for many rooms in one pipeline (each its own script call)."""
        if not rooms:
            return []
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for room in rooms:
                    await self.scripts.lease(
                        keys=keys.RoomKeys(room).all(),
                        args=[room, "acquire", role, holder, lease_ms, 0],
                        client=pipe,
                    )
                results = await pipe.execute()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StoreUnavailable() from exc
        return [int(r) for r in results]

    async def lease_release(self, room: str, role: str, holder: str, fence: int) -> bool:
        res = await self._run(self.scripts.lease, room, "release", role, holder, 0, fence)
        return bool(res)

    # rooms ----------------------------------------------------------------------------
    async def get_config(self, room: str) -> tuple[RoomConfig, int] | None:
        try:
            flat: dict[str, str] = await self.redis.hgetall(  # type: ignore[assignment]
                keys.RoomKeys(room).cfg
            )
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StoreUnavailable() from exc
        if not flat:
            return None
        return from_stored(flat), int(flat.get("version", "0"))

    async def put_room(self, room: str, update: RoomUpdate) -> tuple[RoomConfig, bool]:
        """Create or update a room: merge, validate, compare-and-set on its version."""
        check_room_id(room)
        for _ in range(20):
            current = await self.get_config(room)
            config = merge(current[0] if current else None, update)
            expected = str(current[1]) if current else ""
            try:
                raw = await self._run(
                    self.scripts.room_put,
                    room,
                    expected,
                    secrets.token_hex(4),
                    msgspec.json.encode(to_stored(config)),
                )
            except WaitroomError as exc:
                if exc.code == Conflict.code:
                    continue
                raise
            result = _put.decode(raw)
            await self._index(self.redis.sadd(keys.ROOMS_SET, room))
            return config, result.created
        raise Conflict()

    async def delete_room(self, room: str) -> None:
        check_room_id(room)
        await self._run(self.scripts.room_delete, room)
        await self._index(self.redis.sadd(keys.DRAINING_SET, room))
        await self._index(self.redis.srem(keys.ROOMS_SET, room))

    async def figures(self, room: str) -> RoomFigures:
        check_room_id(room)
        return _figures.decode(await self._run(self.scripts.room_figures, room))

    async def digest(self, room: str) -> str:
        """A hash of the room's state (see room_digest.lua): equal digests, equal rooms."""
        check_room_id(room)
        return digest_of(await self._run(self.scripts.room_digest, room))

    async def largest_outbox(self) -> int:
        """The most undelivered events any room's outbox holds."""
        rooms = await self.rooms()
        if not rooms:
            return 0
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for room in rooms:
                    pipe.xlen(keys.RoomKeys(room).outbox)
                lengths = await pipe.execute()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StoreUnavailable() from exc
        return max(int(n) for n in lengths)

    async def rooms(self) -> list[str]:
        members = await self._index(self.redis.smembers(keys.ROOMS_SET))
        return sorted(members)

    async def draining_rooms(self) -> list[str]:
        return sorted(await self._index(self.redis.smembers(keys.DRAINING_SET)))

    async def _index(self, call: Any) -> Any:
        try:
            return await call
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StoreUnavailable() from exc

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except (RedisConnectionError, RedisTimeoutError, OSError):
            return False


def new_position_id() -> str:
    return secrets.token_urlsafe(12)


async def require_room(store: RoomStore, room: str) -> RoomConfig:
    check_room_id(room)
    found = await store.get_config(room)
    if found is None:
        raise RoomNotFound()
    return found[0]


def digest_of(raw: str) -> str:
    """A room's state digest from the room_digest script's answer: sha256 of a canonical
    JSON (sorted keys, people sorted by id) so any two stores holding the same room state
    give the same digest."""
    data = msgspec.json.decode(raw)
    flat_ips = data.get("ips") or []
    data["ips"] = sorted(zip(flat_ips[::2], flat_ips[1::2], strict=True))
    data["people"] = sorted(data.get("people") or [])
    for name in ("line", "admitted", "active"):
        if not isinstance(data.get(name), list):
            data[name] = []  # cjson writes an empty list as {}
    canonical = msgspec.json.encode(data, order="sorted")
    return hashlib.sha256(canonical).hexdigest()
