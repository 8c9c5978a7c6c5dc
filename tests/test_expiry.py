"""The heartbeat worker expires the silent, and units come back at once."""

from __future__ import annotations

import asyncio

import httpx

from shared.settings import Settings
from tests.helpers.api import RoomFactory, bearer, figures, in_state, place
from tests.helpers.servers import in_process_workers
from tests.helpers.wait import wait_until


async def test_silent_waiters_expire_heartbeating_ones_stay(
    client: httpx.AsyncClient, make_room: RoomFactory, settings: Settings
) -> None:
    room = await make_room(status="paused", heartbeat_interval=1, heartbeat_timeout=2)
    talker = (await client.post(f"/v1/rooms/{room}/enqueue")).json()
    silent = (await client.post(f"/v1/rooms/{room}/enqueue")).json()
    async with in_process_workers(settings):
        for _ in range(8):  # 4 s: twice the timeout
            r = await client.post(f"/v1/rooms/{room}/heartbeat", headers=bearer(talker["token"]))
            assert r.status_code == 200
            await asyncio.sleep(0.5)
    gone = await place(client, room, silent["token"])
    assert gone["state"] == "expired"
    assert gone["reason"] == "heartbeat_timeout"
    kept = await place(client, room, talker["token"])
    assert kept["state"] == "waiting"
    assert kept["position"] == 1
    assert kept["total"] == 1
    seen = await figures(client, room)
    assert seen["expired_total"] == 1
    assert seen["waiting"] == 1


async def test_unclaimed_admission_expires_and_its_units_are_reused(
    client: httpx.AsyncClient, make_room: RoomFactory, settings: Settings
) -> None:
    room = await make_room(max_active=2, release_rate=50, claim_window=1)
    first = (await client.post(f"/v1/rooms/{room}/enqueue", json={"size": 2})).json()
    second = (await client.post(f"/v1/rooms/{room}/enqueue", json={"size": 2})).json()
    async with in_process_workers(settings):
        await wait_until(lambda: in_state(client, room, first["token"], "admitted"))
        assert (await place(client, room, second["token"]))["state"] == "waiting"
        assert (await figures(client, room))["used_units"] == 2
        await wait_until(lambda: in_state(client, room, second["token"], "admitted"), seconds=6)
    lapsed = await place(client, room, first["token"])
    assert lapsed["state"] == "expired"
    assert lapsed["reason"] == "claim_timeout"
    assert (await figures(client, room))["used_units"] <= 2


async def test_complete_frees_units_at_once(
    client: httpx.AsyncClient, make_room: RoomFactory, settings: Settings
) -> None:
    room = await make_room(max_active=3, release_rate=50)
    person = (await client.post(f"/v1/rooms/{room}/enqueue", json={"size": 3})).json()
    async with in_process_workers(settings):
        await wait_until(lambda: in_state(client, room, person["token"], "admitted"))
    access = (await place(client, room, person["token"]))["access_token"]
    assert (await figures(client, room))["used_units"] == 3
    r = await client.post("/v1/session/complete", headers=bearer(access))
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "completed"
    # no worker runs now: the units came back in the same call
    assert (await figures(client, room))["used_units"] == 0
    assert (await place(client, room, person["token"]))["state"] == "completed"


async def test_session_past_its_ttl_ends(
    client: httpx.AsyncClient, make_room: RoomFactory, settings: Settings
) -> None:
    room = await make_room(max_active=1, release_rate=50, session_ttl=1)
    person = (await client.post(f"/v1/rooms/{room}/enqueue")).json()
    async with in_process_workers(settings):
        await wait_until(lambda: in_state(client, room, person["token"], "admitted"))
        status = await place(client, room, person["token"])
        claim = await client.get(status["redirect_url"], follow_redirects=False)
        assert claim.status_code == 303
        assert claim.headers["location"].startswith("http://127.0.0.1:9/target?waitroom_token=")
        assert (await place(client, room, person["token"]))["state"] == "active"
        await wait_until(lambda: in_state(client, room, person["token"], "expired"), seconds=5)
    ended = await place(client, room, person["token"])
    assert ended["reason"] == "session_timeout"
    assert (await figures(client, room))["used_units"] == 0
    again = await client.get(status["redirect_url"], follow_redirects=False)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "session_ended"


async def test_session_heartbeat_keeps_a_visit_alive(
    client: httpx.AsyncClient, make_room: RoomFactory, settings: Settings
) -> None:
    room = await make_room(max_active=1, release_rate=50, session_ttl=4)
    person = (await client.post(f"/v1/rooms/{room}/enqueue")).json()
    async with in_process_workers(settings):
        await wait_until(lambda: in_state(client, room, person["token"], "admitted"))
        access = (await place(client, room, person["token"]))["access_token"]
        for _ in range(16):  # 8 s: twice the session ttl, each token well inside its own
            r = await client.post("/v1/session/heartbeat", headers=bearer(access))
            assert r.status_code == 200, r.text
            assert r.json()["state"] == "active"
            access = r.json()["access_token"]
            await asyncio.sleep(0.5)
        assert (await place(client, room, person["token"]))["state"] == "active"
