"""Status calls and heartbeats answered before the framework, from the gateway's memory
(gateway/fast_answers.py): the answers equal the full way's, byte for byte where they
can, and every call the full way refuses is still refused the same way. Each check asks
a gateway answering from memory and one answering everything from the store (same store)
the same thing."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import AsyncIterator

import httpx
import jwt

from shared.keyring import KeyRing
from shared.settings import RateLimits, Settings
from shared.store import RoomStore
from shared.tokens import TokenService
from tests.helpers.api import METRICS, assert_error, bearer, create_room, fresh_room_id
from tests.helpers.lines import book, settled
from tests.helpers.servers import GatewayServer, in_process_workers
from tests.helpers.wait import wait_until

STATUS_ROUTE = "/v1/rooms/{room}/status"


@contextlib.asynccontextmanager
async def two_ways(
    settings: Settings, user_agent: str = "phone"
) -> AsyncIterator[tuple[GatewayServer, httpx.AsyncClient, httpx.AsyncClient]]:
    """A gateway answering from memory and one answering from the store, with a client of
    each (same User-Agent); the workers run, so the memory follows the room's events."""
    headers = {"User-Agent": user_agent}
    async with (
        GatewayServer(settings) as fast,
        GatewayServer(settings.with_changes(lines_in_memory=False)) as full,
        httpx.AsyncClient(base_url=fast.url, headers=headers) as f,
        httpx.AsyncClient(base_url=full.url, headers=headers) as s,
        in_process_workers(settings),
    ):
        yield fast, f, s


async def remembered(gw: GatewayServer) -> int:
    return int(gw.app.state.services.people.remembered_answers)


async def loaded(
    store: RoomStore, gw: GatewayServer, c: httpx.AsyncClient, room: str, token: str
) -> None:
    """The fast gateway keeps the room's line, at the store's event counter."""
    await c.get(f"/v1/rooms/{room}/status", headers=bearer(token))  # the first ask loads it
    await wait_until(lambda: settled(store, gw, room))


async def test_answers_from_memory_equal_the_full_answers(
    settings: Settings, store: RoomStore
) -> None:
    async with two_ways(settings) as (fast, f, s):
        room = fresh_room_id("fast")
        await create_room(f, room, status="paused", max_active=5)
        people = [(await f.post(f"/v1/rooms/{room}/enqueue")).json() for _ in range(12)]
        await loaded(store, fast, f, room, people[0]["token"])
        before = await remembered(fast)
        for p in people:
            for method, call in (("GET", "status"), ("POST", "heartbeat")):
                url = f"/v1/rooms/{room}/{call}"
                mine = await f.request(method, url, headers=bearer(p["token"]))
                theirs = await s.request(method, url, headers=bearer(p["token"]))
                assert mine.status_code == theirs.status_code == 200
                assert mine.json() == theirs.json()
                assert mine.headers["content-type"] == theirs.headers["content-type"]
                assert re.fullmatch(r"[0-9a-f]{32}", mine.headers["x-request-id"])
        assert await remembered(fast) - before == 2 * len(people)  # all of them here
        # a request id sent by a proxy is kept, as on the full way
        r = await f.get(
            f"/v1/rooms/{room}/status",
            headers={**bearer(people[3]["token"]), "X-Request-ID": "edge-42"},
        )
        assert r.headers["x-request-id"] == "edge-42"
        assert r.json()["position"] == 4
        # and counted in the metrics under the route, as the framework would
        text = (await f.get("/metrics", headers=METRICS)).text
        counted = re.search(
            r'waitroom_http_requests_total\{route="' + re.escape(STATUS_ROUTE) + r'",'
            r'status="200"\} (\d+)',
            text,
        )
        assert counted is not None
        assert int(counted.group(1)) >= len(people) + 2


async def test_what_the_full_way_refuses_is_refused_from_memory_too(
    settings: Settings, store: RoomStore
) -> None:
    async with two_ways(settings.with_changes(token_binding=True)) as (fast, f, s):
        room, other = fresh_room_id("fast"), fresh_room_id("fast")
        for name in (room, other):
            await create_room(f, name, status="paused")
        me = (await f.post(f"/v1/rooms/{room}/enqueue")).json()
        there = (await f.post(f"/v1/rooms/{other}/enqueue")).json()
        await loaded(store, fast, f, room, me["token"])
        await loaded(store, fast, f, other, there["token"])
        before = await remembered(fast)
        header, _payload, signature = me["token"].split(".")
        claims = jwt.decode(me["token"], options={"verify_signature": False})
        forged_payload = jwt.utils.base64url_encode(
            json.dumps({**claims, "arr": 1}).encode()
        ).decode()
        attempts: dict[str, tuple[str, str, dict[str, str]]] = {
            "another room's token": (f"/v1/rooms/{other}/status", me["token"], {}),
            "forged arrival": (
                f"/v1/rooms/{room}/status",
                f"{header}.{forged_payload}.{signature}",
                {},
            ),
            "no token": (f"/v1/rooms/{room}/status", "", {}),
            "unknown room": (f"/v1/rooms/no-such-{room}/status", me["token"], {}),
        }
        for what, (url, token, extra) in attempts.items():
            headers = {**(bearer(token) if token else {}), **extra}
            mine, theirs = await f.get(url, headers=headers), await s.get(url, headers=headers)
            assert mine.status_code == theirs.status_code >= 400, what
            assert mine.json() == theirs.json(), what
        # a token bound to the phone, shown by another client
        async with httpx.AsyncClient(base_url=fast.url, headers={"User-Agent": "thief"}) as t:
            r = await t.get(f"/v1/rooms/{room}/status", headers=bearer(me["token"]))
            assert_error(r, 403, "token_binding_mismatch")
            r = await t.post(f"/v1/rooms/{room}/heartbeat", headers=bearer(me["token"]))
            assert_error(r, 403, "token_binding_mismatch")
        # a heartbeat with a body the API does not take
        r = await f.post(
            f"/v1/rooms/{room}/heartbeat", headers=bearer(me["token"]), json={"position": 1}
        )
        assert r.status_code == 400, r.text
        assert await remembered(fast) == before  # none of these was answered from memory


