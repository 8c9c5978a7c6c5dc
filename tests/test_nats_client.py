"""waitroom's NATS client against a real nats-server: a subscription given to deliver_raw
gets its messages raw; statuses and every other subscription keep nats-py's way; a stream
read through it gives what nats-py's own client gives, and still ends on a status."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import StorageType, StreamConfig

from shared import nats_client
from shared.stream_reads import Chunk, read_events
from tests.helpers.servers import Servers
from tests.helpers.wait import wait_until


async def test_a_raw_subscription_gets_messages_with_a_reply_raw(servers: Servers) -> None:
    nc = await nats_client.connect(servers=[servers.nats_url])
    other = await nats.connect(servers.nats_url)
    subject = f"raw.{uuid.uuid4().hex[:8]}"
    raw: list[tuple[bytes, bytes]] = []
    framed: list[Msg] = []

    async def on_raw(reply: bytes, data: bytes) -> None:
        raw.append((reply, data))

    async def on_msg(msg: Msg) -> None:
        framed.append(msg)

    async def arrived(count: int) -> bool:
        return len(raw) + len(framed) >= count

    async def wait_for(count: int) -> None:
        """Until ``count`` messages came either way; on failure, says what came which way."""
        try:
            await wait_until(lambda: arrived(count), seconds=5)
        except AssertionError as exc:
            came = [(m.subject, m.reply, m.data, m.headers) for m in framed]
            raise AssertionError(f"{exc}; raw {raw!r}; framed {came!r}") from None

    try:
        sub = await nc.subscribe(subject, cb=on_msg)
        nc.deliver_raw(sub, on_raw)
        await nats_client.subscriptions_on_server(nc)
        await other.publish(subject, b"one", reply="r.1", headers={"Nats-Msg-Id": "x"})
        await other.publish(subject, b"status-like", headers={"Status": "100"})  # no reply
        await other.flush()
        await wait_for(2)
        assert raw == [(b"r.1", b"one")]
        assert [(m.data, m.headers) for m in framed] == [(b"status-like", {"Status": "100"})]
        nc.stop_raw(sub)
        await other.publish(subject, b"two", reply="r.2")
        await other.flush()
        await wait_for(3)
        assert raw == [(b"r.1", b"one")]
        assert [m.data for m in framed] == [b"status-like", b"two"]
    finally:
        await other.close()
        await nc.close()


async def test_subscriptions_are_on_the_server_before_the_last_ping(servers: Servers) -> None:
    """A message another connection publishes once ``subscriptions_on_server`` returns is
    heard: what the client wrote ends with a PING behind the SUB. (nats-py's one
    ``flush`` writes its PING ahead of the SUB: a publish racing it went to nobody, 221
    times in 3,000 on a loaded machine, and failed the raw tests above now and then.)"""
    nc = await nats.connect(servers.nats_url)
    written: list[bytes] = []
    transport = nc._transport
    assert transport is not None
    write, writelines = transport.write, transport.writelines

    def on_write(data: bytes) -> None:
        written.append(bytes(data))
        write(data)

    def on_writelines(lines: list[bytes]) -> None:
        written.extend(bytes(line) for line in lines)
        writelines(lines)

    transport.write = on_write  # type: ignore[method-assign,assignment]
    transport.writelines = on_writelines  # type: ignore[method-assign,assignment]

    async def ignore(_msg: Msg) -> None:
        pass

    try:
        await nc.subscribe("order.check", cb=ignore)
        await nats_client.subscriptions_on_server(nc)
    finally:
        await nc.close()
    sub_at = next(i for i, data in enumerate(written) if data.startswith(b"SUB order.check"))
    assert b"PING\r\n" in written[sub_at + 1 :]


async def _stream(servers: Servers, count: int) -> tuple[str, str]:
    nc = await nats.connect(servers.nats_url)
    js = nc.jetstream()
    stream = f"RAW{uuid.uuid4().hex[:8].upper()}"
    subject = f"rawread.{stream.lower()}"
    await js.add_stream(
        StreamConfig(name=stream, subjects=[f"{subject}.>"], storage=StorageType.MEMORY)
    )
    for i in range(count):
        await js.publish(f"{subject}.e", f"event {i}".encode(), headers={"Nats-Msg-Id": f"{i}"})
    await nc.close()
    return stream, subject


@pytest.mark.parametrize("client", ["waitroom", "nats-py"])
async def test_a_stream_read_gives_the_same_through_either_client(
    servers: Servers, client: str
) -> None:
    stream, subject = await _stream(servers, 2500)
    nc: Client = (
        await nats_client.connect(servers=[servers.nats_url])
        if client == "waitroom"
        else await nats.connect(servers.nats_url)
    )
    built = 0
    build = nc._build_message

    def counted(*args: Any) -> Any:
        nonlocal built
        built += 1
        return build(*args)

    nc._build_message = counted  # type: ignore[method-assign,assignment]
    got: Chunk = []

    async def keep(chunk: Chunk) -> None:
        got.extend(chunk)

    try:
        await read_events(nc.jetstream(), stream, f"{subject}.>", 101, 2400, keep, least=700)
    finally:
        await nc.close()
    assert [seq for seq, _ in got[:2300]] == list(range(101, 2401))
    assert all(data == f"event {seq - 1}".encode() for seq, data in got)
    if client == "waitroom":
        assert built < 10  # the JetStream API's own answers only: no message built a Msg
    else:
        assert built >= 2300


async def _reporting_client(
    servers: Servers,
) -> tuple[nats_client.WaitroomClient, list[Exception]]:
    """waitroom's client, and the errors its error callback is given."""
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    return await nats_client.connect(servers=[servers.nats_url], error_cb=on_error), errors


