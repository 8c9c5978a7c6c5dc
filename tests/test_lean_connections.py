"""The gateway's uvicorn protocol with smaller per-connection objects (lean_connections.py):
requests pipelined on one connection are answered in order, and a body that arrives in
parts is read whole (the request-message event it waits on is the lean one)."""

from __future__ import annotations

import asyncio
import json

from tests.helpers.api import RoomFactory
from tests.helpers.servers import GatewayServer


async def _connect(gateway: GatewayServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", gateway.settings.port)


async def _response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    status = int((await reader.readline()).split()[1])
    headers: dict[str, str] = {}
    while line := (await reader.readline()).strip():
        name, _, value = line.decode().partition(":")
        headers[name.lower()] = value.strip()
    body = await reader.readexactly(int(headers["content-length"]))
    return status, headers, body


async def test_pipelined_requests_are_answered_in_order(gateway: GatewayServer) -> None:
    reader, writer = await _connect(gateway)
    try:
        ids = [f"pipelined-{i}" for i in range(4)]
        writer.write(
            b"".join(
                f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-ID: {i}\r\n\r\n".encode()
                for i in ids
            )
        )
        answers = [await asyncio.wait_for(_response(reader), 10) for _ in ids]
        assert [status for status, _, _ in answers] == [200] * 4
        assert [headers["x-request-id"] for _, headers, _ in answers] == ids
    finally:
        writer.close()


async def test_a_body_that_arrives_in_parts_is_read_whole(
    gateway: GatewayServer, make_room: RoomFactory
) -> None:
    room = await make_room(status="paused")
    body = json.dumps({"size": 2}).encode()
    reader, writer = await _connect(gateway)
    try:
        writer.write(
            f"POST /v1/rooms/{room}/enqueue HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body[:4]
        )
        await writer.drain()
        await asyncio.sleep(0.3)  # the app waits for the rest of the body
        writer.write(body[4:])
        status, _, answer = await asyncio.wait_for(_response(reader), 10)
        assert status == 201, answer  # a part alone would be malformed JSON (400)
        assert json.loads(answer)["state"] == "waiting"
    finally:
        writer.close()
