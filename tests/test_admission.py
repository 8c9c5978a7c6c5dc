"""Admission: capacity, order and pace hold with several worker replicas racing,
including one killed with -9 while it holds the room's lease."""

from __future__ import annotations

import asyncio
import random
import signal
from pathlib import Path

from redis.asyncio import Redis

from gateway.answers import eta_range, eta_seconds
from shared import keys
from shared.events import Activated, Admitted
from shared.room import RoomUpdate
from shared.settings import Settings
from shared.store import RoomStore
from tests.helpers.servers import (
    ModuleProc,
    outbox_drained,
    room_events,
    settings_env,
    used_units_replayed,
)
from tests.helpers.wait import wait_until


async def test_three_replicas_admit_in_order_within_capacity(
    settings: Settings, store: RoomStore, redis: Redis, tmp_path: Path
) -> None:
    room = "race-" + settings.instance
    await store.put_room(
        room,
        RoomUpdate(
            target_url="http://127.0.0.1:9/t",
            max_active=20,
            release_rate=400.0,
            max_positions_per_ip=0,
            status="paused",
        ),
    )
    people = 300
    joined = await asyncio.gather(*(store.enqueue(room) for _ in range(people)))
    arrival = {p.position_id: p.arrival for p in joined}

    workers = [
        ModuleProc(
            "admission_worker",
            settings_env(
                settings,
                WAITROOM_INSTANCE=f"w{i}",
                WAITROOM_LEASE_MS="800",
                WAITROOM_ADMISSION_TICK_MS="10",
            ),
            tmp_path / f"w{i}.log",
        ).start()
        for i in range(3)
    ]
    samples: list[int] = []
    done = asyncio.Event()

    async def sample() -> None:
        k = keys.RoomKeys(room)
        while not done.is_set():
            async with redis.pipeline(transaction=True) as pipe:
                pipe.hget(k.stats, "used_units")
                pipe.zcard(k.admitted)
                pipe.zcard(k.active)
                used, admitted, active = await pipe.execute()
            samples.append(max(int(used or 0), int(admitted) + int(active)))
            await asyncio.sleep(0.002)

    async def complete_some() -> None:
        """The protected site finishing visits at random, freeing units."""
        rng = random.Random(7)
        k = keys.RoomKeys(room)
        while not done.is_set():
            admitted: list[str] = await redis.zrange(k.admitted, 0, -1)  # type: ignore[assignment]
            for position_id in admitted:
                if rng.random() < 0.5:
                    await store.claim(room, position_id)
                    await store.complete(room, position_id)
                else:
                    await store.complete(room, position_id)
            await asyncio.sleep(0.005)

    sampler = asyncio.create_task(sample())
    completer = asyncio.create_task(complete_some())
    try:
        await store.put_room(room, RoomUpdate(status="active"))

        async def admitted_count() -> int:
            return (await store.figures(room)).stat("admitted_total")

        await wait_until(lambda: _at_least(admitted_count, 60), seconds=30)
        holder = str(await redis.get(keys.RoomKeys(room).lease("admission")))
        victim = next(w for w in workers if f"admission-{w.env['WAITROOM_INSTANCE']}:" in holder)
        victim.signal(signal.SIGKILL)  # killed while holding the lease
        await wait_until(lambda: _at_least(admitted_count, 150), seconds=30)
        others = [w for w in workers if w is not victim]
        others[0].signal(signal.SIGTERM)  # a graceful stop hands its lease over too
        assert others[0].wait(15) == 0
        await wait_until(lambda: _at_least(admitted_count, people), seconds=60)
        await wait_until(lambda: outbox_drained(redis, room), seconds=30)
    finally:
        done.set()
        await asyncio.gather(sampler, completer)
        for w in workers:
            w.stop()

    assert samples
    assert max(samples) <= 20
    events = await room_events(settings.nats_url, room)
    admitted = [e for e in events if isinstance(e, Admitted)]
    assert len(admitted) == people
    assert len({e.position_id for e in admitted}) == people  # nobody admitted twice
    order = [arrival[e.position_id] for e in admitted]
    assert order == sorted(order)  # admitted in arrival order
    replayed = used_units_replayed(events)
    assert max(replayed) <= 20
    assert max(replayed) == 20  # the room really was full at times
    assert sum(isinstance(e, Activated) for e in events) > 0
    assert [e.seq for e in events] == sorted({e.seq for e in events})


async def _at_least(count: object, n: int) -> bool:
    assert callable(count)
    return int(await count()) >= n


async def test_release_rate_is_smooth(
    settings: Settings, store: RoomStore, redis: Redis, tmp_path: Path
) -> None:
    room = "pace-" + settings.instance
    await store.put_room(
        room,
        RoomUpdate(
            target_url="http://127.0.0.1:9/t",
            max_active=1000,
            release_rate=10.0,
            max_positions_per_ip=0,
            status="paused",
        ),
    )
    people = await asyncio.gather(*(store.enqueue(room) for _ in range(80)))
    worker = ModuleProc(
        "admission_worker",
        settings_env(settings, WAITROOM_INSTANCE="pace", WAITROOM_ADMISSION_TICK_MS="20"),
        tmp_path / "pace.log",
    ).start()
    try:
        await store.put_room(room, RoomUpdate(status="active"))

        async def admitted_45() -> bool:
            return (await store.figures(room)).stat("admitted_total") >= 45

        await wait_until(admitted_45, seconds=20)
        # the wait estimate follows the pace actually observed: 10/s
        # the last to arrive (joins made at once get their arrival numbers in any order)
        latest = max(people, key=lambda p: p.arrival)
        last = await store.status(room, latest.position_id)
        assert last.position is not None
        assert 9.0 <= last.observed_rate() <= 11.0
        eta, band = eta_seconds(last), eta_range(last)
        assert eta is not None
        assert band is not None
        assert band[0] <= last.position / 10 <= band[1]
        assert abs(eta - last.position / 10) <= 2
        await wait_until(lambda: outbox_drained(redis, room), seconds=10)
    finally:
        worker.stop()
    stamps = [e.ts for e in await room_events(settings.nats_url, room) if isinstance(e, Admitted)]
    first = stamps[0]
    admitted_in_first_4s = sum(1 for t in stamps if t < first + 4.0)
    # 10/s: about 40 in four seconds, never the whole line at once
    assert 34 <= admitted_in_first_4s <= 44, admitted_in_first_4s
    # the bucket holds a quarter second of releases: no window of 250 ms sees more than
    # that burst plus what refills meanwhile (2.5 + 2.5)
    busiest = max(sum(1 for t in stamps if s <= t < s + 0.25) for s in stamps)
    assert busiest <= 5, busiest
