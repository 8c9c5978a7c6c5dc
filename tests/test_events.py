"""The event stream holds exactly the state changes, in seq order; heartbeats are not
events."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from redis.asyncio import Redis

from shared.events import Enqueued, Expired, RoomUpdated, event_type
from shared.settings import Settings
from tests.helpers.api import RoomFactory, bearer, place
from tests.helpers.servers import in_process_workers, room_events
from tests.helpers.wait import wait_until


async def test_stream_holds_exactly_the_state_changes_in_order(
    client: httpx.AsyncClient, make_room: RoomFactory, settings: Settings, redis: Redis
) -> None:
    room = await make_room(max_active=1, release_rate=50, claim_window=1, status="paused")
    a, b, c = [(await client.post(f"/v1/rooms/{room}/enqueue")).json() for _ in range(3)]
    for person in (a, b, c):  # heartbeats are liveness, not events
        await client.post(f"/v1/rooms/{room}/heartbeat", headers=bearer(person["token"]))

    async def is_(person: dict[str, Any], state: str) -> bool:
        return bool((await place(client, room, person["token"]))["state"] == state)

    async with in_process_workers(settings):
        await client.put(
            f"/v1/admin/rooms/{room}",
            json={"status": "active"},
            headers={"Authorization": f"Bearer {settings.admin_key}"},
        )
        await wait_until(lambda: is_(a, "admitted"))
        go = (await place(client, room, a["token"]))["redirect_url"]
        went = await client.get(go)
        assert went.status_code == 303
        r = await client.post(f"/v1/rooms/{room}/leave", headers=bearer(c["token"]))
        assert r.json()["state"] == "left"
        # the site gets the access token with the redirect, and only there
        access = parse_qs(urlsplit(went.headers["location"]).query)["waitroom_token"][0]
        await client.post("/v1/session/heartbeat", headers=bearer(access))
        await client.post("/v1/session/complete", headers=bearer(access))
        await wait_until(lambda: is_(b, "admitted"))
        await wait_until(lambda: is_(b, "expired"), seconds=5)  # never claimed

        async def drained() -> bool:
            return int(await redis.xlen(f"wr:{{{room}}}:outbox")) == 0

        await wait_until(drained)

    events = await room_events(settings.nats_url, room)
    got = [(event_type(e), getattr(e, "position_id", None)) for e in events]
    pa, pb, pc = a["position_id"], b["position_id"], c["position_id"]
    assert got == [
        ("room_updated", None),
        ("enqueued", pa),
        ("enqueued", pb),
        ("enqueued", pc),
        ("room_updated", None),
        ("admitted", pa),
        ("activated", pa),
        ("left", pc),
        ("completed", pa),
        ("admitted", pb),
        ("expired", pb),
    ]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert len({e.id for e in events}) == len(events)
    assert isinstance(events[0], RoomUpdated)
    assert events[0].created
    assert events[0].incarnation
    assert events[0].config["max_active"] == 1
    arrivals = [e.arrival for e in events if isinstance(e, Enqueued)]
    assert arrivals == sorted(set(arrivals))
    last = events[-1]
    assert isinstance(last, Expired)
    assert last.reason == "claim_timeout"
