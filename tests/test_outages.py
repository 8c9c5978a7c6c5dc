"""NATS away for a while, parts stopped or killed: everything keeps working, nothing is lost
or doubled."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from shared import keys
from shared.events import Admitted, Completed, Enqueued
from shared.settings import Settings
from tests.helpers.api import (
    ADMIN,
    assert_error,
    assert_retry_after,
    bearer,
    create_room,
    figures,
    place,
)
from tests.helpers.load import Load, crowd_client
from tests.helpers.servers import (
    GatewayServer,
    ModuleProc,
    NatsProc,
    Servers,
    ValkeyProc,
    room_events,
    settings_env,
)
from tests.helpers.wait import wait_until
from waitroom.processes import free_port, wait_for_port

pytestmark = pytest.mark.slow


@pytest.fixture
def own_nats(servers: Servers, tmp_path: Path) -> Iterator[NatsProc]:
    """A NATS server of this test's own, so it can be killed and brought back."""
    if servers.nats is None:
        pytest.skip("needs a NATS server the tests start themselves")
    (tmp_path / "nats").mkdir()
    proc = NatsProc("nats", free_port(), tmp_path / "nats")
    proc.start()
    yield proc
    proc.stop()


async def test_nats_down_for_a_while_loses_and_doubles_nothing(
    settings: Settings, own_nats: NatsProc, redis: Redis, tmp_path: Path
) -> None:
    """NATS killed for longer than the outbox bound takes to fill: every gateway stays
    ready for the load balancer, people waiting keep heartbeating, new joins get 503
    events_backlog, and once NATS is back every event is on the stream once, in order."""
    bound = 150
    settings = settings.with_changes(nats_url=own_nats.url, outbox_max=bound)
    env = settings_env(settings, WAITROOM_OUTBOX_MAX=str(bound))
    workers = [
        ModuleProc("admission_worker", env | {"WAITROOM_INSTANCE": "a"}, tmp_path / "a.log"),
        ModuleProc("heartbeat_worker", env | {"WAITROOM_INSTANCE": "h"}, tmp_path / "h.log"),
    ]
    room = "nats-" + settings.instance
    try:
        final = await _nats_down_run(settings, own_nats, room, workers, bound)
    finally:
        for w in workers:
            w.stop()
    assert any(
        "outbox_over_bound" in line
        for line in (tmp_path / "a.log").read_text().splitlines()
        + (tmp_path / "h.log").read_text().splitlines()
    )
    events = await room_events(own_nats.url, room)
    event_seq = int(await redis.hget(keys.RoomKeys(room).stats, "event_seq") or 0)
    assert [e.seq for e in events] == list(range(1, event_seq + 1))  # each change once, in order
    assert len({e.id for e in events}) == len(events)
    assert sum(isinstance(e, Enqueued) for e in events) == final["enqueued_total"] + 1
    assert sum(isinstance(e, Admitted) for e in events) == final["admitted_total"]
    assert sum(isinstance(e, Completed) for e in events) == final["completed_total"]


async def _nats_down_run(
    settings: Settings, own_nats: NatsProc, room: str, workers: list[ModuleProc], bound: int
) -> dict[str, Any]:
    """The outage itself, two gateways serving through it; answers the room's figures at
    the end."""
    async with (
        GatewayServer(settings) as gw,
        GatewayServer(settings) as gw2,
        crowd_client(gw.url) as c,
        httpx.AsyncClient(base_url=gw2.url, timeout=30) as c2,
    ):
        # admitted slower than people join, even on a busy machine: some are still waiting
        await create_room(
            c, room, max_active=100, release_rate=2, heartbeat_timeout=300, claim_window=300
        )
        for w in workers:
            w.start()
        load = Load(c, [room])
        runner = asyncio.create_task(load.run(240, spacing=0.03))
        try:
            await asyncio.sleep(1.5)
            own_nats.kill()  # kill -9 mid-load
            at_loss = await figures(c, room)

            async def over_bound() -> bool:
                return bool((await figures(c, room))["outbox"] > bound)

            await wait_until(over_bound, seconds=60)  # joins slow down on a busy machine
            during = await figures(c, room)
            assert during["enqueued_total"] > at_loss["enqueued_total"]  # joining went on
            assert during["admitted_total"] > at_loss["admitted_total"]  # admission goes on
            late = await c2.post(f"/v1/rooms/{room}/enqueue")
            assert_error(late, 503, "events_backlog")
            assert_retry_after(late)
            places = [(await place(c, room, p["token"]), p) for _room, p in load.people]
            waiting = [(s["position"], p) for s, p in places if s["state"] == "waiting"]
            assert waiting
            _last, deep = max(waiting, key=lambda w: w[0])  # far back: still waiting
            beat = await c2.post(f"/v1/rooms/{room}/heartbeat", headers=bearer(deep["token"]))
            assert beat.status_code == 200
            assert beat.json()["state"] == "waiting"
            for client in (c, c2):
                ready = await client.get("/readyz")
                assert ready.status_code == 503
                assert ready.json()["nats"] is False
                optional = await client.get("/readyz", params={"nats": "optional"})
                assert optional.status_code == 200  # the load balancer keeps it
                assert optional.json()["outbox_ok"] is False
                assert optional.json()["backlog"] > bound
            await asyncio.to_thread(own_nats.start)  # back, on the same store folder

            async def delivered() -> bool:
                return bool((await figures(c, room))["outbox"] == 0)

            await wait_until(delivered, seconds=30)
        finally:
            load.stop.set()
            await runner
        assert load.errors  # joins were turned away while the outbox was over the bound
        assert all('"events_backlog"' in e for e in load.errors), load.errors[:3]
        await c.put(f"/v1/admin/rooms/{room}", headers=ADMIN, json={"status": "paused"})
        await wait_until(delivered, seconds=30)
        final = await figures(c, room)
        assert (await c.get("/readyz")).status_code == 200
        assert (await c2.post(f"/v1/rooms/{room}/enqueue")).status_code == 201
        return final


