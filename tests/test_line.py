"""The line: many people joining at once get exactly one place each, in order."""

from __future__ import annotations

import asyncio

import httpx

from tests.helpers.api import ADMIN, METRICS, RoomFactory, bearer


async def test_500_concurrent_enqueues_get_places_1_to_500(
    client: httpx.AsyncClient, make_room: RoomFactory
) -> None:
    room = await make_room(status="paused")  # nobody is admitted while we count

    async def join() -> dict[str, object]:
        r = await client.post(f"/v1/rooms/{room}/enqueue", json={})
        assert r.status_code == 201, r.text
        body: dict[str, object] = r.json()
        return body

    joined = await asyncio.gather(*(join() for _ in range(500)))
    positions = sorted(int(str(j["position"])) for j in joined)
    assert positions == list(range(1, 501))
    assert len({j["position_id"] for j in joined}) == 500
    for j in joined:
        assert j["state"] == "waiting"
        assert j["ahead"] == int(str(j["position"])) - 1
        assert int(str(j["total"])) >= int(str(j["position"]))

    async def status(token: str) -> dict[str, object]:
        r = await client.get(f"/v1/rooms/{room}/status", headers=bearer(token))
        assert r.status_code == 200, r.text
        body: dict[str, object] = r.json()
        return body

    statuses = await asyncio.gather(*(status(str(j["token"])) for j in joined))
    for j, s in zip(joined, statuses, strict=True):
        assert s["position"] == j["position"]
        assert s["ahead"] == j["ahead"]
        assert s["total"] == 500
    figures = (await client.get(f"/v1/admin/rooms/{room}", headers=ADMIN)).json()["figures"]
    assert figures["waiting"] == 500
    metrics = (await client.get("/metrics", headers=METRICS)).text
    assert 'waitroom_tokens_signed_total{type="queue"} 500.0' in metrics  # one each, no more
    assert f'waitroom_room_waiting{{room="{room}"}} 500.0' in metrics


async def test_same_token_returns_the_existing_place(
    client: httpx.AsyncClient, make_room: RoomFactory
) -> None:
    room = await make_room(status="paused")
    first = (await client.post(f"/v1/rooms/{room}/enqueue")).json()
    await client.post(f"/v1/rooms/{room}/enqueue")
    again = await client.post(f"/v1/rooms/{room}/enqueue", headers=bearer(first["token"]))
    assert again.status_code == 200
    assert again.json()["position_id"] == first["position_id"]
    assert again.json()["position"] == 1
    assert again.json()["total"] == 2


async def test_leaving_moves_everyone_behind_up(
    client: httpx.AsyncClient, make_room: RoomFactory
) -> None:
    room = await make_room(status="paused")
    people = [(await client.post(f"/v1/rooms/{room}/enqueue")).json() for _ in range(3)]
    r = await client.post(f"/v1/rooms/{room}/leave", headers=bearer(people[0]["token"]))
    assert r.json()["state"] == "left"
    last = await client.get(f"/v1/rooms/{room}/status", headers=bearer(people[2]["token"]))
    assert last.json()["position"] == 2
    assert last.json()["total"] == 2
    gone = await client.get(f"/v1/rooms/{room}/status", headers=bearer(people[0]["token"]))
    assert gone.json()["state"] == "left"
    assert gone.json()["position"] is None


async def test_a_token_of_an_ended_place_joins_afresh(
    client: httpx.AsyncClient, make_room: RoomFactory
) -> None:
    room = await make_room(status="paused")
    first = (await client.post(f"/v1/rooms/{room}/enqueue")).json()
    await client.post(f"/v1/rooms/{room}/leave", headers=bearer(first["token"]))
    again = await client.post(f"/v1/rooms/{room}/enqueue", headers=bearer(first["token"]))
    assert again.status_code == 201
    assert again.json()["position_id"] != first["position_id"]
    assert again.json()["state"] == "waiting"
