"""Event streams as the gateway serves them before the framework (gateway/event_streams.py)
and writes them from the request's own task (LiveHub.write): the answer's head and first
frames, news waking a waiting stream, the hub's keep-alive, the route's errors, a client
that goes, a gateway that drains or stops. Real gateway, real HTTP."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator

import httpx
import pytest

import gateway.live as live_module
from gateway.services import Services
from gateway.slow_clients import HeaderDeadlineProtocol
from shared.settings import Settings
from tests.helpers.api import ADMIN, RoomFactory, assert_error, bearer
from tests.helpers.servers import GatewayServer
from tests.helpers.wait import wait_until


class RawStream:
    """One event stream on a plain socket: the status line, the headers, then the body as
    it comes (chunked transfer encoding left in: only the frames' text is looked for)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""

    @classmethod
    async def open(cls, url: str, path: str, headers: dict[str, str]) -> RawStream:
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{lines}\r\n".encode())
        stream = cls(reader, writer)
        stream.status = int((await reader.readline()).split()[1])
        while line := (await reader.readline()).strip():
            name, _, value = line.decode().partition(":")
            stream.headers[name.lower()] = value.strip()
        return stream

    async def read_until(self, text: bytes, seconds: float = 5.0) -> bytes:
        """The body so far, once it holds ``text``."""
        async with asyncio.timeout(seconds):
            while text not in self.body:
                chunk = await self.reader.read(65536)
                if not chunk:
                    raise EOFError(self.body)
                self.body += chunk
        return self.body

    async def ended(self, seconds: float = 5.0) -> bytes:
        """The whole body once the server has closed the stream (the last chunk sent)."""
        return await self.read_until(b"\r\n0\r\n\r\n", seconds)

    def close(self) -> None:
        self.writer.close()


def _services(gateway: GatewayServer) -> Services:
    services: Services = gateway.app.state.services
    return services


async def _someone_waiting(client: httpx.AsyncClient, make_room: RoomFactory) -> tuple[str, str]:
    """A paused room with one person in line; the room and that person's stream path."""
    room = await make_room(status="paused")
    me = (await client.post(f"/v1/rooms/{room}/enqueue")).json()
    return room, f"/v1/rooms/{room}/events?token={me['token']}"


@pytest.fixture
async def streams() -> AsyncIterator[list[RawStream]]:
    opened: list[RawStream] = []
    yield opened
    for s in opened:
        s.close()


async def test_a_stream_opens_with_its_head_and_state_then_follows_the_line(
    gateway: GatewayServer,
    client: httpx.AsyncClient,
    make_room: RoomFactory,
    streams: list[RawStream],
) -> None:
    room = await make_room(status="paused")
    people = [(await client.post(f"/v1/rooms/{room}/enqueue")).json() for _ in range(2)]
    s = await RawStream.open(
        gateway.url,
        f"/v1/rooms/{room}/events?token={people[1]['token']}",
        {"Accept": "text/event-stream", "X-Request-ID": "stream-req-1"},
    )
    streams.append(s)
    assert s.status == 200
    assert s.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert s.headers["cache-control"] == "no-cache"
    assert s.headers["x-accel-buffering"] == "no"
    assert s.headers["x-request-id"] == "stream-req-1"
    assert s.headers["transfer-encoding"] == "chunked"
    body = await s.read_until(b'"position":2')
    assert b": waitroom\nretry: 3000\n\n" in body
    assert b"event: room\nid: " in body
    assert b'data: {"status":"paused"}' in body
    # news wakes the waiting stream: the person ahead leaves
    await client.post(f"/v1/rooms/{room}/leave", headers=bearer(people[0]["token"]))
    body = await s.read_until(b'"position":1')
    assert b"event: position" in body.split(b'"position":2', 1)[1]
    # and it ends when the place does
    await client.post(f"/v1/rooms/{room}/leave", headers=bearer(people[1]["token"]))
    body = await s.ended()
    assert b"event: state\nid: " in body
    assert b'"state":"left"' in body


async def test_an_open_stream_keeps_neither_its_query_nor_its_headers(
    gateway: GatewayServer,
    client: httpx.AsyncClient,
    make_room: RoomFactory,
    streams: list[RawStream],
) -> None:
    """A gateway holds thousands of streams for minutes to hours: what the request brought
    (the token in the query, some 700 bytes; a browser's headers, a kilobyte or more) is
    not kept once the stream is open."""
    _, path = await _someone_waiting(client, make_room)
    s = await RawStream.open(gateway.url, path, {"X-Big": "b" * 2000, "User-Agent": "phone"})
    streams.append(s)
    await s.read_until(b"event: position")
    scopes = [
        p.cycle.scope
        for p in gc.get_objects()
        if isinstance(p, HeaderDeadlineProtocol)
        and p.cycle is not None
        and not p.cycle.response_complete
        and p.cycle.scope.get("path", "").endswith("/events")
    ]
    assert len(scopes) == 1
    assert scopes[0]["headers"] == []
    assert scopes[0]["query_string"] == b""
    # and the stream goes on
    assert s.status == 200


async def test_a_bearer_header_opens_a_stream_and_is_preferred_to_the_query(
    client: httpx.AsyncClient, make_room: RoomFactory
) -> None:
    room = await make_room(status="paused")
    me = (await client.post(f"/v1/rooms/{room}/enqueue")).json()
    url = f"/v1/rooms/{room}/events"
    async with client.stream("GET", url, headers=bearer(me["token"])) as r:
        assert r.status_code == 200
        async for line in r.aiter_lines():
            if line.startswith("event: position"):
                break
    r = await client.get(url, params={"token": me["token"]}, headers=bearer("junk"))
    assert_error(r, 401, "token_invalid")


async def test_the_route_errors_come_as_json_with_the_request_id(
    client: httpx.AsyncClient, make_room: RoomFactory
) -> None:
    room = await make_room(status="paused")
    other = await make_room(status="paused")
    me = (await client.post(f"/v1/rooms/{room}/enqueue")).json()
    sent = {"X-Request-ID": "stream-err-1"}
    r = await client.get(f"/v1/rooms/{other}/events", params={"token": me["token"]}, headers=sent)
    assert_error(r, 403, "wrong_room")
    assert r.headers["x-request-id"] == "stream-err-1"
    assert int(r.headers["content-length"]) == len(r.content)
    r = await client.get(f"/v1/rooms/{room}/events", params={"token": "junk"})
    assert_error(r, 401, "token_invalid")
    r = await client.get(f"/v1/rooms/{room}/events")
    assert_error(r, 401, "missing_token")
    r = await client.get("/v1/rooms/not%20a%20room/events", params={"token": me["token"]})
    assert_error(r, 400, "invalid_room_id")
    r = await client.get("/v1/rooms/no-such-room-here/events", params={"token": me["token"]})
    assert_error(r, 403, "wrong_room")
    # a fifth stream of one place: 429 with Retry-After, in the same shape
    url = f"/v1/rooms/{room}/events"
    opened = [
        await client.send(
            client.build_request("GET", url, params={"token": me["token"]}), stream=True
        )
        for _ in range(4)
    ]
    try:
        assert [o.status_code for o in opened] == [200] * 4
        r = await client.get(url, params={"token": me["token"]})
        error = assert_error(r, 429, "too_many_streams")
        assert int(r.headers["retry-after"]) == error["retry_after"] > 0
    finally:
        for o in opened:
            await o.aclose()


async def test_a_client_that_goes_is_forgotten_at_once(
    gateway: GatewayServer,
    client: httpx.AsyncClient,
    make_room: RoomFactory,
    streams: list[RawStream],
) -> None:
    live = _services(gateway).live
    room, path = await _someone_waiting(client, make_room)
    for _ in range(4):
        s = await RawStream.open(gateway.url, path, {})
        streams.append(s)
        await s.read_until(b"event: position")
    assert len(live.writing) == 4
    streams[0].close()

    async def three_left() -> bool:
        return len(live.writing) == 3 and room in live.feeds

    await wait_until(three_left, seconds=5)  # not at the next keep-alive, 15 s on
    fifth = await RawStream.open(gateway.url, path, {})
    streams.append(fifth)
    assert fifth.status == 200
    for s in streams:
        s.close()

    async def none_left() -> bool:
        return not live.writing and room not in live.feeds

    await wait_until(none_left, seconds=5)


async def test_a_quiet_stream_gets_keep_alives(
    gateway: GatewayServer,
    client: httpx.AsyncClient,
    make_room: RoomFactory,
    streams: list[RawStream],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(live_module, "KEEPALIVE_SECONDS", 0.4)
    live = _services(gateway).live
    room = await make_room(status="paused")
    me = (await client.post(f"/v1/rooms/{room}/enqueue")).json()
    s = await RawStream.open(gateway.url, f"/v1/rooms/{room}/events?token={me['token']}", {})
    streams.append(s)
    await s.read_until(b": keepalive\n\n")
    s.body = b""
    await s.read_until(b": keepalive\n\n")  # and again: the hub's tick goes on
    assert len(live.writing) == 1


async def test_a_draining_gateway_tells_its_streams_to_reconnect_and_closes_them(
    gateway: GatewayServer,
    client: httpx.AsyncClient,
    make_room: RoomFactory,
    streams: list[RawStream],
) -> None:
    live = _services(gateway).live
    _, path = await _someone_waiting(client, make_room)
    s = await RawStream.open(gateway.url, path, {})
    streams.append(s)
    await s.read_until(b"event: position")
    assert live.drain() == 1
    body = await s.ended()
    assert b'retry: 250\nevent: reconnect\ndata: {"reason":"shutdown"}\n\n' in body
    late = await RawStream.open(gateway.url, path, {})  # told at once too
    streams.append(late)
    assert b"event: reconnect" in await late.ended()


async def test_a_gateway_stopping_with_streams_open_ends_them(
    settings: Settings, streams: list[RawStream]
) -> None:
    """uvicorn cancels what is still running when its grace period ends: the stream's
    task must take that cancellation as the end, not as news."""
    server = GatewayServer(settings)
    async with server, httpx.AsyncClient(base_url=server.url, timeout=30) as c:
        live = _services(server).live
        room = "stop-" + settings.instance
        r = await c.put(
            f"/v1/admin/rooms/{room}",
            headers=ADMIN,
            json={"target_url": "http://127.0.0.1:9/t", "status": "paused"},
        )
        assert r.status_code == 201
        me = (await c.post(f"/v1/rooms/{room}/enqueue")).json()
        for _ in range(3):
            s = await RawStream.open(server.url, f"/v1/rooms/{room}/events?token={me['token']}", {})
            streams.append(s)
            await s.read_until(b"event: position")
    # the server has stopped (a stream that swallowed the cancellation would hang it)
    for s in streams:
        with pytest.raises(EOFError):
            await s.read_until(b"never sent")
    assert not live.writing
