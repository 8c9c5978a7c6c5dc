"""Joins answered before the framework (gateway/fast_joins.py) answer what the route
answers: the same status, the same error body byte for byte, the same headers, the same
request id, metrics and effects. Each check asks a gateway with fast joins and one
without (same store) the same thing."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator

import httpx
import jwt

from shared.settings import Settings
from tests.helpers.api import ADMIN, METRICS, bearer, create_room, fresh_room_id
from tests.helpers.servers import GatewayServer

ROUTE_LABEL = 'route="/v1/rooms/{room}/enqueue"'


@contextlib.asynccontextmanager
async def two_ways(
    settings: Settings,
) -> AsyncIterator[tuple[GatewayServer, httpx.AsyncClient, httpx.AsyncClient]]:
    """A gateway answering joins before the framework and one answering them through it,
    with a client of each."""
    async with (
        GatewayServer(settings) as fast,
        GatewayServer(settings.with_changes(fast_joins=False)) as full,
        httpx.AsyncClient(base_url=fast.url) as f,
        httpx.AsyncClient(base_url=full.url) as s,
    ):
        yield fast, f, s


def shape(r: httpx.Response) -> tuple[int, str, set[str]]:
    """What two answers of a join share although they are two places: status, type, keys."""
    return r.status_code, r.headers["content-type"], set(r.json())


async def joins(fast: GatewayServer) -> int:
    """Joins counted in the fast gateway's metrics, whichever way they were answered."""
    async with httpx.AsyncClient(base_url=fast.url) as c:
        text = (await c.get("/metrics", headers=METRICS)).text
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("waitroom_http_requests_total{") and ROUTE_LABEL in line
    )


BAD_BODIES: list[tuple[bytes, dict[str, str]]] = [
    (b"{", {}),
    (b"null", {}),
    (b"[]", {}),
    (b'{"size": "2"}', {}),
    (b'{"size": 2.5}', {}),
    (b'{"size": 0}', {}),
    (b'{"nope": 1}', {}),
    (b'{"lane": "no such lane!"}', {}),
    (b'{"metadata": {"x": "' + b"y" * 3000 + b'"}}', {}),
    (b'{"size": 1, "size": "x"}', {}),
    (b"{}", {"Idempotency-Key": "short"}),
    (b'{"invite": "forged"}', {}),
]


async def test_every_refusal_equals_the_routes(settings: Settings) -> None:
    async with two_ways(settings) as (fast, f, s):
        room = fresh_room_id("fj")
        await create_room(f, room, status="paused", max_party_size=3)
        before = await joins(fast)
        for body, headers in BAD_BODIES:
            url = f"/v1/rooms/{room}/enqueue"
            mine = await f.post(url, content=body, headers=headers)
            theirs = await s.post(url, content=body, headers=headers)
            assert mine.status_code == theirs.status_code, body
            assert 400 <= mine.status_code < 500, (body, mine.text)
            assert mine.content == theirs.content, body
            assert mine.headers["content-type"] == theirs.headers["content-type"]
            assert re.fullmatch(r"[0-9a-f]{32}", mine.headers["x-request-id"])
        # a room that does not exist, one that is closed, a full one (with Retry-After),
        # ids that name no room
        await create_room(f, closed := fresh_room_id("fj"), closes_at="2020-01-01T00:00:00Z")
        await create_room(f, full := fresh_room_id("fj"), status="paused", max_queue_size=1)
        assert (await f.post(f"/v1/rooms/{full}/enqueue")).status_code == 201
        for url in (
            f"/v1/rooms/{fresh_room_id('none')}/enqueue",
            f"/v1/rooms/{closed}/enqueue",
            f"/v1/rooms/{full}/enqueue",
            "/v1/rooms/not%20a%20room/enqueue",
            f"/v1/rooms/{room}%0A/enqueue",
        ):
            mine, theirs = await f.post(url), await s.post(url)
            assert (mine.status_code, mine.content) == (theirs.status_code, theirs.content), url
            assert mine.headers.get("retry-after") == theirs.headers.get("retry-after"), url
            assert mine.status_code in (400, 404, 409)
        assert await joins(fast) - before == len(BAD_BODIES) + 6  # counted alike, either way
        assert fast.app.state.fast_joins.answered == len(BAD_BODIES) + 4  # not the bad ids