async def test_the_limit_per_token_holds_on_answers_from_memory(
    settings: Settings, store: RoomStore
) -> None:
    limited = settings.with_changes(
        rate_limits=RateLimits(enabled=True, status="4/minute", heartbeat="3/minute")
    )
    async with two_ways(limited) as (fast, f, _s):
        room = fresh_room_id("fast")
        await create_room(f, room, status="paused", max_positions_per_ip=0)
        me, other = [(await f.post(f"/v1/rooms/{room}/enqueue")).json() for _ in range(2)]
        await loaded(store, fast, f, room, other["token"])
        assert book(fast).lines[room].synced
        before = await remembered(fast)
        codes = [
            (await f.get(f"/v1/rooms/{room}/status", headers=bearer(me["token"]))).status_code
            for _ in range(6)
        ]
        assert codes == [200, 200, 200, 200, 429, 429]
        beats = [
            (await f.post(f"/v1/rooms/{room}/heartbeat", headers=bearer(me["token"]))).status_code
            for _ in range(4)
        ]
        assert beats == [200, 200, 200, 429]
        assert await remembered(fast) - before == 7


async def test_someone_admitted_is_answered_the_full_way_with_their_access_token(
    settings: Settings, store: RoomStore
) -> None:
    async with two_ways(settings) as (fast, f, s):
        room = fresh_room_id("fast")
        await create_room(f, room, status="paused", max_active=1)
        first, second = [(await f.post(f"/v1/rooms/{room}/enqueue")).json() for _ in range(2)]
        await loaded(store, fast, f, room, second["token"])
        r = await f.put(
            f"/v1/admin/rooms/{room}",
            json={"status": "active"},
            headers={"Authorization": f"Bearer {settings.admin_key}"},
        )
        assert r.status_code == 200, r.text
        url = f"/v1/rooms/{room}/status"

        async def admitted() -> bool:
            r = await f.get(url, headers=bearer(first["token"]))
            return bool(r.json()["state"] == "admitted")

        await wait_until(admitted)
        mine = (await f.get(url, headers=bearer(first["token"]))).json()
        theirs = (await s.get(url, headers=bearer(first["token"]))).json()
        assert mine["access_token"]
        assert mine["redirect_url"]
        here, there = str(f.base_url).rstrip("/"), str(s.base_url).rstrip("/")
        mine["redirect_url"] = mine["redirect_url"].replace(here, there)  # each links to itself
        assert {k: v for k, v in mine.items() if k != "access_token"} == {
            k: v for k, v in theirs.items() if k != "access_token"
        }


async def test_a_heartbeat_on_a_token_past_half_its_life_gets_a_new_one(
    settings: Settings, store: RoomStore
) -> None:
    async with two_ways(settings) as (fast, f, _s):
        room = fresh_room_id("fast")
        await create_room(f, room, status="paused")
        me = (await f.post(f"/v1/rooms/{room}/enqueue")).json()
        await loaded(store, fast, f, room, me["token"])
        # the same place's token, signed 200 s ago with 100 s left
        service = TokenService(
            KeyRing(settings.keys_dir), issuer=settings.issuer, audience=settings.audience
        )
        try:
            claims = jwt.decode(me["token"], options={"verify_signature": False})
            now = int(time.time())
            old = service.sign_queue_sync({**claims, "iat": now - 200, "exp": now + 100})
        finally:
            service.close()
        before = await remembered(fast)
        r = await f.post(f"/v1/rooms/{room}/heartbeat", headers=bearer(old))
        assert r.status_code == 200, r.text
        fresh = r.json()["token"]
        assert fresh != old  # re-signed, on the full way
        assert await remembered(fast) == before
        r = await f.post(f"/v1/rooms/{room}/heartbeat", headers=bearer(fresh))
        assert r.json()["token"] == fresh  # and the fresh one is answered from memory
        assert await remembered(fast) == before + 1
