"""The line under attack from people who read our JavaScript: a claimed admission's queue
token reused as a key, an Idempotency-Key replayed from another client, event streams
opened by the dozen or left open after the place ended, address limits dodged with
IPv6 and made-up X-Forwarded-For chains."""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import time
from collections.abc import AsyncIterator
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import msgspec
import pytest
from redis.asyncio import Redis

from gateway.operators import admin_keys
from gateway.proof_of_work import leading_zero_bits, solution_hash, solve
from gateway.slow_clients import HeaderDeadlineProtocol
from shared import keys
from shared.settings import RateLimits, Settings
from tests.helpers.api import ADMIN, RoomFactory, assert_error, bearer, create_room
from tests.helpers.servers import GatewayServer, in_process_workers
from tests.helpers.sse import SseClient
from tests.helpers.wait import wait_until


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
    assert_error(again, 409, "already_claimed")
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
        assert_error(r, 409, "too_many_positions")
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
        assert_error(r, 400, "invalid_forwarded_for")
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


async def test_a_forwarded_line_of_the_clients_own_is_not_believed(
    behind_proxy: httpx.AsyncClient,
) -> None:
    """A proxy that adds an X-Forwarded-For line of its own (HAProxy's ``option
    forwardfor``) leaves the client's line first: the lines are one list, read from the
    right, so a client that makes up a new first line each time is still one client (the
    first line alone was believed before)."""
    c = behind_proxy
    room = "t-xff2-" + str(id(c))[-6:]
    await create_room(c, room, max_positions_per_ip=1)

    def through_proxy(made_up: str) -> list[tuple[str, str]]:
        return [("X-Forwarded-For", made_up), ("X-Forwarded-For", "203.0.113.5")]

    first = await c.post(f"/v1/rooms/{room}/enqueue", headers=through_proxy("198.51.100.1"))
    assert first.status_code == 201
    for made_up in ("198.51.100.2", "198.51.100.3, 198.51.100.4"):
        r = await c.post(f"/v1/rooms/{room}/enqueue", headers=through_proxy(made_up))
        assert_error(r, 409, "too_many_positions")
    other = await c.post(f"/v1/rooms/{room}/enqueue", headers={"X-Forwarded-For": "203.0.113.6"})
    assert other.status_code == 201


# --- places that ended, rooms made again, places put back --------------------------------


@pytest.mark.slow
async def test_a_left_place_stays_left_however_long_it_heartbeats(settings: Settings) -> None:
    short = settings.with_changes(queue_token_ttl=30, ended_retention=1)
    async with GatewayServer(short) as gw, httpx.AsyncClient(base_url=gw.url) as c:
        room = "t-left-" + short.instance[-6:]
        await create_room(c, room, status="paused")
        me = (await c.post(f"/v1/rooms/{room}/enqueue")).json()
        auth = bearer(me["token"])
        assert (await c.post(f"/v1/rooms/{room}/leave", headers=auth)).json()["state"] == "left"
        async with in_process_workers(short):  # the purge runs, as in production
            for _ in range(36):  # past the token's life
                r = await c.post(f"/v1/rooms/{room}/heartbeat", headers=auth)
                if r.status_code == 401:
                    break
                body = r.json()
                assert body["state"] == "left", body  # never back in the line
                assert "token" not in body or body["token"] == me["token"]  # never re-signed
                await asyncio.sleep(1)
        assert_error(r, 401, "token_expired")
        figures = (await c.get(f"/v1/admin/rooms/{room}", headers=ADMIN)).json()["figures"]
        assert figures["waiting"] == 0


