"""The policies' state comes back from the stream: lanes and the units seated in them,
best_fit's pass counts, invites and their uses, a pre-queue (opened, and not yet opened).
The data store is killed with -9, started empty, and `waitroom recover` rebuilds it: every
room's digest is what it was."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from shared import keys
from shared.redis_conn import connect
from shared.room import RoomUpdate, epoch_ms
from shared.settings import Settings
from shared.store import RoomStore
from tests.helpers.servers import (
    ModuleProc,
    ValkeyProc,
    run_recover,
    settings_env,
)
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.slow

URL = "http://127.0.0.1:9/t"


def room_update(**config: Any) -> RoomUpdate:
    return RoomUpdate(target_url=URL, max_positions_per_ip=0, release_rate=100.0, **config)


async def person(redis: Redis, room: str, position_id: str) -> dict[str, object]:
    raw = await redis.hget(keys.RoomKeys(room).people, position_id)
    assert raw is not None
    found: dict[str, object] = json.loads(raw)
    return found


async def test_recover_rebuilds_lanes_passes_invites_and_pre_queues(
    own_store: tuple[ValkeyProc, Settings], tmp_path: Path
) -> None:
    valkey, settings = own_store
    redis = connect(settings.redis_url)
    store = RoomStore(redis)
    inst = settings.instance
    lanes, opened, later = f"lanes-{inst}", f"opened-{inst}", f"later-{inst}"
    await store.put_room(
        lanes,
        room_update(
            max_active=10,
            lanes={"a": 4, "b": 6},
            admission_policy="best_fit",
            status="paused",
        ),
    )
    parties = [(3, "a"), (3, "a"), (1, "a"), (6, "b"), (2, "any"), (1, "b")]
    people = [await store.enqueue(lanes, size=size, lane=lane) for size, lane in parties]
    soon = datetime.now(UTC) + timedelta(seconds=1)
    await store.put_room(opened, room_update(max_active=3, opens_at=soon))
    for _ in range(10):
        await store.enqueue(opened)
    await store.put_room(later, room_update(opens_at=datetime.now(UTC) + timedelta(days=1)))
    await store.create_invite(later, "inv-12chars1", priority=3, uses=5, expires_at_ms=0)
    expiry = epoch_ms(datetime.now(UTC) + timedelta(days=2))
    await store.create_invite(later, "inv-12chars2", priority=7, uses=1, expires_at_ms=expiry)
    await store.revoke_invite(later, "inv-12chars2")
    for n in range(4):
        await store.enqueue(later, invite_id="inv-12chars1" if n % 2 else "", lane="any")

    env = settings_env(settings, WAITROOM_INSTANCE="rec", WAITROOM_ADMISSION_TICK_MS="20")
    workers = [
        ModuleProc("admission_worker", env, tmp_path / "admission.log").start(),
        ModuleProc("heartbeat_worker", env, tmp_path / "heartbeat.log").start(),
    ]
    try:
        await store.put_room(lanes, RoomUpdate(status="active"))

        async def settled() -> bool:
            a, o = await store.figures(lanes), await store.figures(opened)
            return a.stat("admitted_total") == 3 and o.stat("admitted_total") == 3

        await wait_until(settled, seconds=20)
        for room in (lanes, opened, later):  # quiet the rooms so the digests hold still
            await store.put_room(room, RoomUpdate(status="paused"))

        async def drained() -> bool:
            return all([await store.outbox_length(r) == 0 for r in (lanes, opened, later)])

        await wait_until(drained, seconds=20)
        # what the policies left in the store: a party passed over once, seats per lane,
        # an opened pre-queue, a waiting one, invites with uses
        assert (await person(redis, lanes, people[1].position_id))["skips"] == 1
        assert (await store.figures(lanes)).lanes_used() == {"a": 4, "b": 6}
        assert (await store.figures(opened)).prequeue == 0
        assert (await store.figures(later)).prequeue == 4
        before = {room: await store.digest(room) for room in (lanes, opened, later)}

        valkey.kill()  # kill -9: everything in memory is gone
        valkey.start()  # same port, empty
        await redis.aclose()
        redis = connect(settings.redis_url)
        store = RoomStore(redis)
        assert await store.rooms() == []
        assert "replayed" in run_recover(settings)
        after = {room: await store.digest(room) for room in (lanes, opened, later)}
        assert after == before
        assert (await person(redis, lanes, people[1].position_id))["skips"] == 1
        assert "(0 applied" in run_recover(settings)  # again: nothing changes
        assert {room: await store.digest(room) for room in before} == before
    finally:
        for w in workers:
            w.stop()
        await redis.aclose()
