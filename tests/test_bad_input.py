"""Bad input: every endpoint answers the documented JSON error with a stable code and the
right status, and a refused request changes nothing (no partial writes, no events)."""

from __future__ import annotations

import ipaddress
import json
import secrets
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from redis.asyncio import Redis

from shared import keys
from shared.settings import RateLimits, Settings
from tests.helpers.api import (
    ADMIN,
    ADMIN_KEY,
    RoomFactory,
    assert_error,
    assert_retry_after,
    bearer,
    fresh_room_id,
)
from tests.helpers.servers import GatewayServer
from tests.helpers.wait import wait_until

JSON = {"Content-Type": "application/json"}


def dumps(body: Any) -> bytes:
    """A JSON body as sent (``json=None`` in httpx would send no body at all)."""
    return json.dumps(body).encode()


async def room_state(client: httpx.AsyncClient, redis: Redis, room: str) -> dict[str, Any]:
    """Everything a refused request must leave alone: the admin view (config, figures,
    outbox, totals) and the room's raw state in the data store."""
    r = await client.get(f"/v1/admin/rooms/{room}", headers=ADMIN)
    assert r.status_code == 200, r.text
    k = keys.RoomKeys(room)
    return {
        "admin": r.json(),
        "cfg": await redis.hgetall(k.cfg),
        "stats": await redis.hgetall(k.stats),
        "people": await redis.hgetall(k.people),
        "ips": await redis.hgetall(k.ips),
        "line": await redis.zrange(k.line, 0, -1, withscores=True),
        "admitted": await redis.zrange(k.admitted, 0, -1),
        "active": await redis.zrange(k.active, 0, -1),
        "outbox": await redis.xlen(k.outbox),
        "listed": room in await listed_rooms(client),
    }


async def listed_rooms(client: httpx.AsyncClient) -> set[str]:
    r = await client.get("/v1/admin/rooms", headers=ADMIN)
    assert r.status_code == 200, r.text
    return {str(item["room"]) for item in r.json()["rooms"]}


async def assert_no_room(client: httpx.AsyncClient, redis: Redis, room: str) -> None:
    """The room does not exist anywhere: admin GET 404, not listed, no keys written."""
    assert_error(await client.get(f"/v1/admin/rooms/{room}", headers=ADMIN), 404, "room_not_found")
    assert room not in await listed_rooms(client)
    assert await redis.exists(*keys.RoomKeys(room).all()) == 0
    assert not await redis.sismember(keys.ROOMS_SET, room)
    assert not await redis.sismember(keys.DRAINING_SET, room)


async def join(client: httpx.AsyncClient, room: str, **body: Any) -> dict[str, Any]:
    r = await client.post(f"/v1/rooms/{room}/enqueue", json=body)
    assert r.status_code == 201, r.text
    joined: dict[str, Any] = r.json()
    return joined


# --- enqueue ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", [b"{", b'{"size": 1', b"not json", b"{'size': 1}", b'{"size": 1,}', b"\xff\xfe"]
)
async def test_enqueue_malformed_json_is_400_and_changes_nothing(
    client: httpx.AsyncClient, make_room: RoomFactory, redis: Redis, raw: bytes
) -> None:
    room = await make_room(status="paused")
    await join(client, room)
    before = await room_state(client, redis, room)
    r = await client.post(f"/v1/rooms/{room}/enqueue", content=raw, headers=JSON)
    assert_error(r, 400, "malformed_json")
    assert await room_state(client, redis, room) == before


ENQUEUE_INVALID: list[Any] = [
    {"size": "x"},
    {"size": 0},
    {"size": -1},
    {"size": 5000},
    {"size": 1.5},
    {"size": None},
    {"size": True},
    {"metadata": "not an object"},
    {"metadata": []},
    {"metadata": 3},
    {"metadata": {"note": "x" * 3000}},  # over the metadata limit, under the body limit
    {"colour": "red"},
    {"size": 1, "priority": 9},  # priority is not the caller's to choose
    [],
    [1],
    "x",
    5,
    None,
]