async def test_killed_admission_worker_lease_moves_within_the_lease_time(
    settings: Settings, redis: Redis, tmp_path: Path
) -> None:
    from shared.room import RoomUpdate
    from shared.store import RoomStore

    store = RoomStore(redis)
    room = "lease-" + settings.instance
    await store.put_room(room, RoomUpdate(target_url="http://127.0.0.1:9/t", status="paused"))
    env = settings_env(settings, WAITROOM_LEASE_MS="1500", WAITROOM_RELAY="false")
    workers = [
        ModuleProc(
            "admission_worker", env | {"WAITROOM_INSTANCE": f"k{i}"}, tmp_path / f"{i}.log"
        ).start()
        for i in range(2)
    ]
    lease_key = keys.RoomKeys(room).lease("admission")
    try:
        holder = str(await wait_until(lambda: redis.get(lease_key), seconds=10))
        victim = next(w for w in workers if f"-{w.env['WAITROOM_INSTANCE']}:" in holder)
        victim.signal(signal.SIGKILL)

        async def taken_over() -> bool:
            now = await redis.get(lease_key)
            return bool(now is not None and now != holder)

        # the lease lives 1.5 s; another replica holds it within that (plus a tick or two)
        await wait_until(taken_over, seconds=2.0)
        new_holder = str(await redis.get(lease_key))
        assert int(new_holder.rsplit(":", 1)[1]) > int(holder.rsplit(":", 1)[1])  # new fence
    finally:
        for w in workers:
            w.stop()


@pytest.mark.parametrize("module", ["gateway", "admission_worker", "heartbeat_worker"])
def test_every_part_stops_cleanly_on_sigterm(
    module: str, settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    proc = ModuleProc(
        module, settings_env(settings, WAITROOM_PORT=str(port)), tmp_path / "part.log"
    ).start()
    assert proc.proc is not None
    if module == "gateway":
        wait_for_port(port, 20, proc.proc)
    else:  # started (its signal handlers in place), however slow the machine is today
        import time

        deadline = time.monotonic() + 20
        log_path = tmp_path / "part.log"
        while "worker_started" not in log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
    proc.signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    log = (tmp_path / "part.log").read_text()
    if module != "gateway":
        assert "leases_released" in log
        assert "worker_stopped" in log
    else:
        assert "gateway_stopped" in log


async def test_rooms_spread_over_worker_replicas(
    own_store: tuple[ValkeyProc, Settings], tmp_path: Path
) -> None:
    """(A store of its own: the workers take every room in it, and a room another test
    left leased to a holder of its own would never be theirs.)"""
    from shared.redis_conn import connect
    from shared.room import RoomUpdate
    from shared.store import RoomStore

    _, settings = own_store
    redis = connect(settings.redis_url)
    store = RoomStore(redis)
    for i in range(4):
        room = f"spread-{i}-{settings.instance}"
        await store.put_room(room, RoomUpdate(target_url="http://127.0.0.1:9/t", status="paused"))
    env = settings_env(settings, WAITROOM_RELAY="false")
    first = ModuleProc("admission_worker", env | {"WAITROOM_INSTANCE": "s1"}, tmp_path / "1.log")
    second = ModuleProc("admission_worker", env | {"WAITROOM_INSTANCE": "s2"}, tmp_path / "2.log")

    async def holders() -> list[str]:
        """Who holds each room's admission lease, over every room in the store."""
        rooms = await store.rooms()
        values = await redis.mget([keys.RoomKeys(room).lease("admission") for room in rooms])
        return [str(v).split(":")[0] if v else "" for v in values]

    async def held_by(*names: str) -> bool:
        got = await holders()
        counts = [got.count(f"admission-{n}") for n in names]
        return sum(counts) == len(got) and max(counts) - min(counts) <= 1

    try:
        first.start()
        await wait_until(lambda: held_by("s1"), seconds=10)  # alone, it works every room
        second.start()
        await wait_until(lambda: held_by("s1", "s2"), seconds=15)  # then they share
    finally:
        first.stop()
        second.stop()
        await redis.aclose()