async def test_a_token_of_a_room_deleted_and_made_again_is_refused(
    client: httpx.AsyncClient,
) -> None:
    room = "t-again-" + str(id(client))[-6:]
    await create_room(client, room, status="paused")
    old = (await client.post(f"/v1/rooms/{room}/enqueue")).json()
    assert (await client.delete(f"/v1/admin/rooms/{room}", headers=ADMIN)).status_code == 200
    await create_room(client, room, status="paused")
    newcomer = (await client.post(f"/v1/rooms/{room}/enqueue")).json()
    assert newcomer["position"] == 1
    for method, path in (("GET", "status"), ("POST", "heartbeat"), ("GET", "events")):
        r = await client.request(method, f"/v1/rooms/{room}/{path}", headers=bearer(old["token"]))
        assert_error(r, 403, "wrong_room")
    r = await client.post(f"/v1/rooms/{room}/enqueue", headers=bearer(old["token"]))
    assert r.status_code == 201  # a new place at the end, not the old one at the front
    assert r.json()["position"] == 2
    assert r.json()["position_id"] != old["position_id"]


async def test_a_place_put_back_from_its_token_counts_against_its_address(
    behind_proxy: httpx.AsyncClient, redis: Redis
) -> None:
    c = behind_proxy
    room = "t-restore-" + str(id(c))[-6:]
    await create_room(c, room, max_positions_per_ip=1, status="paused")
    home = {"X-Forwarded-For": "198.51.100.20"}
    first = (await c.post(f"/v1/rooms/{room}/enqueue", headers=home)).json()
    await forget_place(redis, room, first["position_id"])  # lost with the data store
    second = await c.post(f"/v1/rooms/{room}/enqueue", headers=home)
    assert second.status_code == 201  # the address holds no place now
    r = await c.get(f"/v1/rooms/{room}/status", headers={**home, **bearer(first["token"])})
    assert_error(r, 409, "too_many_positions")
    elsewhere = {"X-Forwarded-For": "203.0.113.20"}
    r = await c.get(f"/v1/rooms/{room}/status", headers={**elsewhere, **bearer(first["token"])})
    assert r.status_code == 200
    assert r.json()["position"] == 1  # put back at its arrival, ahead of the second


async def forget_place(redis: Redis, room: str, position_id: str) -> None:
    """What a data store that lost a place looks like: no trace of it (an outbox that
    never reached the stream, replayed back)."""
    k = keys.RoomKeys(room)
    person = msgspec.json.decode(str(await redis.hget(k.people, position_id)))
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hdel(k.people, position_id)
        pipe.zrem(k.line, position_id)
        pipe.zrem(k.seen, position_id)
        if person.get("ip"):  # stored only when the room counts addresses
            pipe.hincrby(k.ips, person["ip"], -1)
        await pipe.execute()


# --- one party cannot hold the room ------------------------------------------------------


async def test_a_party_larger_than_max_party_size_is_refused(
    client: httpx.AsyncClient, make_room: RoomFactory
) -> None:
    room = await make_room(max_active=20, max_party_size=4, status="paused")
    assert (await client.post(f"/v1/rooms/{room}/enqueue", json={"size": 4})).status_code == 201
    r = await client.post(f"/v1/rooms/{room}/enqueue", json={"size": 5})
    assert_error(r, 400, "party_too_large")
    # the operator cannot allow more than the room holds
    r = await client.put(f"/v1/admin/rooms/{room}", json={"max_party_size": 21}, headers=ADMIN)
    assert r.status_code == 400
    # shrinking the room brings the party size down with it
    r = await client.put(f"/v1/admin/rooms/{room}", json={"max_active": 3}, headers=ADMIN)
    assert r.json()["config"]["max_party_size"] == 3


@pytest.mark.slow
async def test_a_visit_ends_at_max_session_whatever_its_heartbeats_say(
    client: httpx.AsyncClient, make_room: RoomFactory, settings: Settings
) -> None:
    room = await make_room(release_rate=1000, max_active=5, session_ttl=600, max_session=3)
    me = await admitted(client, settings, room)
    go = await client.get(f"/rooms/{room}/go", params={"token": me["token"]})
    access = parse_qs(urlsplit(go.headers["location"]).query)["waitroom_token"][0]
    async with in_process_workers(settings):
        states = []
        for _ in range(16):
            r = await client.post("/v1/session/heartbeat", headers=bearer(access))
            states.append(r.json().get("state") or r.json()["error"]["code"])
            if r.status_code != 200:
                break
            # + 2: the Date header counts whole seconds, and the server caches it
            assert r.json()["session_deadline"] <= go_time(go) + 3 + 2
            access = r.json()["access_token"]  # the freshest, as a site would keep it
            await asyncio.sleep(0.5)

        async def units_back() -> bool:
            r = await client.get(f"/v1/admin/rooms/{room}", headers=ADMIN)
            return bool(r.json()["figures"]["used_units"] == 0)

        await wait_until(units_back)
    assert states[0] == "active"
    # the heartbeats did not keep it alive: its access ran out with it, or it was ended
    assert states[-1] in ("token_expired", "session_ended"), states
    assert len(states) <= 10


