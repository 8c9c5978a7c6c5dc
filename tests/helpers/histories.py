"""Rooms with a history, made by the real scripts: for the tests that read a room whole
(snapshots, a gateway's line) and compare the ways of reading it."""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

from shared.room import RoomUpdate, epoch_ms
from shared.store import RoomStore

URL = "http://127.0.0.1:9/t"


async def put_rooms(store: RoomStore, rooms: list[str]) -> None:
    """Rooms for make_history: 40 places, released fast, any number per address."""
    for room in rooms:
        await store.put_room(
            room,
            RoomUpdate(
                target_url=URL,
                max_active=40,
                release_rate=1000,
                max_positions_per_ip=0,
                session_ttl=30,
            ),
        )


async def make_history(store: RoomStore, rooms: list[str], rounds: int) -> None:
    """Joins, admissions, claims, keep-alives, completions and leaves, by the real scripts."""
    rng = random.Random(7)
    fences = dict(
        zip(rooms, await store.lease_acquire_many(rooms, "admission", "t", 600_000), strict=True)
    )
    for _ in range(rounds):
        for room in rooms:
            for _ in range(6):
                await store.enqueue(room)
            admitted = await store.admit(room, "t", fences[room], 600_000)
            for position_id in admitted.position_ids:
                roll = rng.random()
                if roll < 0.5:
                    await store.claim(room, position_id)
                    await store.claim(room, position_id, touch=True)
                    if roll < 0.25:
                        await store.complete(room, position_id)
                elif roll < 0.7:
                    await store.leave(room, position_id)


async def every_kind_of_state(store: RoomStore) -> list[str]:
    """Rooms holding everything a snapshot takes: waiting, admitted, active and ended
    people and the counters (make_history), addresses, proofs of work used, a pre-queue
    and invites."""
    inst = secrets.token_hex(3)
    history, guarded, later = f"hist-{inst}", f"ips-{inst}", f"later-{inst}"
    await put_rooms(store, [history])
    await make_history(store, [history], rounds=8)
    for _ in range(5):
        await store.enqueue(history)  # and some still waiting
    await store.put_room(
        guarded, RoomUpdate(target_url=URL, max_positions_per_ip=3, pow_difficulty=8)
    )
    expires = epoch_ms(datetime.now(UTC) + timedelta(minutes=5))
    for n in range(4):
        await store.enqueue(
            guarded,
            ip_hash=f"ip{n % 2}",
            pow_id=f"pow{n}",
            pow_difficulty=8,
            pow_expires_ms=expires,
        )
    opens = datetime.now(UTC) + timedelta(days=1)
    await store.put_room(later, RoomUpdate(target_url=URL, max_positions_per_ip=0, opens_at=opens))
    await store.create_invite(later, "inv-12chars1", priority=3, uses=5, expires_at_ms=0)
    for n in range(3):
        await store.enqueue(later, invite_id="inv-12chars1" if n % 2 else "")
    return [history, guarded, later]


@contextlib.asynccontextmanager
async def racing_joins(store: RoomStore, room: str, joiners: int = 8) -> AsyncIterator[None]:
    """People joining ``room`` without pause, ``joiners`` at a time, while the body runs."""
    stop = False

    async def join() -> None:
        while not stop:
            await store.enqueue(room)

    tasks = [asyncio.create_task(join()) for _ in range(joiners)]
    try:
        yield
    finally:
        stop = True
        await asyncio.gather(*tasks)
