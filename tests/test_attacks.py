"""The line under attack from people who read our JavaScript: a claimed admission's queue
token reused as a key, an Idempotency-Key replayed from another client, event streams
opened by the dozen or left open after the place ended, address limits dodged with
IPv6 and made-up X-Forwarded-For chains."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator

import httpx
import pytest

from shared.settings import Settings
from tests.conftest import RoomFactory, bearer, create_room
from tests.servers import GatewayServer, in_process_workers, wait_until
from tests.test_live import SseClient


async def admitted(client: httpx.AsyncClient, settings: Settings, room: str) -> dict[str, str]:
    """Join and wait (workers running) until admitted; the person's join answer."""
    joined = (await client.post(f"/v1/rooms/{room}/enqueue")).json()

    async def is_admitted() -> bool:
        r = await client.get(f"/v1/rooms/{room}/status", headers=bearer(joined["token"]))
        return bool(r.json()["state"] == "admitted")

    async with in_process_workers(settings):
        await wait_until(is_admitted)
    return dict(joined)


async def test_after_go_the_queue_token_opens_nothing(
    client: httpx.AsyncClient, make_room: RoomFactory, settings: Settings
) -> None:
    room = await make_room(release_rate=1000, max_active=5)
    me = await admitted(client, settings, room)
    auth = bearer(me["token"])
    before = (await client.get(f"/v1/rooms/{room}/status", headers=auth)).json()
    assert before["access_token"]  # handed out while the admission waits to be claimed
    go = await client.get(f"/rooms/{room}/go", params={"token": me["token"]})
    assert go.status_code == 303
    after = (await client.get(f"/v1/rooms/{room}/status", headers=auth)).json()
    assert after["state"] == "active"
    assert "access_token" not in after
    assert "redirect_url" not in after
    beat = (await client.post(f"/v1/rooms/{room}/heartbeat", headers=auth)).json()
    assert "access_token" not in beat
    again = await client.get(f"/rooms/{room}/go", params={"token": me["token"]})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "already_claimed"
    assert "location" not in again.headers
    # nor does an event stream hand it out
    sse = SseClient(f"{client.base_url}/v1/rooms/{room}/events", me["token"])
    await asyncio.wait_for(sse.run(client), timeout=10)  # the place is past waiting: it ends
    assert all("access_token" not in data for _, _, data in sse.events)


async def test_an_idempotency_key_replayed_by_another_client_gets_no_tokens(
    settings: Settings,
) -> None:
    async with (
        GatewayServer(settings.with_changes(token_binding=True)) as gw,
        httpx.AsyncClient(base_url=gw.url, headers={"User-Agent": "phone"}) as owner,
        httpx.AsyncClient(base_url=gw.url, headers={"User-Agent": "thief"}) as thief,
    ):
        room = "t-idem-" + settings.instance[-6:]
        await create_room(owner, room, release_rate=1000)
        key = {"Idempotency-Key": "a-key-the-thief-saw"}
        first = await owner.post(f"/v1/rooms/{room}/enqueue", headers=key)
        assert first.status_code == 201
        replay = await thief.post(f"/v1/rooms/{room}/enqueue", headers=key)
        assert replay.status_code == 200
        body = replay.json()
        assert body["position_id"] == first.json()["position_id"]
        assert "token" not in body
        assert "access_token" not in body
        assert "redirect_url" not in body
        mine = await owner.post(f"/v1/rooms/{room}/enqueue", headers=key)
        assert mine.json()["token"]  # the client it was issued to may retry