def go_time(go: httpx.Response) -> float:
    return (
        time.time()
        if "date" not in go.headers
        else parsedate_to_datetime(go.headers["date"]).timestamp()
    )


# --- proof of work -----------------------------------------------------------------------


async def test_a_room_that_asks_for_work_takes_only_fresh_right_solutions(
    client: httpx.AsyncClient, make_room: RoomFactory
) -> None:
    room = await make_room(pow_difficulty=8, status="paused")
    url = f"/v1/rooms/{room}/enqueue"

    async def challenge() -> dict[str, Any]:
        r = await client.get(f"/v1/rooms/{room}/challenge")
        assert r.status_code == 200
        return dict(r.json())

    r = await client.post(url)
    assert_error(r, 400, "pow_required")
    c = await challenge()
    assert c["difficulty"] == 8
    wrong = next(
        str(n)
        for n in range(100_000)
        if leading_zero_bits(solution_hash(c["challenge"], str(n))) < 8
    )
    r = await client.post(url, json={"pow": {"challenge": c["challenge"], "nonce": wrong}})
    assert_error(r, 400, "pow_invalid")
    nonce = solve(c["challenge"], 8)
    solution = {"pow": {"challenge": c["challenge"], "nonce": nonce}}
    r = await client.post(url, json=solution)
    assert r.status_code == 201, r.text
    r = await client.post(url, json=solution)  # the same solution again
    assert_error(r, 409, "pow_reused")
    # made harder live: a challenge solved at the old difficulty no longer does
    easy = await challenge()
    await client.put(f"/v1/admin/rooms/{room}", json={"pow_difficulty": 12}, headers=ADMIN)
    r = await client.post(
        url, json={"pow": {"challenge": easy["challenge"], "nonce": solve(easy["challenge"], 8)}}
    )
    assert_error(r, 400, "pow_invalid")
    hard = await challenge()
    assert hard["difficulty"] == 12
    r = await client.post(
        url, json={"pow": {"challenge": hard["challenge"], "nonce": solve(hard["challenge"], 12)}}
    )
    assert r.status_code == 201, r.text


# --- the operators' key --------------------------------------------------------------------


async def test_admin_key_guessing_is_throttled_and_several_keys_work(settings: Settings) -> None:
    old, new = "old-admin-key-" + "o" * 20, "new-admin-key-" + "n" * 20
    guarded = settings.with_changes(
        admin_key=f"{old}, {new}",
        rate_limits=RateLimits(enabled=True, admin_failures="5/minute"),
        instance="admin-" + settings.instance,
    )
    async with GatewayServer(guarded) as gw, httpx.AsyncClient(base_url=gw.url) as c:
        for key in (old, new):  # rotation: both in force at once
            r = await c.get("/v1/admin/rooms", headers=bearer(key))
            assert r.status_code == 200, r.text
        codes = []
        for i in range(8):
            r = await c.get("/v1/admin/rooms", headers=bearer(f"guess-{i}-" + "g" * 20))
            codes.append(r.status_code)
        assert codes[:5] == [401] * 5
        assert codes[5:] == [429] * 3, codes
        r = await c.get("/v1/admin/rooms", headers=bearer(new))
        assert r.status_code == 429  # locked out whatever it tries now
        assert int(r.headers["retry-after"]) > 0


