"""The relay's batch publisher against a real nats-server: what it frames itself arrives as
nats-py's own publish would send it, JetStream acks each message in order, and nothing
that could break the framing (a space, CR or LF in a subject, reply or header) is sent."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import nats
import pytest
from nats import errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import APIError, NoStreamResponseError

from shared import nats_client
from shared.js_publish import Ack, BatchPublisher, Message
from tests.helpers.servers import Servers


@pytest.fixture(params=["nats-py", "waitroom"])
async def nc(servers: Servers, request: pytest.FixtureRequest) -> AsyncIterator[Client]:
    """nats-py's client (acks as its messages) or waitroom's (acks taken raw, as the
    relay's): the publisher must answer the same through both."""
    if request.param == "waitroom":
        client: Client = await nats_client.connect(servers=[servers.nats_url])
    else:
        client = await nats.connect(servers.nats_url)
    yield client
    await client.close()


async def _gather(nc: Client, subject: str, count: int) -> tuple[list[Msg], asyncio.Future[None]]:
    got: list[Msg] = []
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def keep(msg: Msg) -> None:
        got.append(msg)
        if len(got) == count and not done.done():
            done.set_result(None)

    await nc.subscribe(subject, cb=keep)
    return got, done


async def _memory_stream(js: JetStreamContext) -> tuple[str, str]:
    """A stream of the test's own, in memory: its name and its subjects' prefix."""
    stream = f"JSP{uuid.uuid4().hex[:8].upper()}"
    subject = f"jsp.{stream.lower()}"
    await js.add_stream(
        StreamConfig(name=stream, subjects=[f"{subject}.>"], storage=StorageType.MEMORY)
    )
    return stream, subject


async def test_a_batch_arrives_as_nats_py_would_send_it(nc: Client) -> None:
    prefix = f"jsp-{uuid.uuid4().hex[:8]}"
    got, done = await _gather(nc, f"{prefix}.>", 6)
    publisher = await BatchPublisher(nc).start()
    sent: list[Message] = [
        (f"{prefix}.a", b"", {"Nats-Msg-Id": "one"}),
        (f"{prefix}.b", b'{"k": "v \\u00e9"}', {"Nats-Msg-Id": "two", "X-Two": "a:b:3"}),
        (f"{prefix}.c", "é ünïcode\r\n\x00".encode(), {}),
    ]
    # nothing answers these subjects: each outcome is "no answer in time"
    assert await publisher.publish(sent, 0.2) == [None, None, None]
    for subject, payload, headers in sent:  # the same three by nats-py's own publish
        await nc.publish(subject, payload, headers=headers or None)
    await asyncio.wait_for(done, 5)
    ours, theirs = got[:3], got[3:]
    for mine, its, (subject, payload, headers) in zip(ours, theirs, sent, strict=True):
        assert mine.subject == its.subject == subject
        assert mine.data == its.data == payload
        assert (mine.headers or {}) == (its.headers or {}) == headers
        assert mine.reply.startswith(publisher._prefix)
    await publisher.close()


async def test_jetstream_acks_each_message_of_a_batch_in_order(nc: Client) -> None:
    js = nc.jetstream()
    stream, subject = await _memory_stream(js)
    publisher = await BatchPublisher(nc).start()
    batch: list[Message] = [
        (f"{subject}.e", f"event {i}".encode(), {"Nats-Msg-Id": f"id-{i}"}) for i in range(600)
    ]
    outcomes = await publisher.publish(batch, 5)
    assert all(isinstance(o, Ack) for o in outcomes)
    seqs = [o.seq for o in outcomes if isinstance(o, Ack)]
    assert seqs == list(range(seqs[0], seqs[0] + 600))
    again = await publisher.publish(batch[:10], 5)  # the same ids: stored once
    assert all(isinstance(o, Ack) and o.duplicate for o in again)
    stored = await js.get_msg(stream, seqs[599])
    assert stored.data == b"event 599"
    assert (stored.headers or {}).get("Nats-Msg-Id") == "id-599"
    await publisher.close()
    await js.delete_stream(stream)


@pytest.mark.parametrize(
    "message",
    [
        ("jsp.evil x", b"p", {}),  # a space would end the subject
        ("jsp.evil\r\nPUB jsp.injected 1\r\nx", b"p", {}),
        ("jsp.evil", b"p", {"Nats-Msg-Id": "x\r\nPUB jsp.injected 1\r\nx"}),
        ("jsp.evil", b"p", {"Bad Key": "v"}),
        ("", b"p", {}),
    ],
)
async def test_nothing_that_could_break_the_framing_is_sent(nc: Client, message: Message) -> None:
    """The attack: a subject or a header that smuggles a second protocol command. The
    whole batch is refused before anything goes out, the good message beside it too."""
    got, _done = await _gather(nc, "jsp.>", 1)
    publisher = await BatchPublisher(nc).start()
    good: Message = ("jsp.good", b"fine", {})
    with pytest.raises((errors.BadSubjectError, errors.BadHeaderError)):
        await publisher.publish([good, message], 0.2)
    await nc.flush()
    await asyncio.sleep(0.2)
    assert got == []
    await publisher.close()


async def test_an_answer_that_cannot_be_read_keeps_the_acks_coming(nc: Client) -> None:
    """Something answers a publish with an error nats-py cannot read (no code, a field it
    does not know): that message's outcome is an error, and the acks of the next batch
    still arrive (through waitroom's client: taken raw, as the relay's)."""
    subject = f"jspodd.{uuid.uuid4().hex[:8]}"

    async def odd_answer(msg: Msg) -> None:
        await nc.publish(msg.reply, b'{"error": {"description": "odd", "shiny": 1}}')

    await nc.subscribe(subject, cb=odd_answer)
    publisher = await BatchPublisher(nc).start()
    if isinstance(nc, nats_client.WaitroomClient):
        assert publisher._sub is not None
        assert publisher._sub._id in nc._taken  # (the raw way is the one tested)
    [odd] = await publisher.publish([(subject, b"x", {})], 5)
    assert isinstance(odd, APIError)
    assert "odd" in str(odd)
    js = nc.jetstream()
    stream, stored = await _memory_stream(js)
    [ack] = await publisher.publish([(f"{stored}.a", b"fine", {"Nats-Msg-Id": "f"})], 5)
    assert isinstance(ack, Ack)
    await publisher.close()
    await js.delete_stream(stream)


async def test_a_closed_connection_refuses_the_batch(servers: Servers) -> None:
    client = await nats.connect(servers.nats_url)
    publisher = await BatchPublisher(client).start()
    await client.close()
    with pytest.raises(errors.ConnectionClosedError):
        await publisher.publish([("jsp.x", b"p", {})], 0.2)


async def test_a_message_over_the_server_limit_is_refused_headers_and_all(nc: Client) -> None:
    """The server's limit is on headers and payload together; a message past it would make
    the server close the connection, losing every message of the batch with it."""
    got, done = await _gather(nc, "jspbig.>", 1)
    publisher = await BatchPublisher(nc).start()
    with pytest.raises(errors.MaxPayloadError):
        await publisher.publish([("jspbig.a", b"x" * (nc.max_payload + 1), {})], 0.2)
    fits_alone = b"x" * (nc.max_payload - 10)
    with pytest.raises(errors.MaxPayloadError):  # fits alone; not with its header
        await publisher.publish([("jspbig.b", fits_alone, {"Nats-Msg-Id": "m" * 20})], 0.2)
    await publisher.publish([("jspbig.c", b"small", {"Nats-Msg-Id": "ok"})], 0.2)
    await asyncio.wait_for(done, 5)  # the connection is still up
    assert [m.subject for m in got] == ["jspbig.c"]
    await publisher.close()


async def test_each_answer_takes_its_own_place_errors_and_strays_too(nc: Client) -> None:
    """A batch whose messages get an ack, a duplicate, JetStream's refusal (a wrong
    expected sequence) and no responder at all: each outcome in its own message's place.
    Messages sent to the acks' inbox that no batch waits for (or that are no answer's
    subject at all) change nothing, and the next batch is answered."""
    js = nc.jetstream()
    stream, subject = await _memory_stream(js)
    publisher = await BatchPublisher(nc).start()
    wrong = {"Nats-Msg-Id": "w", "Nats-Expected-Last-Subject-Sequence": "99"}
    batch: list[Message] = [
        (f"{subject}.a", b"one", {"Nats-Msg-Id": "one"}),
        (f"{subject}.a", b"one", {"Nats-Msg-Id": "one"}),
        (f"{subject}.b", b"refused", wrong),
        (f"jspnobody.{stream.lower()}", b"lost", {}),
        (f"{subject}.c", b"two", {"Nats-Msg-Id": "two"}),
    ]
    for stray in ("x.y", "999999.0", "1.-1"):  # (batch 1 is this one)
        await nc.publish(f"{publisher._prefix}.{stray}", b"{}")
    first, again, refused, lost, second = await publisher.publish(batch, 5)
    assert isinstance(first, Ack)
    assert not first.duplicate
    assert isinstance(again, Ack)
    assert again.duplicate
    assert again.seq == first.seq
    assert isinstance(refused, APIError)
    assert refused.err_code == 10071
    assert isinstance(lost, NoStreamResponseError)
    assert isinstance(second, Ack)
    assert second.seq == first.seq + 1
    [later] = await publisher.publish([(f"{subject}.d", b"three", {"Nats-Msg-Id": "3"})], 5)
    assert isinstance(later, Ack)
    assert later.seq == second.seq + 1
    await publisher.close()
    await js.delete_stream(stream)