async def test_twenty_streams_on_one_token_get_four(
    client: httpx.AsyncClient, make_room: RoomFactory
) -> None:
    room = await make_room(status="paused")
    me = (await client.post(f"/v1/rooms/{room}/enqueue")).json()
    url = f"/v1/rooms/{room}/events"

    async def open_one() -> tuple[int, httpx.Response]:
        r = await client.send(
            client.build_request("GET", url, params={"token": me["token"]}), stream=True
        )
        return r.status_code, r

    opened = await asyncio.gather(*(open_one() for _ in range(20)))
    try:
        codes = sorted(code for code, _ in opened)
        assert codes.count(200) == 4, codes
        assert codes.count(429) == 16, codes
        refused = next(r for code, r in opened if code == 429)
        await refused.aread()
        assert refused.json()["error"]["code"] == "too_many_streams"
        assert int(refused.headers["retry-after"]) > 0
    finally:
        for _, r in opened:
            await r.aclose()

    async def one_more_opens() -> bool:  # the slots come back when the streams close
        code, r = await open_one()
        await r.aclose()
        return code == 200

    await wait_until(one_more_opens)


async def test_a_stream_closes_when_its_place_ends(
    client: httpx.AsyncClient, make_room: RoomFactory
) -> None:
    room = await make_room(status="paused")
    me = (await client.post(f"/v1/rooms/{room}/enqueue")).json()
    sse = SseClient(f"{client.base_url}/v1/rooms/{room}/events", me["token"])
    reading = asyncio.create_task(sse.run(client))
    await wait_until(lambda: _async(bool(sse.first("position"))))
    left = await client.post(f"/v1/rooms/{room}/leave", headers=bearer(me["token"]))
    assert left.json()["state"] == "left"
    await asyncio.wait_for(reading, timeout=15)  # the server ended the stream
    assert sse.events[-1][1:] == ("state", {"state": "left", "reason": "left"})


async def _async(value: bool) -> bool:
    return value


@pytest.fixture
async def behind_proxy(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway that believes X-Forwarded-For from loopback (its proxy)."""
    trusting = settings.with_changes(trusted_proxies=(ipaddress.ip_network("127.0.0.1/32"),))
    async with GatewayServer(trusting) as gw, httpx.AsyncClient(base_url=gw.url) as c:
        yield c


async def test_one_ipv6_64_holds_one_place(behind_proxy: httpx.AsyncClient) -> None:
    c = behind_proxy
    room = "t-v6-" + str(id(c))[-6:]
    await create_room(c, room, max_positions_per_ip=1)

    def at(ip: str) -> dict[str, str]:
        return {"X-Forwarded-For": ip}

    first = await c.post(f"/v1/rooms/{room}/enqueue", headers=at("2001:db8:5:6::1"))
    assert first.status_code == 201
    for ip in ("2001:db8:5:6::2", "2001:db8:5:6:ffff:1:2:3", "2001:db8:5:6::1"):
        r = await c.post(f"/v1/rooms/{room}/enqueue", headers=at(ip))
        assert r.status_code == 409, (ip, r.text)
        assert r.json()["error"]["code"] == "too_many_positions"
    other = await c.post(f"/v1/rooms/{room}/enqueue", headers=at("2001:db8:5:7::1"))
    assert other.status_code == 201


async def test_made_up_forwarded_chains_do_not_make_new_clients(
    behind_proxy: httpx.AsyncClient,
) -> None:
    c = behind_proxy
    room = "t-xff-" + str(id(c))[-6:]
    await create_room(c, room, max_positions_per_ip=1)
    for junk in ("junk", "198.51.100.9, <script>", "unknown"):
        r = await c.post(f"/v1/rooms/{room}/enqueue", headers={"X-Forwarded-For": junk})
        assert r.status_code == 400, (junk, r.text)
        assert r.json()["error"]["code"] == "invalid_forwarded_for"
    # everything trusted: the entry our own proxy wrote counts, not the client's own
    first = await c.post(
        f"/v1/rooms/{room}/enqueue", headers={"X-Forwarded-For": "127.0.0.7, 127.0.0.9"}
    )
    assert first.status_code == 201
    for fake in ("127.0.0.1", "127.0.0.2", "127.0.0.3"):
        r = await c.post(
            f"/v1/rooms/{room}/enqueue", headers={"X-Forwarded-For": f"{fake}, 127.0.0.9"}
        )
        assert r.status_code == 409, (fake, r.text)
