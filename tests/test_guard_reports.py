"""What the guard tells both sides: the room hears the site's response times with the
session heartbeats, signed with the site key, so a visitor holding their own access token
cannot report made-up times; the site hears how long each visit has left (the demo site
warns)."""

from __future__ import annotations

import asyncio
import html
import json
import re
import time
from typing import Any

import httpx
import jwt

from shared.settings import Settings
from shared.site_latency import REPORT_MAC_HEADER, report_mac
from shared.store import RoomStore
from tests.helpers.api import METRICS, SITE_KEY, bearer, create_room, figures, fresh_room_id
from tests.helpers.servers import AppServer, GatewayServer
from tests.helpers.wait import wait_until
from waitroom.demo_site import create_demo_app


async def admit_all(store: RoomStore, room: str) -> None:
    """One admission tick under a lease of the test's own."""
    fences = await store.lease_acquire_many([room], "admission", "test", 5000)
    await store.admit(room, "test", fences[0], 5000)


async def admitted_visit(client: httpx.AsyncClient, store: RoomStore, room: str) -> str:
    """A place joined and admitted: its access token, as the /go redirect hands it out."""
    token = (await client.post(f"/v1/rooms/{room}/enqueue")).json()["token"]
    await admit_all(store, room)
    status = (await client.get(f"/v1/rooms/{room}/status", headers=bearer(token))).json()
    assert status["state"] == "admitted"
    access: str = status["access_token"]
    return access


def report_body(report: dict[str, Any]) -> bytes:
    return json.dumps({"latency": report}).encode()


async def post_report(
    client: httpx.AsyncClient, access: str, body: bytes, mac: str | None
) -> httpx.Response:
    """A session heartbeat carrying a report, as the guard sends it (``mac``: its header,
    the MAC over exactly these bytes)."""
    headers = {**bearer(access), "Content-Type": "application/json"}
    if mac is not None:
        headers[REPORT_MAC_HEADER] = mac
    r = await client.post("/v1/session/heartbeat", headers=headers, content=body)
    assert r.status_code == 200, r.text  # the heartbeat is answered, kept or not
    return r


def sub_of(access: str) -> str:
    sub: str = jwt.decode(access, options={"verify_signature": False})["sub"]
    return sub


async def site_reports(client: httpx.AsyncClient) -> dict[str, float]:
    """``waitroom_site_reports_total`` of the gateway, by outcome."""
    text = (await client.get("/metrics", headers=METRICS)).text
    found = re.findall(r'^waitroom_site_reports_total\{outcome="(\w+)"\} (\S+)$', text, re.M)
    return {outcome: float(n) for outcome, n in found}


FORGED = {"count": 10**9, "p50_ms": 3_600_000, "p95_ms": 3_600_000, "max_ms": 3_600_000}
"""A visitor's made-up report: the site an hour slow, out of a billion samples."""


async def test_the_guard_reports_the_sites_latency_and_the_room_shows_it(
    gateway: GatewayServer, client: httpx.AsyncClient, store: RoomStore
) -> None:
    room = fresh_room_id("lat")
    demo = create_demo_app(
        gateway.url, room, ms_per_visit=30, heartbeat_every=60, report_every=0.2, site_key=SITE_KEY
    )
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
    report = report_body(good["latency"])
    await post_report(client, access, report, report_mac(SITE_KEY, room, sub_of(access), report))
    assert (await figures(client, room))["site_p95_ms"] == 20.5
    r = await client.post("/v1/session/heartbeat", headers=bearer(access))  # no body: fine
    assert r.status_code == 200


async def test_a_visitors_own_report_does_not_move_the_pace_the_guards_signed_one_does(
    gateway: GatewayServer, client: httpx.AsyncClient, store: RoomStore
) -> None:
    """The attack: an admitted visitor holds their access token and posts heartbeats with
    made-up latency, to stop admissions (an hour's p95) or to keep them coming while the
    site is overloaded. Their heartbeat is answered; their report is not kept."""
    room = fresh_room_id("forge")
    await create_room(client, room, release_rate=100, auto_release=True, target_latency_ms=200)
    access = await admitted_visit(client, store, room)
    sub = sub_of(access)
    before = await site_reports(client)

    beat = await post_report(client, access, report_body(FORGED), None)
    assert beat.json()["active"] is True  # the visit's own keep-alive still works
    # a MAC made up, one over other figures, one for another visit, one with another key
    forged = report_body(FORGED)
    honest = report_body({"count": 5, "p50_ms": 10, "p95_ms": 40, "max_ms": 50})
    guessed = "a-key-the-visitor-guessed-" + "g" * 8
    for mac in (
        "00" * 32,
        report_mac(SITE_KEY, room, sub, honest),
        report_mac(SITE_KEY, room, "someone-else", forged),
        report_mac(guessed, room, sub, forged),
    ):
        await post_report(client, access, forged, mac)
    assert (await figures(client, room))["site_p95_ms"] is None
    inputs = await store.pace_inputs(room)
    assert inputs is not None
    assert inputs.reports == []

    # the guard's report, signed with the site key, is kept
    await post_report(client, access, honest, report_mac(SITE_KEY, room, sub, honest))
    assert (await figures(client, room))["site_p95_ms"] == 40
    after = await site_reports(client)
    dropped = {k: after.get(k, 0) - before.get(k, 0) for k in ("unsigned", "bad_mac", "kept")}
    assert dropped == {"unsigned": 1, "bad_mac": 4, "kept": 1}


async def test_a_gateway_without_a_site_key_keeps_no_report(
    settings: Settings, store: RoomStore
) -> None:
    """With no WAITROOM_SITE_KEY nothing can be checked, so nothing counts: a room with
    auto_release then sees no reports and its pace climbs back to release_rate."""
    async with (
        GatewayServer(settings.with_changes(site_key="")) as bare,
        httpx.AsyncClient(base_url=bare.url, timeout=10) as client,
    ):
        room = fresh_room_id("nokey")
        await create_room(client, room, release_rate=100, auto_release=True, target_latency_ms=200)
        access = await admitted_visit(client, store, room)
        body = report_body(FORGED)
        await post_report(client, access, body, report_mac(SITE_KEY, room, sub_of(access), body))
        assert (await figures(client, room))["site_p95_ms"] is None
        assert (await site_reports(client)).get("no_site_key") == 1
