"""What the guard tells both sides: the room hears the site's response times with the
session heartbeats; the site hears how long each visit has left (the demo site warns)."""

from __future__ import annotations

import asyncio
import html
import re
import time

import httpx

from shared.store import RoomStore
from tests.helpers.api import bearer, create_room, figures, fresh_room_id
from tests.helpers.servers import AppServer, GatewayServer
from tests.helpers.wait import wait_until
from waitroom.demo_site import create_demo_app


async def admit_all(store: RoomStore, room: str) -> None:
    """One admission tick under a lease of the test's own."""
    fences = await store.lease_acquire_many([room], "admission", "test", 5000)
    await store.admit(room, "test", fences[0], 5000)


async def test_the_guard_reports_the_sites_latency_and_the_room_shows_it(
    gateway: GatewayServer, client: httpx.AsyncClient, store: RoomStore
) -> None:
    room = fresh_room_id("lat")
    demo = create_demo_app(gateway.url, room, ms_per_visit=30, heartbeat_every=60, report_every=0.2)
    async with AppServer(demo, lifespan="off") as site:
        await create_room(client, room, target_url=f"{site.url}/", release_rate=100)
        token = (await client.post(f"/v1/rooms/{room}/enqueue")).json()["token"]
        await admit_all(store, room)
        status = (await client.get(f"/v1/rooms/{room}/status", headers=bearer(token))).json()
        assert status["state"] == "admitted"
        async with httpx.AsyncClient(timeout=10) as web:
            page = await web.get(
                status["redirect_url"], headers={"Accept": "text/html"}, follow_redirects=True
            )
            assert "You're in" in page.text
            assert (await figures(client, room))["site_p95_ms"] is None

            async def reported() -> float | None:
                await web.get(f"{site.url}/", headers={"Accept": "text/html"})
                p95: float | None = (await figures(client, room))["site_p95_ms"]
                return p95

            p95 = await wait_until(reported, seconds=10, every=0.25)
        inputs = await store.pace_inputs(room)
        await demo.aclose()
    assert inputs is not None
    assert 30 <= p95 < 1000  # one visit on the site: each page takes 30 ms and a little
    assert len(inputs.reports) == 1  # one visit, one report kept (its latest)
    assert inputs.reports[0].n >= 1


async def test_the_visit_knows_how_long_it_has_left_and_the_demo_warns(
    gateway: GatewayServer, client: httpx.AsyncClient, store: RoomStore
) -> None:
    room = fresh_room_id("time")
    demo = create_demo_app(gateway.url, room, heartbeat_every=0.2)
    async with AppServer(demo, lifespan="off") as site:
        await create_room(client, room, target_url=f"{site.url}/", release_rate=100, max_session=90)
        token = (await client.post(f"/v1/rooms/{room}/enqueue")).json()["token"]
        await admit_all(store, room)
        status = (await client.get(f"/v1/rooms/{room}/status", headers=bearer(token))).json()
        async with httpx.AsyncClient(timeout=10) as web:
            page = await web.get(
                status["redirect_url"], headers={"Accept": "text/html"}, follow_redirects=True
            )
            await asyncio.sleep(0.5)  # the guard's first heartbeat answers the session's end
            page = await web.get(f"{site.url}/", headers={"Accept": "text/html"})
        beat = await client.post("/v1/session/heartbeat", headers=bearer(status["access_token"]))
        await demo.aclose()
    deadline = float(re.search(r'data-deadline="(\d+)"', page.text)[1])  # type: ignore[index]
    # the visit ends max_session after it began, whatever the heartbeats say
    assert abs(deadline - beat.json()["session_deadline"]) <= 1
    assert 85 <= deadline - time.time() <= 91
    notice = re.search(r'<p id="time-notice"[^>]*>([^<]*)</p>', page.text)
    assert notice is not None
    assert "hidden" not in notice[0]  # less than two minutes left: the site says so
    assert html.unescape(notice[1]) in ("Your time ends in 2 minutes.",)


async def test_a_heartbeat_body_is_checked(
    gateway: GatewayServer, client: httpx.AsyncClient, store: RoomStore
) -> None:
    room = fresh_room_id("beat")
    await create_room(client, room, release_rate=100)
    token = (await client.post(f"/v1/rooms/{room}/enqueue")).json()["token"]
    await admit_all(store, room)
    access = (await client.get(f"/v1/rooms/{room}/status", headers=bearer(token))).json()[
        "access_token"
    ]
    good = {"latency": {"count": 3, "p50_ms": 10, "p95_ms": 20.5, "max_ms": 30}}
    for body in (
        {"latency": {**good["latency"], "count": 0}},
        {"latency": {**good["latency"], "p95_ms": -1}},
        {"latency": {"count": 3}},
        {"latency": good["latency"], "extra": 1},
    ):
        r = await client.post("/v1/session/heartbeat", headers=bearer(access), json=body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"]["code"] == "invalid_body"
    assert (await figures(client, room))["site_p95_ms"] is None
    r = await client.post("/v1/session/heartbeat", headers=bearer(access), json=good)
    assert r.status_code == 200
    assert (await figures(client, room))["site_p95_ms"] == 20.5
    r = await client.post("/v1/session/heartbeat", headers=bearer(access))  # no body: fine
    assert r.status_code == 200
