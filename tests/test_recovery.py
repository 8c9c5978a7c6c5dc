"""Losing the data store: kill -9 under load, start it empty, `waitroom recover`, and every
room and every person is back as it was; a person coming back with a token alone gets
their place back at their arrival."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
import pytest

from shared.events import Admitted
from shared.settings import Settings
from tests.helpers.api import ADMIN, bearer, create_room, figures, place
from tests.helpers.lines import book, settled
from tests.helpers.load import Load, crowd_client
from tests.helpers.servers import (
    GatewayServer,
    ModuleProc,
    ValkeyProc,
    room_events,
    run_recover,
    settings_env,
)
from tests.helpers.wait import wait_until
from waitroom.processes import free_port, wait_for_port

pytestmark = pytest.mark.slow


async def _digests(client: httpx.AsyncClient, rooms: list[str]) -> dict[str, str]:
    out = {}
    for room in rooms:
        r = await client.get(f"/v1/admin/rooms/{room}/digest", headers=ADMIN)
        assert r.status_code == 200, r.text
        out[room] = r.json()["digest"]
    return out


async def _admitted_total(client: httpx.AsyncClient, rooms: list[str]) -> int:
    return sum([int((await figures(client, room))["admitted_total"]) for room in rooms])


async def test_store_killed_under_load_comes_back_identical_from_the_stream(
    own_store: tuple[ValkeyProc, Settings], tmp_path: Path
) -> None:
    valkey, settings = own_store
    env = settings_env(settings, WAITROOM_LEASE_MS="1000")
    workers = [
        ModuleProc("admission_worker", env | {"WAITROOM_INSTANCE": "a1"}, tmp_path / "a1.log"),
        ModuleProc("admission_worker", env | {"WAITROOM_INSTANCE": "a2"}, tmp_path / "a2.log"),
        ModuleProc("heartbeat_worker", env | {"WAITROOM_INSTANCE": "h1"}, tmp_path / "h1.log"),
    ]
    async with GatewayServer(settings) as gw, crowd_client(gw.url) as c:
        rooms = [f"rec-{i}-{settings.instance}" for i in range(3)]
        for room in rooms:
            await create_room(
                c, room, max_active=25, release_rate=40, heartbeat_timeout=300, claim_window=300
            )
        for w in workers:
            w.start()
        try:
            load = Load(c, rooms)
            runner = asyncio.create_task(load.run(300))
            await asyncio.sleep(4)
            load.stop.set()
            await runner
            assert not load.errors
            for room in rooms:  # quiet the rooms so the digests hold still
                await c.put(f"/v1/admin/rooms/{room}", headers=ADMIN, json={"status": "paused"})

            async def drained() -> bool:
                outboxes = [(await figures(c, room))["outbox"] for room in rooms]
                return all(n == 0 for n in outboxes)

            await wait_until(drained, seconds=20)
            # the gateway answers status from its copies of the lines: they have heard every
            # event delivered (the "before" answers are the store's, as the "after" ones)
            store = gw.app.state.services.store

            async def lines_settled() -> bool:
                for room in rooms:
                    if room in book(gw).lines and not await settled(store, gw, room):
                        return False
                return True

            await wait_until(lines_settled, seconds=10)
            before = await _digests(c, rooms)
            statuses = [await place(c, room, p["token"]) for room, p in load.people]
            states = {s["state"] for s in statuses}
            assert {"waiting", "admitted"} <= states  # the load really moved people
            admitted_before = await _admitted_total(c, rooms)
            assert admitted_before > 0
            room_of, someone = next(
                (room, p)
                for s, (room, p) in zip(statuses, load.people, strict=True)
                if s["state"] == "admitted"
            )
            access_token = (
                await c.get(f"/v1/rooms/{room_of}/status", headers=bearer(someone["token"]))
            ).json()["access_token"]

            valkey.kill()  # kill -9, everything in memory is gone
            r = await c.post(f"/v1/rooms/{rooms[0]}/enqueue")
            assert r.status_code == 503
            assert r.json()["error"]["code"] == "store_unavailable"
            assert int(r.headers["retry-after"]) > 0
            assert (await c.get("/readyz")).status_code == 503
            # people already admitted keep going: their access tokens verify offline
            offline = await c.post(
                "/v1/session/verify", json={"token": access_token, "room": room_of}
            )
            assert offline.status_code == 200
            assert offline.json()["active"] is True
            assert offline.json()["checked"] == "offline"

            valkey.start()  # same port, empty (the relays may start catching rooms up)

            out = run_recover(settings)
            assert "replayed" in out
            assert await _digests(c, rooms) == before
            after = [await place(c, room, p["token"]) for room, p in load.people]
            differ = [(a, b) for a, b in zip(after, statuses, strict=True) if a != b]
            assert not differ, differ[:2]  # (after, before): the whole answers, to see why

            out = run_recover(settings)  # again: nothing changes
            assert "(0 applied" in out
            assert await _digests(c, rooms) == before

            # the workers lived through it and carry on where the line was
            assert all(w.proc is not None and w.proc.poll() is None for w in workers)
            for room in rooms:
                await c.put(f"/v1/admin/rooms/{room}", headers=ADMIN, json={"status": "active"})
            for s, (room, p) in zip(after, load.people, strict=True):
                if s["state"] == "admitted":  # their visits end: units free up
                    body = await c.get(f"/v1/rooms/{room}/status", headers=bearer(p["token"]))
                    done = await c.post(
                        "/v1/session/complete", headers=bearer(body.json()["access_token"])
                    )
                    assert done.json()["state"] == "completed"

            async def more_admitted() -> bool:
                return await _admitted_total(c, rooms) > admitted_before

            await wait_until(more_admitted, seconds=20)
            await wait_until(drained, seconds=20)
        finally:
            for w in workers:
                w.stop()
    for room in rooms:
        events = await room_events(settings.nats_url, room)
        once = [e.position_id for e in events if isinstance(e, Admitted)]
        assert len(once) == len(set(once))  # nobody admitted twice across the loss
        assert [e.seq for e in events] == list(range(1, len(events) + 1))


async def test_a_token_alone_puts_a_lost_place_back_at_its_arrival(
    client: httpx.AsyncClient, settings: Settings, own_store: tuple[ValkeyProc, Settings]
) -> None:
    valkey, own = own_store
    async with GatewayServer(own) as gw, httpx.AsyncClient(base_url=gw.url, timeout=10) as c:
        room = "heal-" + own.instance
        cfg = {"target_url": "http://127.0.0.1:9/t", "status": "paused", "max_positions_per_ip": 0}
        assert (await c.put(f"/v1/admin/rooms/{room}", headers=ADMIN, json=cfg)).status_code == 201
        a, b, c3 = [(await c.post(f"/v1/rooms/{room}/enqueue")).json() for _ in range(3)]
        assert b["position"] == 2
        valkey.kill()
        valkey.start()  # an empty store; nobody runs recover
        assert (await c.put(f"/v1/admin/rooms/{room}", headers=ADMIN, json=cfg)).status_code == 201
        newcomer = (await c.post(f"/v1/rooms/{room}/enqueue")).json()
        assert newcomer["position"] == 1
        back_c = await place(c, room, c3["token"])  # c comes back: before the newcomer
        assert back_c["state"] == "waiting"
        assert back_c["position"] == 1
        back_a = await c.post(f"/v1/rooms/{room}/heartbeat", headers=bearer(a["token"]))
        assert back_a.json()["position_id"] == a["position_id"]
        assert back_a.json()["position"] == 1  # the first to have come: the front again
        tokens = (a["token"], c3["token"], newcomer["token"])
        assert [(await place(c, room, t))["position"] for t in tokens] == [1, 2, 3]
        assert (await place(c, room, newcomer["token"]))["total"] == 3  # b never came back


async def test_a_retry_after_a_gateway_dies_mid_request_gets_the_same_place(
    settings: Settings, tmp_path: Path
) -> None:
    ports = [free_port(), free_port()]
    procs = [
        ModuleProc(
            "gateway",
            settings_env(settings, WAITROOM_PORT=str(port), WAITROOM_INSTANCE=f"g{i}"),
            tmp_path / f"g{i}.log",
        ).start()
        for i, port in enumerate(ports)
    ]
    try:
        for port, proc in zip(ports, procs, strict=True):
            wait_for_port(port, 20, proc.proc)
        first, second = (f"http://127.0.0.1:{p}" for p in ports)
        room = "retry-" + settings.instance
        async with httpx.AsyncClient(timeout=10) as c:
            r = await c.put(
                f"{second}/v1/admin/rooms/{room}",
                headers=ADMIN,
                json={
                    "target_url": "http://127.0.0.1:9/t",
                    "status": "paused",
                    "max_positions_per_ip": 0,
                },
            )
            assert r.status_code == 201
            keys = [f"retry-key-{i:04d}-{settings.instance}" for i in range(200)]

            async def join(base: str, key: str) -> httpx.Response | None:
                try:
                    return await c.post(
                        f"{base}/v1/rooms/{room}/enqueue", headers={"Idempotency-Key": key}
                    )
                except httpx.HTTPError:
                    return None

            in_flight = [asyncio.create_task(join(first, k)) for k in keys]
            await asyncio.sleep(0.05)
            procs[0].signal(signal.SIGKILL)  # the first gateway dies mid-request
            answers = await asyncio.gather(*in_flight)
            lost = [k for k, a in zip(keys, answers, strict=True) if a is None]
            assert lost  # some requests really died with it
            retried = await asyncio.gather(*(join(second, k) for k in keys))
            assert all(r is not None and r.status_code in (200, 201) for r in retried)
            ids = [r.json()["position_id"] for r in retried if r is not None]
            assert len(set(ids)) == len(keys)  # one place per key, whatever the first said
            for first_answer, retry in zip(answers, retried, strict=True):
                if first_answer is not None and first_answer.status_code == 201:
                    assert retry is not None
                    assert retry.json()["position_id"] == first_answer.json()["position_id"]
            figures = (await c.get(f"{second}/v1/admin/rooms/{room}", headers=ADMIN)).json()
            assert figures["figures"]["waiting"] == len(keys)
            positions = sorted(x.json()["position"] for x in retried if x is not None)
            assert positions == list(range(1, len(keys) + 1))
    finally:
        for proc in procs:
            proc.stop()