def test_short_admin_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 24"):
        admin_keys("long-enough-admin-key-0123456789, short")
    assert admin_keys("") == ()


# --- slow clients and forged hosts -------------------------------------------------------


async def _dribble_a_head(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    """A head sent a byte at a time, never finished (a slowloris); what the server says."""
    for _ in range(20):  # 10 s of dribbling, if the server let it
        try:
            writer.write(b"X")
            await writer.drain()
        except ConnectionError:
            return b""
        try:
            return await asyncio.wait_for(reader.read(200), timeout=0.5)
        except TimeoutError:
            continue
    return b""


async def _one_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A whole request on a kept-alive connection, its answer read to the end."""
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
    assert head.startswith(b"HTTP/1.1 200"), head
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    await reader.readexactly(length)


@pytest.mark.parametrize("path", ["/v1/session/verify", "/v1/rooms/any-room/enqueue"])
async def test_headers_and_bodies_that_dribble_in_are_cut_off(
    settings: Settings, path: str
) -> None:
    """Through the framework, and on the way a join takes before it (fast_joins.py)."""
    strict = settings.with_changes(header_timeout=1.0, body_timeout=1.0)
    async with GatewayServer(strict) as gw:
        # a slowloris: one header byte at a time, never finishing the head
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.settings.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        answer = await _dribble_a_head(reader, writer)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        writer.close()
        # a body promised and sent a byte at a time
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.settings.port)
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n".encode()
            + b"Content-Length: 200\r\n\r\n{"
        )
        answer = b""
        for _ in range(20):
            writer.write(b" ")
            await writer.drain()
            try:
                answer = await asyncio.wait_for(reader.read(400), timeout=0.5)
            except TimeoutError:
                continue
            break
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert b"body_timeout" in answer
        writer.close()


async def test_a_head_that_dribbles_in_after_a_first_request_is_cut_off(
    settings: Settings,
) -> None:
    """The deadline holds for every request of a kept-alive connection, not only its first
    (the timer is set only when a head is still incomplete after a read)."""
    strict = settings.with_changes(header_timeout=1.0)
    async with GatewayServer(strict) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.settings.port)
        await _one_request(reader, writer)
        writer.write(b"GET /healthz HTTP/1.1\r\n")
        answer = await _dribble_a_head(reader, writer)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        writer.close()


async def test_blank_lines_after_a_response_do_not_hold_a_connection_open(
    settings: Settings,
) -> None:
    """Bytes that begin no request (a blank line) stop uvicorn's keep-alive wait; the head
    deadline then closes the connection, as for any head that does not come."""
    strict = settings.with_changes(header_timeout=1.0)
    async with GatewayServer(strict) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.settings.port)
        try:
            await _one_request(reader, writer)
            writer.write(b"\r\n")
            answer = await asyncio.wait_for(reader.read(200), timeout=15)
            assert answer.startswith(b"HTTP/1.1 408"), answer
        finally:
            writer.close()


async def _answer_to(
    writer: asyncio.StreamWriter, reader: asyncio.StreamReader, head: bytes
) -> bytes:
    """Send ``head`` in 64 KiB writes (stopping if the server closes); all it answers."""
    for at in range(0, len(head), 65536):
        try:
            writer.write(head[at : at + 65536])
            await writer.drain()
        except ConnectionError:
            break
    return await asyncio.wait_for(reader.read(), timeout=10)


@pytest.mark.parametrize(
    "fields",
    [
        b"X-Big: " + b"a" * 2_000_000 + b"\r\n",  # one field of 2 MB
        b"".join(b"X-%d: %s\r\n" % (i, b"b" * 40) for i in range(15_000)),  # 15,000 small
    ],
    ids=["one-huge-field", "many-fields"],
)
async def test_a_head_past_64_kib_after_its_first_read_is_refused_and_closed(
    gateway: GatewayServer, fields: bytes
) -> None:
    """uvicorn's httptools protocol kept a head of any size (100 MB held in a probe) for as
    long as the header deadline let it come."""
    port = gateway.settings.port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await _one_request(reader, writer)  # also on a connection kept alive
        answer = await _answer_to(writer, reader, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + fields)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431"), answer[:200]
    assert b"connection: close" in head
    assert msgspec.json.decode(body)["error"]["code"] == "head_too_large"
    # a browser's large head (48 KiB of cookies) is still served, and so is the next client
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        cookies = b"Cookie: " + b"c" * 48 * 1024 + b"\r\n"
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + cookies + b"\r\n")
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    finally:
        writer.close()


async def test_pipelined_requests_before_an_unfinished_head_do_not_count_as_head(
    gateway: GatewayServer,
) -> None:
    """Six joins of 15 KB bodies and the start of a seventh request's head come in one
    read; only the head's own later reads count against the cap."""
    body = b"{}" + b" " * 15_000
    join = (
        b"POST /v1/rooms/no-such-room/enqueue HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.settings.port)
    try:
        writer.write(join * 6 + b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.write(b"\r\n")
        statuses = []
        for _ in range(7):
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            statuses.append(int(head.split()[1]))
            await reader.readexactly(
                int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            )
    finally:
        writer.close()
    assert statuses == [404] * 6 + [200]


async def test_trailer_fields_after_a_chunked_body_are_not_kept(
    gateway: GatewayServer, client: httpx.AsyncClient, make_room: RoomFactory
) -> None:
    """Trailers are parsed after the body (no head deadline, no head cap holds them) and
    nothing reads them: added to the request's header list, which a stream keeps for its
    whole life, they grew it without bound."""
    room = await make_room(status="paused")
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.settings.port)
    try:
        writer.write(
            f"POST /v1/rooms/{room}/enqueue HTTP/1.1\r\nHost: x\r\n".encode()
            + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"2\r\n{}\r\n0\r\nX-Trailer: "
            + b"t" * 1000
            + b"\r\n\r\n"
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
        assert head.startswith(b"HTTP/1.1 201"), head
        await reader.readexactly(int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0]))
        # (the request came in one write: parsed to its end, trailers too, before the answer)
        kept = [
            name
            for p in gc.get_objects()
            if isinstance(p, HeaderDeadlineProtocol) and p.headers
            for name, _ in p.headers
        ]
        assert b"transfer-encoding" in kept  # (the request's own head is there to look at)
        assert b"x-trailer" not in kept
    finally:
        writer.close()


async def test_a_chunked_request_whose_trailer_goes_on_closes_its_connection(
    settings: Settings,
) -> None:
    """A trailer field comes after the body (no head deadline, no head cap) and the parser
    holds it whole until it ends: one that went on grew the connection's memory for as
    long as the client liked (a stream's request has no body deadline either)."""
    strict = settings.with_changes(max_body_bytes=1024, body_timeout=60.0)
    async with GatewayServer(strict) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.settings.port)
        closed = False
        try:
            writer.write(
                b"POST /v1/rooms/no-such-room/enqueue HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"2\r\n{}\r\n0\r\nX-Trailer: "
            )
            for _ in range(100):  # 800 KiB of one trailer field, if the server let it come
                writer.write(b"t" * 8192)
                await writer.drain()
                await asyncio.sleep(0.01)
            answer = await asyncio.wait_for(reader.read(), timeout=10)
            closed = answer == b""
        except ConnectionError:
            closed = True
        finally:
            writer.close()
        assert closed


async def test_links_never_name_a_host_the_operator_did_not_allow(
    client: httpx.AsyncClient, make_room: RoomFactory, settings: Settings
) -> None:
    room = await make_room(release_rate=1000)
    me = await admitted(client, settings, room)
    spoofed = await client.get(
        f"/v1/rooms/{room}/status", headers={**bearer(me["token"]), "Host": "evil.example"}
    )
    assert spoofed.json()["redirect_url"].startswith(f"/rooms/{room}/go?")  # relative
    mine = await client.get(f"/v1/rooms/{room}/status", headers=bearer(me["token"]))
    assert mine.json()["redirect_url"].startswith(f"{client.base_url}/rooms/{room}/go?")