async def test_enqueue_invalid_bodies_are_400_and_change_nothing(
    client: httpx.AsyncClient, make_room: RoomFactory, redis: Redis
) -> None:
    room = await make_room(status="paused")
    await join(client, room)
    before = await room_state(client, redis, room)
    for body in ENQUEUE_INVALID:
        r = await client.post(f"/v1/rooms/{room}/enqueue", content=dumps(body), headers=JSON)
        assert r.status_code == 400, (body, r.text)
        assert_error(r, 400, "invalid_body")
        assert await room_state(client, redis, room) == before, body
    # the same room still takes a well-formed join
    assert (await join(client, room, size=2, metadata={"k": "v"}))["position"] == 2


async def test_made_up_proof_of_work_text_is_400_and_changes_nothing(
    client: httpx.AsyncClient, make_room: RoomFactory, redis: Redis
) -> None:
    """A solution whose challenge holds what ours never do (the fuzzer's find: a non-ASCII
    signature made the check raise, and the join answered 500)."""
    room = await make_room(status="paused", pow_difficulty=8)
    before = await room_state(client, redis, room)
    for challenge in (".\u00c3cG", "a.b\u00e9", "\u00e9.\u00e9"):
        body = {"pow": {"challenge": challenge, "nonce": "1"}}
        r = await client.post(f"/v1/rooms/{room}/enqueue", content=dumps(body), headers=JSON)
        assert_error(r, 400, "pow_invalid")
        assert await room_state(client, redis, room) == before, challenge