async def test_a_raw_handler_that_raises_leaves_the_connection_reading(
    servers: Servers,
) -> None:
    """The raw handler runs on the connection's read loop, which nats-py ends for good on
    an error: the handler is dropped, the error reported, and everything else goes on."""
    nc, errors = await _reporting_client(servers)
    other = await nats.connect(servers.nats_url)
    subject = f"rawfail.{uuid.uuid4().hex[:8]}"
    framed: list[bytes] = []

    async def broken(_reply: bytes, _data: bytes) -> None:
        raise ValueError("not a delivery")

    async def on_msg(msg: Msg) -> None:
        framed.append(msg.data)

    async def reported() -> bool:
        return bool(errors)

    async def framed_one() -> bool:
        return bool(framed)

    try:
        sub = await nc.subscribe(subject, cb=on_msg)
        nc.deliver_raw(sub, broken)
        await nats_client.subscriptions_on_server(nc)
        await other.publish(subject, b"one", reply="r.1")
        await other.flush()
        await wait_until(reported, seconds=5)
        assert [type(e) for e in errors] == [ValueError]
        await other.publish(subject, b"two", reply="r.2")  # the handler is gone: nats-py's way
        await other.flush()
        await wait_until(framed_one, seconds=5)
        assert framed == [b"two"]
        answer = await nc.request("$JS.API.INFO", b"", timeout=2)  # the connection still reads
        assert b"account" in answer.data or b"error" in answer.data
    finally:
        await other.close()
        await nc.close()


async def test_a_taken_subscription_keeps_its_handler_when_it_raises_until_removed(
    servers: Servers,
) -> None:
    """``take_raw``: every message (with or without a reply, with headers) to the plain
    handler, which keeps the subscription after it raised (the error reported); once the
    subscription is removed, nothing more reaches it."""
    nc, errors = await _reporting_client(servers)
    other = await nats.connect(servers.nats_url)
    subject = f"taken.{uuid.uuid4().hex[:8]}"
    taken: list[tuple[bytes, bytes, bytes]] = []

    def handler(subject: bytes, headers: bytes, data: bytes) -> None:
        if data == b"bad":
            raise ValueError("not an answer")
        taken.append((subject, headers, data))

    async def came(count: int) -> bool:
        return len(taken) >= count

    try:
        sub = await nc.subscribe(f"{subject}.*")
        nc.take_raw(sub, handler)
        await nats_client.subscriptions_on_server(nc)
        await other.publish(f"{subject}.a", b"one", reply="r.1")
        await other.publish(f"{subject}.b", b"bad")
        await other.publish(f"{subject}.c", b"three", headers={"X-K": "v"})
        await other.flush()
        await wait_until(lambda: came(2), seconds=5)
        assert [type(e) for e in errors] == [ValueError]
        assert [(s, d) for s, _h, d in taken] == [
            (f"{subject}.a".encode(), b"one"),
            (f"{subject}.c".encode(), b"three"),
        ]
        assert taken[0][1] == b""
        assert taken[1][1].startswith(b"NATS/1.0\r\n")
        assert b"X-K: v" in taken[1][1]
        await sub.unsubscribe()
        assert not nc._taken
        await other.publish(f"{subject}.d", b"four")
        await other.flush()
        await nc.flush()
        await asyncio.sleep(0.2)
        assert len(taken) == 2
    finally:
        await other.close()
        await nc.close()


async def test_a_read_through_the_raw_way_still_ends_on_a_status(servers: Servers) -> None:
    """The consumer deleted under a read: JetStream says so with a status message (no
    reply subject), which must still end the read with an error, not hang it.

    The read asks for more than the stream holds, so once the stream's messages have come
    a pull is surely waiting at the server when the consumer goes (a read that had every
    message it asked for would have no pull left to answer, and would end by its timeout
    instead, which is what a loaded machine made of this test with a read to the end)."""
    stream, subject = await _stream(servers, 1000)
    nc = await nats_client.connect(servers=[servers.nats_url])
    js = nc.jetstream()

    async def delete_consumers(_chunk: Chunk) -> None:
        for name in await js.consumers_info(stream):
            await js.delete_consumer(stream, name.name or "")
        await asyncio.sleep(0.2)

    try:
        with pytest.raises(ConnectionError, match="stream read ended: 409"):
            await asyncio.wait_for(
                read_events(js, stream, f"{subject}.>", 1, 5000, delete_consumers, least=1000),
                30,
            )
    finally:
        await nc.close()