async def test_a_join_and_its_retries_equal_the_routes(settings: Settings) -> None:
    async with two_ways(settings) as (_, f, s):
        room = fresh_room_id("fj")
        await create_room(f, room, status="paused")
        url = f"/v1/rooms/{room}/enqueue"
        for body in (b"", b"{}", b'{"size": 2.0, "metadata": {"n": 1}}'):
            mine, theirs = await f.post(url, content=body), await s.post(url, content=body)
            assert shape(mine) == shape(theirs) == (201, "application/json", shape(mine)[2])
            assert mine.json()["state"] == theirs.json()["state"] == "waiting"
            assert mine.json()["position"] == theirs.json()["position"] - 1
        # a request id a proxy sent is kept
        r = await f.post(url, headers={"X-Request-ID": "proxy-id-1"})
        assert r.headers["x-request-id"] == "proxy-id-1"
        # an Idempotency-Key lands on one place, whichever gateway the retry reaches
        key = {"Idempotency-Key": "retry-key-0001"}
        first = await f.post(url, headers=key)
        again, elsewhere = await f.post(url, headers=key), await s.post(url, headers=key)
        assert (first.status_code, again.status_code, elsewhere.status_code) == (201, 200, 200)
        assert first.json()["position_id"] == again.json()["position_id"]
        assert again.json() == {**elsewhere.json(), "token": again.json()["token"]}
        # a bearer of a live place gets that place back (200), on either gateway
        token = first.json()["token"]
        mine, theirs = (
            await f.post(url, headers=bearer(token)),
            await s.post(url, headers=bearer(token)),
        )
        assert mine.status_code == theirs.status_code == 200
        assert mine.json() == theirs.json()
        # only the first Authorization header counts, whatever its scheme
        both = [("Authorization", "Basic dXNlcjpwdw=="), ("Authorization", f"Bearer {token}")]
        mine, theirs = await f.post(url, headers=both), await s.post(url, headers=both)
        assert mine.status_code == theirs.status_code == 201
        # the body is decoded as strictly as the route does: 10.0 is 10, and it is kept
        r = await f.post(url, json={"size": 2.0})
        assert r.status_code == 201
        claims = jwt.decode(r.json()["token"], options={"verify_signature": False})
        assert claims["size"] == 2


async def test_a_body_too_large_is_refused_before_anything_is_written(settings: Settings) -> None:
    small = settings.with_changes(max_body_bytes=256)
    async with two_ways(small) as (_, f, s):
        room = fresh_room_id("fj")
        await create_room(f, room, status="paused")
        body = b'{"metadata": {"x": "' + b"y" * 400 + b'"}}'
        url = f"/v1/rooms/{room}/enqueue"
        mine, theirs = await f.post(url, content=body), await s.post(url, content=body)
        assert mine.status_code == theirs.status_code == 413
        assert mine.content == theirs.content
        assert mine.headers["connection"] == theirs.headers["connection"] == "close"
        r = await f.get(f"/v1/admin/rooms/{room}", headers=ADMIN)
        assert r.json()["figures"]["waiting"] == 0


async def test_many_joins_at_once_each_get_their_own_place(settings: Settings) -> None:
    async with GatewayServer(settings) as fast, httpx.AsyncClient(base_url=fast.url) as f:
        room = fresh_room_id("fj")
        await create_room(f, room, status="paused")
        url = f"/v1/rooms/{room}/enqueue"
        answers = await asyncio.gather(*(f.post(url) for _ in range(60)))
        assert {r.status_code for r in answers} == {201}
        assert sorted(r.json()["position"] for r in answers) == list(range(1, 61))
        assert len({r.json()["position_id"] for r in answers}) == 60
        assert fast.app.state.fast_joins.answered == 60