async def test_enqueue_unknown_room_is_404_and_creates_nothing(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    for room in (fresh_room_id(), "a.b", "x" * 65, fresh_room_id() + "\n"):
        valid = bool(keys.ROOM_ID_PATTERN.fullmatch(room))  # "$" passes a final newline
        for body in (None, {"size": 1}):
            r = await client.post(f"/v1/rooms/{quote(room)}/enqueue", json=body)
            # an id that can name no room has one answer everywhere: 400 invalid_room_id
            assert_error(r, 404 if valid else 400, "room_not_found" if valid else "invalid_room_id")
        if valid:
            await assert_no_room(client, redis, room)
        else:
            assert room not in await listed_rooms(client)


async def test_party_larger_than_max_active_is_400_and_changes_nothing(
    client: httpx.AsyncClient, make_room: RoomFactory, redis: Redis
) -> None:
    room = await make_room(status="paused", max_active=2)
    await join(client, room)
    before = await room_state(client, redis, room)
    r = await client.post(f"/v1/rooms/{room}/enqueue", json={"size": 3})
    assert_error(r, 400, "party_too_large")
    assert await room_state(client, redis, room) == before
    # a party that fits exactly is fine
    assert (await join(client, room, size=2))["position"] == 2


async def test_max_positions_per_ip_is_409_and_changes_nothing(
    client: httpx.AsyncClient, make_room: RoomFactory, redis: Redis
) -> None:
    room = await make_room(status="paused", max_positions_per_ip=2)
    await join(client, room)
    await join(client, room)
    before = await room_state(client, redis, room)
    assert before["admin"]["figures"]["waiting"] == 2
    for _ in range(2):
        r = await client.post(f"/v1/rooms/{room}/enqueue")
        assert_error(r, 409, "too_many_positions")
    assert await room_state(client, redis, room) == before


async def test_full_line_is_409_queue_full_with_retry_after_and_changes_nothing(
    client: httpx.AsyncClient, make_room: RoomFactory, redis: Redis
) -> None:
    room = await make_room(status="paused", max_queue_size=2)
    await join(client, room)
    await join(client, room)
    before = await room_state(client, redis, room)
    r = await client.post(f"/v1/rooms/{room}/enqueue", json={"size": 1})
    assert_error(r, 409, "queue_full")
    assert_retry_after(r)
    assert await room_state(client, redis, room) == before
    assert before["admin"]["figures"]["waiting"] == 2


async def test_room_in_maintenance_is_503_with_retry_after_and_changes_nothing(
    client: httpx.AsyncClient, make_room: RoomFactory, redis: Redis
) -> None:
    room = await make_room(status="paused")
    await join(client, room)
    r = await client.put(f"/v1/admin/rooms/{room}", json={"status": "maintenance"}, headers=ADMIN)
    assert r.status_code == 200, r.text
    before = await room_state(client, redis, room)
    r = await client.post(f"/v1/rooms/{room}/enqueue")
    assert_error(r, 503, "room_maintenance")
    assert_retry_after(r)
    assert await room_state(client, redis, room) == before

    fresh = await make_room(status="maintenance")
    r = await client.post(f"/v1/rooms/{fresh}/enqueue", json={"size": 1})
    assert_error(r, 503, "room_maintenance")
    assert_retry_after(r)
    figures = (await room_state(client, redis, fresh))["admin"]["figures"]
    assert figures["waiting"] == 0
    assert figures["enqueued_total"] == 0


async def test_enqueue_body_too_large_is_413_and_changes_nothing(
    client: httpx.AsyncClient, make_room: RoomFactory, redis: Redis, settings: Settings
) -> None:
    room = await make_room(status="paused")
    await join(client, room)
    before = await room_state(client, redis, room)
    big = b'{"metadata": {"k": "' + b"x" * settings.max_body_bytes + b'"}}'
    assert len(big) > settings.max_body_bytes
    r = await client.post(f"/v1/rooms/{room}/enqueue", content=big, headers=JSON)
    assert_error(r, 413, "body_too_large")

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit still holds
        for i in range(0, len(big), 1024):
            yield big[i : i + 1024]

    r = await client.post(f"/v1/rooms/{room}/enqueue", content=chunks(), headers=JSON)
    assert "content-length" not in r.request.headers
    assert_error(r, 413, "body_too_large")
    assert await room_state(client, redis, room) == before


# --- admin PUT -------------------------------------------------------------------------


async def test_admin_put_malformed_json_is_400_and_changes_nothing(
    client: httpx.AsyncClient, make_room: RoomFactory, redis: Redis
) -> None:
    room = await make_room(status="paused")
    await join(client, room)
    before = await room_state(client, redis, room)
    fresh = fresh_room_id()
    for raw in (b"{", b'{"max_active": 5', b"max_active=5", b'{"status": paused}'):
        for target in (room, fresh):
            r = await client.put(
                f"/v1/admin/rooms/{target}", content=raw, headers={**ADMIN, **JSON}
            )
            assert_error(r, 400, "malformed_json")
    assert await room_state(client, redis, room) == before
    await assert_no_room(client, redis, fresh)


ADMIN_INVALID: list[Any] = [
    {"max_active": -1},
    {"max_active": 0},
    {"max_active": "10"},
    {"max_active": 2.5},
    {"release_rate": 0},
    {"release_rate": -3},
    {"release_rate": "fast"},
    {"status": "nope"},
    {"status": None},
    {"heartbeat_timeout": 10},  # equal to the default heartbeat_interval
    {"heartbeat_interval": 60, "heartbeat_timeout": 30},
    {"heartbeat_interval": 0},
    {"session_ttl": 0},
    {"claim_window": -1},
    {"max_queue_size": -1},
    {"max_positions_per_ip": -1},
    {"target_url": "ftp://x"},
    {"target_url": "ftp://example.com/files"},
    {"target_url": "not a url at all"},
    {"target_url": "/relative/path"},
    {"target_url": 42},
    {"target_url": "https://shop.example/\r\nSet-Cookie: planted=1"},  # header splitting
    {"target_url": "https://shop.example/a b"},
    {"target_url": "https://shop.example/checkout#x"},  # would swallow the token
    {"max_party_size": 1_000_000},
    {"max_session": 0},
    {"pow_difficulty": 33},
    {"colour": "red"},
    {"status": "paused", "colour": "red"},  # one bad field spoils the whole update
    {"max_active": 50, "release_rate": 0},
    [],
    "paused",
    None,
]


async def test_admin_put_invalid_bodies_are_400_and_change_nothing(
    client: httpx.AsyncClient, make_room: RoomFactory, redis: Redis
) -> None:
    room = await make_room(status="paused")
    await join(client, room)
    before = await room_state(client, redis, room)
    for body in ADMIN_INVALID:
        r = await client.put(
            f"/v1/admin/rooms/{room}", content=dumps(body), headers={**ADMIN, **JSON}
        )
        assert r.status_code == 400, (body, r.text)
        assert_error(r, 400, "invalid_body")
        assert await room_state(client, redis, room) == before, body
    r = await client.put(f"/v1/admin/rooms/{room}", content=b"", headers=ADMIN)
    assert_error(r, 400, "invalid_body")
    assert await room_state(client, redis, room) == before


NEW_ROOM_INVALID: list[Any] = [
    {},
    {"max_active": 5},
    {"status": "paused", "release_rate": 2},
    {"target_url": "ftp://example.com/files"},
    {"target_url": "http://shop.example", "heartbeat_interval": 30, "heartbeat_timeout": 5},
    {"target_url": "http://shop.example", "max_active": 0},
    {"target_url": "http://shop.example", "colour": "red"},
    [],
]


async def test_admin_put_rejected_creation_creates_no_room(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    for body in NEW_ROOM_INVALID:
        room = fresh_room_id()
        r = await client.put(
            f"/v1/admin/rooms/{room}", content=dumps(body), headers={**ADMIN, **JSON}
        )
        assert r.status_code == 400, (body, r.text)
        assert_error(r, 400, "invalid_body")
        await assert_no_room(client, redis, room)
    room = fresh_room_id()
    r = await client.put(f"/v1/admin/rooms/{room}", content=b"", headers=ADMIN)
    assert_error(r, 400, "invalid_body")
    await assert_no_room(client, redis, room)


async def test_admin_put_invalid_room_id_is_400_and_creates_nothing(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    body = {"target_url": "http://127.0.0.1:9/target"}
    for room in ("a.b", "x" * 65, "a*b", "a>b", "caf%C3%A9", "a%20b", "waitroom.x.>"):
        r = await client.put(f"/v1/admin/rooms/{room}", json=body, headers=ADMIN)
        assert r.status_code == 400, (room, r.text)
        assert_error(r, 400, "invalid_room_id")
        for method in ("GET", "DELETE"):  # the same answer on every route
            got = await client.request(method, f"/v1/admin/rooms/{room}", headers=ADMIN)
            assert_error(got, 400, "invalid_room_id")
    for room in ("a.b", "x" * 65, "a*b"):
        assert await redis.exists(*keys.RoomKeys(room).all()) == 0
    # an encoded slash does not even reach the route
    r = await client.put("/v1/admin/rooms/a%2Fb", json=body, headers=ADMIN)
    assert_error(r, 404, "not_found")
    listed = await listed_rooms(client)
    assert not {room for room in listed if not keys.ROOM_ID_PATTERN.fullmatch(room)}
    assert "x" * 64 not in listed  # 64 is the most allowed; no truncated twin appeared


async def test_admin_put_body_too_large_is_413_and_changes_nothing(
    client: httpx.AsyncClient, make_room: RoomFactory, redis: Redis, settings: Settings
) -> None:
    room = await make_room(status="paused")
    await join(client, room)
    before = await room_state(client, redis, room)
    big = b'{"status": "active", "title": "' + b"x" * settings.max_body_bytes + b'"}'
    r = await client.put(f"/v1/admin/rooms/{room}", content=big, headers={**ADMIN, **JSON})
    assert_error(r, 413, "body_too_large")
    assert await room_state(client, redis, room) == before
    fresh = fresh_room_id()
    big_new = b'{"target_url": "http://shop.example", "title": "' + b"x" * 20_000 + b'"}'
    r = await client.put(f"/v1/admin/rooms/{fresh}", content=big_new, headers={**ADMIN, **JSON})
    assert_error(r, 413, "body_too_large")
    await assert_no_room(client, redis, fresh)


# --- admin: unknown rooms and the admin key ---------------------------------------------


async def test_admin_get_and_delete_unknown_room_are_404(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    room = fresh_room_id()
    r = await client.get(f"/v1/admin/rooms/{room}", headers=ADMIN)
    assert_error(r, 404, "room_not_found")
    r = await client.delete(f"/v1/admin/rooms/{room}", headers=ADMIN)
    assert_error(r, 404, "room_not_found")
    await assert_no_room(client, redis, room)
    # a room deleted once is unknown from then on
    room = fresh_room_id()
    body = {"target_url": "http://127.0.0.1:9/target"}
    assert (
        await client.put(f"/v1/admin/rooms/{room}", json=body, headers=ADMIN)
    ).status_code == 201
    assert (await client.delete(f"/v1/admin/rooms/{room}", headers=ADMIN)).status_code == 200
    outbox = await redis.xlen(keys.RoomKeys(room).outbox)
    assert_error(
        await client.delete(f"/v1/admin/rooms/{room}", headers=ADMIN), 404, "room_not_found"
    )
    assert_error(await client.get(f"/v1/admin/rooms/{room}", headers=ADMIN), 404, "room_not_found")
    assert await redis.xlen(keys.RoomKeys(room).outbox) == outbox
    assert await redis.exists(keys.RoomKeys(room).cfg) == 0


BAD_ADMIN_HEADERS: list[dict[str, str]] = [
    {},
    {"Authorization": "Bearer wrong-key"},
    {"Authorization": f"Bearer {ADMIN_KEY}x"},
    {"Authorization": f"Bearer {ADMIN_KEY[:-1]}"},
    {"Authorization": "Bearer"},
    {"Authorization": f"Basic {ADMIN_KEY}"},
    {"Authorization": f"Token {ADMIN_KEY}"},
    {"Authorization": ADMIN_KEY},
    {"X-Admin-Key": ADMIN_KEY},
]


@pytest.mark.parametrize("endpoint", ["put", "get", "list", "delete"])
async def test_admin_endpoints_refuse_missing_or_wrong_key(
    client: httpx.AsyncClient, make_room: RoomFactory, redis: Redis, endpoint: str
) -> None:
    room = await make_room(status="paused")
    await join(client, room)
    fresh = fresh_room_id()
    before = await room_state(client, redis, room)
    for headers in BAD_ADMIN_HEADERS:
        for target in (room, fresh):
            path = f"/v1/admin/rooms/{target}"
            if endpoint == "put":
                body = {"target_url": "http://evil.example/", "status": "maintenance"}
                r = await client.put(path, json=body, headers=headers)
            elif endpoint == "get":
                r = await client.get(path, headers=headers)
            elif endpoint == "list":
                r = await client.get("/v1/admin/rooms", headers=headers)
            else:
                r = await client.delete(path, headers=headers)
            assert r.status_code == 401, (headers, r.text)
            assert_error(r, 401, "unauthorized")
    assert await room_state(client, redis, room) == before
    await assert_no_room(client, redis, fresh)


# --- tokens on the queue and session endpoints -------------------------------------------


def queue_calls(room: str) -> list[tuple[str, str]]:
    return [
        ("GET", f"/v1/rooms/{room}/status"),
        ("POST", f"/v1/rooms/{room}/heartbeat"),
        ("POST", f"/v1/rooms/{room}/leave"),
    ]


SESSION_CALLS = [("POST", "/v1/session/heartbeat"), ("POST", "/v1/session/complete")]


async def test_missing_token_is_401_and_changes_nothing(
    client: httpx.AsyncClient, make_room: RoomFactory, redis: Redis
) -> None:
    room = await make_room(status="paused")
    person = await join(client, room)
    before = await room_state(client, redis, room)
    no_token: list[dict[str, str]] = [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": f"Basic {person['token']}"},  # a token, but not as a bearer
        {"Authorization": person["token"]},
    ]
    for method, path in [*queue_calls(room), *SESSION_CALLS]:
        for headers in no_token:
            r = await client.request(method, path, headers=headers)
            assert r.status_code == 401, (method, path, headers, r.text)
            assert_error(r, 401, "missing_token")
    assert await room_state(client, redis, room) == before
    # the person is still waiting where they were
    r = await client.get(f"/v1/rooms/{room}/status", headers=bearer(person["token"]))
    assert r.json()["state"] == "waiting"
    assert r.json()["position"] == 1


GARBAGE_TOKENS = [
    "garbage",
    "a.b.c",
    "eyJhbGciOiJSUzI1NiJ9.e30.c2ln",  # {"alg":"RS256"}.{}.sig
    "x" * 500,
    "....",
]


async def test_garbage_token_is_401_token_invalid_and_changes_nothing(
    client: httpx.AsyncClient, make_room: RoomFactory, redis: Redis
) -> None:
    room = await make_room(status="paused")
    await join(client, room)
    before = await room_state(client, redis, room)
    for method, path in [*queue_calls(room), *SESSION_CALLS]:
        for token in GARBAGE_TOKENS:
            r = await client.request(method, path, headers=bearer(token))
            assert r.status_code == 401, (method, path, token, r.text)
            assert_error(r, 401, "token_invalid")
    for token in GARBAGE_TOKENS:
        r = await client.post("/v1/session/verify", json={"token": token, "room": room})
        assert_error(r, 401, "token_invalid")
    assert await room_state(client, redis, room) == before


async def test_queue_calls_for_a_deleted_room_are_404(
    client: httpx.AsyncClient, make_room: RoomFactory, redis: Redis
) -> None:
    room = await make_room(status="paused")
    person = await join(client, room)
    r = await client.delete(f"/v1/admin/rooms/{room}", headers=ADMIN)
    assert r.status_code == 200, r.text
    outbox = await redis.xlen(keys.RoomKeys(room).outbox)
    for method, path in queue_calls(room):
        r = await client.request(method, path, headers=bearer(person["token"]))
        assert r.status_code == 404, (method, path, r.text)
        assert_error(r, 404, "room_not_found")
    # a valid token of a deleted room does not bring the room (or the person) back
    r = await client.post(f"/v1/rooms/{room}/enqueue", headers=bearer(person["token"]))
    assert_error(r, 404, "room_not_found")
    assert_error(await client.get(f"/v1/admin/rooms/{room}", headers=ADMIN), 404, "room_not_found")
    assert room not in await listed_rooms(client)
    k = keys.RoomKeys(room)
    assert await redis.exists(k.cfg, k.people, k.line, k.seen, k.ips) == 0
    assert await redis.xlen(k.outbox) == outbox


# --- session verify ----------------------------------------------------------------------


async def test_session_verify_bad_bodies(client: httpx.AsyncClient) -> None:
    for raw in (b"{", b'{"token": "abc"', b"token=abc", b"\xff"):
        r = await client.post("/v1/session/verify", content=raw, headers=JSON)
        assert_error(r, 400, "malformed_json")
    for body in (
        {},
        {"room": "r"},
        {"token": 5},
        {"token": None},
        {"token": ""},
        {"token": "abc", "extra": 1},
        {"token": "abc", "room": 7},
        ["abc"],
        "abc",
    ):
        r = await client.post("/v1/session/verify", content=dumps(body), headers=JSON)
        assert r.status_code == 400, (body, r.text)
        assert_error(r, 400, "invalid_body")
    r = await client.post("/v1/session/verify", content=b"")
    assert_error(r, 400, "invalid_body")


# --- routing -----------------------------------------------------------------------------


async def test_unknown_paths_are_json_404(client: httpx.AsyncClient) -> None:
    for method, path in (
        ("GET", "/v1/nope"),
        ("GET", "/nope"),
        ("POST", "/v1/rooms/x/teleport"),
        ("GET", "/v1/rooms"),
        ("GET", "/v2/admin/rooms"),
        ("DELETE", "/v1/session"),
    ):
        r = await client.request(method, path, headers=ADMIN)
        assert r.status_code == 404, (method, path, r.text)
        assert_error(r, 404, "not_found")


async def test_wrong_methods_are_json_405_and_change_nothing(
    client: httpx.AsyncClient, make_room: RoomFactory, redis: Redis
) -> None:
    room = await make_room(status="paused")
    await join(client, room)
    before = await room_state(client, redis, room)
    for method, path in (
        ("GET", f"/v1/rooms/{room}/enqueue"),
        ("PUT", f"/v1/rooms/{room}/enqueue"),
        ("POST", f"/v1/rooms/{room}/status"),
        ("DELETE", f"/v1/rooms/{room}/leave"),
        ("GET", "/v1/session/verify"),
        ("GET", "/v1/session/complete"),
        ("PATCH", f"/v1/admin/rooms/{room}"),
        ("POST", f"/v1/admin/rooms/{room}"),
        ("DELETE", "/v1/admin/rooms"),
        ("POST", "/.well-known/jwks.json"),
    ):
        r = await client.request(method, path, json={"status": "maintenance"}, headers=ADMIN)
        assert r.status_code == 405, (method, path, r.text)
        assert_error(r, 405, "method_not_allowed")
    assert await room_state(client, redis, room) == before


# --- rate limits -------------------------------------------------------------------------


def some_ip() -> str:
    return "10." + ".".join(str(1 + secrets.randbelow(250)) for _ in range(3))


async def test_enqueue_rate_limit_is_429_with_retry_after_and_changes_nothing(
    settings: Settings, redis: Redis
) -> None:
    limited = settings.with_changes(
        rate_limits=RateLimits(enabled=True, enqueue="3/minute"),
        # believe X-Forwarded-For from loopback so each run is a client of its own
        trusted_proxies=(ipaddress.ip_network("127.0.0.1/32"),),
    )
    me = {"X-Forwarded-For": some_ip()}
    gw = GatewayServer(limited)
    async with gw, httpx.AsyncClient(base_url=gw.url, timeout=30) as client:
        room = fresh_room_id()
        body = {
            "target_url": "http://127.0.0.1:9/target",
            "status": "paused",
            "max_positions_per_ip": 0,
        }
        r = await client.put(f"/v1/admin/rooms/{room}", json=body, headers=ADMIN)
        assert r.status_code == 201, r.text
        for i in range(3):
            r = await client.post(f"/v1/rooms/{room}/enqueue", headers=me)
            assert r.status_code == 201, (i, r.text)
        before = await room_state(client, redis, room)
        assert before["admin"]["figures"]["waiting"] == 3
        r = await client.post(f"/v1/rooms/{room}/enqueue", headers=me)
        assert_error(r, 429, "rate_limited")
        assert 1 <= assert_retry_after(r) <= 60
        after = await room_state(client, redis, room)
        assert after == before
        assert after["admin"]["figures"]["waiting"] == 3
        # the limit is per client: someone else still gets in
        other = {"X-Forwarded-For": some_ip()}
        while other == me:
            other = {"X-Forwarded-For": some_ip()}
        r = await client.post(f"/v1/rooms/{room}/enqueue", headers=other)
        assert r.status_code == 201, r.text


async def test_status_and_heartbeat_limits_per_token_are_429_with_retry_after(
    settings: Settings,
) -> None:
    limited = settings.with_changes(
        rate_limits=RateLimits(enabled=True, status="3/minute", heartbeat="2/minute")
    )
    async with GatewayServer(limited) as gw, httpx.AsyncClient(base_url=gw.url) as client:
        room = fresh_room_id()
        r = await client.put(
            f"/v1/admin/rooms/{room}",
            json={
                "target_url": "http://127.0.0.1:9/t",
                "status": "paused",
                "max_positions_per_ip": 0,
            },
            headers=ADMIN,
        )
        assert r.status_code == 201, r.text
        a, b = [(await client.post(f"/v1/rooms/{room}/enqueue")).json() for _ in range(2)]
        for _ in range(3):
            r = await client.get(f"/v1/rooms/{room}/status", headers=bearer(a["token"]))
            assert r.status_code == 200, r.text
        r = await client.get(f"/v1/rooms/{room}/status", headers=bearer(a["token"]))
        assert_error(r, 429, "rate_limited")
        assert 1 <= assert_retry_after(r) <= 60
        # per token: the other person is not slowed down
        r = await client.get(f"/v1/rooms/{room}/status", headers=bearer(b["token"]))
        assert r.status_code == 200, r.text
        for expected in (200, 200, 429):
            r = await client.post(f"/v1/rooms/{room}/heartbeat", headers=bearer(a["token"]))
            assert r.status_code == expected, r.text


async def test_gateway_shutdown_closes_the_rate_limiter_connections(
    settings: Settings, redis: Redis
) -> None:
    name = "wr-limits-" + secrets.token_hex(4)
    limited = settings.with_changes(
        redis_url=f"{settings.redis_url}?client_name={name}",
        rate_limits=RateLimits(enabled=True),
        trusted_proxies=(ipaddress.ip_network("127.0.0.1/32"),),
    )
    gw = GatewayServer(limited)
    async with gw, httpx.AsyncClient(base_url=gw.url, timeout=30) as client:
        r = await client.post(
            f"/v1/rooms/{fresh_room_id()}/enqueue", headers={"X-Forwarded-For": some_ip()}
        )
        assert_error(r, 404, "room_not_found")  # the limiter was consulted first

        async def named_connections() -> int:
            clients = await redis.client_list()
            return sum(1 for c in clients if c.get("name") == name)

        assert await named_connections() >= 1  # the name does reach the server

    async def all_closed() -> bool:
        return await named_connections() == 0

    await wait_until(all_closed, seconds=3)
