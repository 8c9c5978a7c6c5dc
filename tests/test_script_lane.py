"""The script lane (shared/store/lane.py): one pipelined connection for a gateway's
per-request scripts, against a real valkey. Its answers must be the pool's, its calls must
never get each other's answers, and it must keep the pool's promises when the store
breaks, hangs, restarts without its scripts or answers in pieces."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.errors import RoomNotFound, StoreUnavailable
from shared.redis_conn import connect
from shared.room import RoomUpdate
from shared.settings import Settings
from shared.store import RoomStore
from shared.store.lane import INCOMPLETE, ScriptLane, read_reply
from shared.store.rooms import LANE_SCRIPTS, WORKER_LANE_SCRIPTS
from shared.store.snapshot_read import snapshot_json
from tests.helpers.api import fresh_room_id
from tests.helpers.servers import ValkeyProc
from tests.helpers.wait import wait_until

URL = "http://127.0.0.1:9/t"

ECHO = "return ARGV"
"""Answers its arguments: each call's answer names the call."""
SHAPES = """
return {1, -2, 'text', 'ünïcode', false, {ARGV[1], {7}}, redis.status_reply('FINE')}
"""
LONG = "return string.rep(ARGV[1], tonumber(ARGV[2]))"
STALL = """
local x = 0
for i = 1, tonumber(ARGV[1]) do x = x + i end
return ARGV[2]
"""
"""Holds the store for ARGV[1] turns of a loop (TIME stands still in a script), then
answers ARGV[2]: calls queue up behind it."""


async def stall_turns(redis: Redis, seconds: float) -> int:
    """Turns of STALL that hold the store about ``seconds`` on this machine now (30
    million once took 0.9 s here, and 0.09 s on another day)."""
    turns = 1_000_000
    started = time.monotonic()
    await redis.eval(STALL, 0, turns, "x")
    return int(turns * seconds / max(time.monotonic() - started, 1e-3))


def room_update(**config: Any) -> RoomUpdate:
    return RoomUpdate(target_url=URL, max_positions_per_ip=0, release_rate=100.0, **config)


async def lane_call(lane: ScriptLane, redis: Redis, source: str, *args: str | int) -> Any:
    sha: str = await redis.script_load(source)
    return await lane.evalsha(sha, b"", 0, tuple(args))


@pytest.fixture
async def lane(settings: Settings) -> AsyncIterator[ScriptLane]:
    opened = ScriptLane(settings.redis_url)
    yield opened
    await opened.aclose()


async def test_the_lane_answers_what_the_pool_answers(
    redis: Redis, store: RoomStore, lane: ScriptLane
) -> None:
    for source, args in ((ECHO, ("a", "1", "")), (SHAPES, ("x",)), (LONG, ("ab", 3))):
        script = redis.register_script(source)
        assert await lane_call(lane, redis, source, *args) == await script(args=list(args))
    with pytest.raises(ResponseError) as pool_error:
        await redis.register_script("return redis.error_reply('WR nope')")()
    with pytest.raises(ResponseError) as lane_error:
        await lane_call(lane, redis, "return redis.error_reply('WR nope')")
    assert type(lane_error.value) is type(pool_error.value)
    assert str(lane_error.value) == str(pool_error.value)

    # the room scripts, each through one store and read back through the other
    laned = RoomStore(redis, lane=lane)
    room = fresh_room_id("lane")
    await store.put_room(room, room_update())
    for writer, reader in ((laned, store), (store, laned)):
        joined = await writer.enqueue(room, ip_hash="h", metadata='{"a":1}')
        read = msgspec.structs.asdict(await reader.status(room, joined.position_id))
        again = msgspec.structs.asdict(await writer.status(room, joined.position_id))
        assert {k: v for k, v in read.items() if again[k] != v and k != "now"} == {}
        left = await writer.leave(room, joined.position_id)
        assert left.state == (await reader.status(room, joined.position_id)).state
    with pytest.raises(RoomNotFound):  # a script's domain answer is mapped as the pool's
        await laned.status(fresh_room_id("none"), "nobody")
    assert {"enqueue", "status", "leave"} <= LANE_SCRIPTS


async def test_a_workers_store_answers_through_its_lane_what_the_pool_answers(
    redis: Redis, store: RoomStore, lane: ScriptLane
) -> None:
    """A worker's store sends every script, its liveness marks and its per-tick reads
    (the room lists, the server's run id) through the lane."""
    worker = RoomStore(redis, lane=lane, lane_scripts=WORKER_LANE_SCRIPTS)
    room = fresh_room_id("wlane")
    await store.put_room(room, room_update())
    # the scripts over a whole room, and long outbox reads, keep off the lane
    assert b'"people"' in snapshot_json(await worker.snapshot(room))
    assert len(await worker.outbox_batch(room, 100_000)) == 1
    assert lane.opened == 0
    await worker.put_room(room, room_update(max_queue_size=500))  # room_put.lua: the lane
    assert lane.opened == 1
    joined = [await worker.enqueue(room, ip_hash=f"h{i}") for i in range(3)]
    assert await worker.rooms() == await store.rooms()
    assert room in await worker.rooms()
    assert await worker.draining_rooms() == await store.draining_rooms()
    assert await worker.server_id() == await store.server_id() != ""

    # many calls at once: a script's error answer stays in its place
    asked = [joined[0].position_id, "nobody-here", joined[2].position_id]
    through_lane = await worker.statuses(room, asked)
    assert sorted(through_lane) == sorted([joined[0].position_id, joined[2].position_id])
    assert through_lane.keys() == (await store.statuses(room, asked)).keys()
    fences = await worker.lease_attempts([room, room], "relay", "w1", 60_000)
    assert fences[0] > 0
    assert fences[1] == fences[0]
    assert (await worker.lease_attempts([room], "relay", "w2", 60_000))[0] < 0

    # the liveness mark: the same figures whichever way it goes
    role = fresh_room_id("role")
    laned, pooled = worker.replicas(role), store.replicas(role)
    assert (await laned.mark_alive("a", 60_000)).alive == 1
    assert await pooled.mark_alive("b", 60_000) == (2, 0)
    assert await pooled.alive("a")
    await worker.replicas(role).released()
    assert await laned.mark_alive("a", 60_000) == (2, 1)
    assert await laned.mark_alive("c", 1) == (3, 1)
    await asyncio.sleep(0.01)
    assert await laned.mark_alive("a", 60_000) == (2, 1)  # c's mark ran out: dropped
    assert not await pooled.alive("c")


async def test_calls_made_together_share_one_connection_and_get_their_own_answers(
    redis: Redis, lane: ScriptLane
) -> None:
    sha = await redis.script_load(ECHO)
    await lane.evalsha(sha, b"", 0, ("warm",))
    before = int((await redis.info("clients"))["connected_clients"])
    answers = await asyncio.gather(*(lane.evalsha(sha, b"", 0, (str(i),)) for i in range(500)))
    assert answers == [[str(i)] for i in range(500)]
    assert int((await redis.info("clients"))["connected_clients"]) == before
    assert lane.opened == 1


async def test_a_call_cancelled_while_it_waits_shifts_no_answer(
    redis: Redis, lane: ScriptLane
) -> None:
    """The attack on a pipeline: a caller gone before its answer (a client that hung up).
    Its answer still comes, in its turn, and must go to nobody else."""
    stall_sha, echo_sha = await redis.script_load(STALL), await redis.script_load(ECHO)
    await lane.evalsha(echo_sha, b"", 0, ("warm",))
    turns = await stall_turns(redis, 1.0)  # the cancels come 0.1 s into it
    stall = asyncio.ensure_future(lane.evalsha(stall_sha, b"", 0, (turns, "stalled")))
    await asyncio.sleep(0.05)  # the store is busy with the stall now
    calls = [asyncio.ensure_future(lane.evalsha(echo_sha, b"", 0, (str(i),))) for i in range(40)]
    await asyncio.sleep(0.05)
    for call in calls[::3]:
        call.cancel()
    assert await stall == "stalled"
    for i, call in enumerate(calls):
        if i % 3:
            assert await call == [str(i)]
        else:
            with pytest.raises(asyncio.CancelledError):
                await call
    assert await lane_call(lane, redis, ECHO, "after") == ["after"]
    assert lane.opened == 1  # nothing was answered by running it again on a new connection


async def test_an_answer_in_many_pieces_is_read_whole(redis: Redis, lane: ScriptLane) -> None:
    long = await lane_call(lane, redis, LONG, "0123456789", 400_000)
    assert long == "0123456789" * 400_000
    nested = await lane_call(
        lane, redis, "local t = {} for i = 1, 20000 do t[i] = {i, 'x'} end return t"
    )
    assert nested == [[i, "x"] for i in range(1, 20001)]


def test_an_answer_cut_anywhere_waits_for_the_rest() -> None:
    frame = b"*3\r\n:12\r\n$5\r\nhello\r\n*2\r\n$-1\r\n+OK\r\n"
    assert read_reply(bytearray(frame), 0) == ([12, "hello", [None, "OK"]], len(frame))
    for cut in range(len(frame)):
        assert read_reply(bytearray(frame[:cut]), 0)[1] == INCOMPLETE


async def test_answers_in_pieces_keep_no_memory(redis: Redis, lane: ScriptLane) -> None:
    """Answers that end mid-read are the rule under load; waiting for the rest of one must
    keep nothing (a raised exception object once kept every frame and chunk it passed)."""
    sha = await redis.script_load(LONG)
    tracemalloc.start()
    try:
        used = []
        for _ in range(5):
            await asyncio.gather(*(lane.evalsha(sha, b"", 0, ("x", 3000)) for _ in range(2000)))
            used.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    assert used[-1] - used[1] < 1_000_000, used


async def test_an_answer_that_is_not_text_fails_its_own_call_only(
    redis: Redis, lane: ScriptLane
) -> None:
    bad, echo = await redis.script_load("return string.char(255)"), await redis.script_load(ECHO)
    results = await asyncio.gather(
        lane.evalsha(echo, b"", 0, ("before",)),
        lane.evalsha(bad, b"", 0, ()),
        lane.evalsha(echo, b"", 0, ("after",)),
        return_exceptions=True,
    )
    assert results[0] == ["before"]
    assert results[2] == ["after"]
    assert isinstance(results[1], UnicodeDecodeError)
    assert lane.opened == 1
    with pytest.raises(DataError):  # as redis-py: no argument made up from None
        await lane.evalsha(echo, b"", 0, (None,))  # type: ignore[arg-type]


async def test_a_store_killed_and_started_empty_is_unavailable_then_served_again(
    own_store: tuple[ValkeyProc, Settings],
) -> None:
    """kill -9 mid-life, then the store comes back without the scripts it had loaded (an
    empty restart): calls meanwhile get StoreUnavailable (503), calls after it are
    served on a new connection, the scripts loaded again (NOSCRIPT)."""
    proc, settings = own_store
    redis = connect(settings.redis_url)
    lane = ScriptLane(settings.redis_url)
    try:
        store = RoomStore(redis, lane=lane)
        room = fresh_room_id("lane")
        await store.put_room(room, room_update())
        joined = await store.enqueue(room)
        proc.kill()
        with pytest.raises(StoreUnavailable):
            await store.status(room, joined.position_id)
        proc.start()
        with pytest.raises(RoomNotFound):  # ran: the empty store has no such room
            await store.status(room, joined.position_id)
        await store.put_room(room, room_update())
        assert (await store.enqueue(room)).state == "waiting"
    finally:
        await lane.aclose()
        await redis.aclose()


@contextlib.asynccontextmanager
async def lane_to_own_store(
    own_store: tuple[ValkeyProc, Settings],
) -> AsyncIterator[tuple[ValkeyProc, Redis, ScriptLane, RoomStore, str]]:
    """A lane (timeout 0.6 s) to the test's own valkey, database 2 (a SELECT in its
    handshake), a store over it, and a room."""
    proc, settings = own_store
    url = settings.redis_url.rsplit("/", 1)[0] + "/2"
    redis = connect(url)
    lane = ScriptLane(url, timeout=0.6)
    try:
        store = RoomStore(redis, lane=lane)
        room = fresh_room_id("lane")
        await store.put_room(room, room_update())
        yield proc, redis, lane, store, room
    finally:
        await lane.aclose()
        await redis.aclose()


async def test_a_store_that_stops_answering_times_out_and_the_lane_recovers(
    own_store: tuple[ValkeyProc, Settings],
) -> None:
    """A store frozen (SIGSTOP) holds every call behind the first: they fail after the
    timeout, not retried, and the next call once it answers again is served."""
    async with lane_to_own_store(own_store) as (proc, _redis, _lane, store, room):
        assert proc.proc is not None
        os.kill(proc.proc.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            results = await asyncio.gather(
                *(store.enqueue(room) for _ in range(5)), return_exceptions=True
            )
            waited = time.monotonic() - started
            # the connection is gone: callers now wait on one new connection's handshake
            # together, not each on its own in turn
            started = time.monotonic()
            again = await asyncio.gather(
                *(store.enqueue(room) for _ in range(10)), return_exceptions=True
            )
            waited_again = time.monotonic() - started
        finally:
            os.kill(proc.proc.pid, signal.SIGCONT)
        assert all(isinstance(r, StoreUnavailable) for r in results + again), results + again
        assert 0.5 < waited < 3
        assert waited_again < 3
        assert (await store.enqueue(room)).state == "waiting"


async def test_a_whole_answer_comes_on_its_own_connection_or_times_out(
    own_store: tuple[ValkeyProc, Settings],
) -> None:
    """``answer_whole`` (a room's snapshot) reads on a connection of its own, after the
    URL's handshake; a frozen store fails it with a timeout after its time, or sooner when
    nothing came for the lane's timeout, and it leaves no connection behind."""
    async with lane_to_own_store(own_store) as (proc, redis, lane, store, room):
        await store.enqueue(room)
        opened = lane.opened
        assert b'"people"' in snapshot_json(await store.snapshot(room))
        assert lane.opened == opened  # the lane's own connection took no part
        end = b"$3\r\nend\r\n"
        frame = b"*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n*2\r\n$4\r\nECHO\r\n$3\r\nend\r\n"
        assert await lane.answer_whole(frame, end, within=5) == b"+OK\r\n$2\r\nhi\r\n" + end
        clients = int((await redis.info("clients"))["connected_clients"])
        assert proc.proc is not None
        os.kill(proc.proc.pid, signal.SIGSTOP)
        try:
            with pytest.raises(RedisTimeoutError):
                await lane.answer_whole(frame, end, within=0.5)
            # nothing coming for the lane's timeout ends it long before its own time
            with pytest.raises(RedisTimeoutError):
                await asyncio.wait_for(lane.answer_whole(frame, end, within=600), 30)
        finally:
            os.kill(proc.proc.pid, signal.SIGCONT)
        # an error in place of the last answer (here a script holding the store: BUSY)
        # ends it by the same watch, not after its whole time
        await redis.config_set("busy-reply-threshold", 100)
        now = "tonumber(redis.call('TIME')[1])"
        hold = f"local t = {now} + 2 while {now} < t do end"  # (2 s by the store's clock)
        busy = asyncio.ensure_future(redis.eval(hold, 0))
        await asyncio.sleep(0.3)
        try:
            with pytest.raises(RedisTimeoutError):
                await asyncio.wait_for(lane.answer_whole(frame, end, within=600), 30)
        finally:
            await busy
        assert b'"people"' in snapshot_json(await store.snapshot(room))

        async def closed() -> bool:
            return int((await redis.info("clients"))["connected_clients"]) == clients

        await wait_until(closed, seconds=5)


@pytest.mark.parametrize("database", ["/3", "/0?db=3"])
async def test_the_lane_uses_the_urls_database(settings: Settings, database: str) -> None:
    url = settings.redis_url.rsplit("/", 1)[0] + database
    redis = connect(url)
    lane = ScriptLane(url)
    try:
        room = fresh_room_id("lane")
        await RoomStore(redis).put_room(room, room_update())  # in database 3, by the pool
        joined = await RoomStore(redis, lane=lane).enqueue(room)  # found there by the lane
        people = await redis.hgetall(f"wr:{{{room}}}:people")
        assert joined.position_id in people
        assert msgspec.json.decode(people[joined.position_id])
    finally:
        await lane.aclose()
        await redis.aclose()


def test_a_url_with_settings_of_its_own_is_left_to_the_pool() -> None:
    assert ScriptLane.serves("rediss://user:p%40ss@store:6380/2?db=3")
    assert not ScriptLane.serves("redis://store:6379/0?socket_timeout=30")
    assert not ScriptLane.serves("rediss://store:6380/0?ssl_cert_reqs=none")
    assert ScriptLane.for_url("redis://store:6379/0?socket_timeout=30") is None
    assert isinstance(ScriptLane.for_url("redis://store:6379/1"), ScriptLane)


async def test_a_lane_closed_while_it_connects_keeps_no_connection(
    redis: Redis, settings: Settings
) -> None:
    sha = await redis.script_load(ECHO)
    before = int((await redis.info("clients"))["connected_clients"])
    lane = ScriptLane(settings.redis_url)
    call = asyncio.ensure_future(lane.evalsha(sha, b"", 0, ("x",)))
    await asyncio.sleep(0)  # the connection is being opened
    await lane.aclose()
    with pytest.raises(RedisConnectionError):
        await call
    await asyncio.sleep(0.2)
    assert int((await redis.info("clients"))["connected_clients"]) == before


async def test_scripts_the_store_lost_are_loaded_once_for_all_the_calls_that_found_them_lost(
    own_store: tuple[ValkeyProc, Settings],
) -> None:
    """A worker's lease asks over a thousand rooms meet a store that restarted without its
    scripts: one SCRIPT LOAD (on the lane), not one per call, and every call answers."""
    _, settings = own_store
    redis = connect(settings.redis_url)
    lane = ScriptLane(settings.redis_url)
    try:
        store = RoomStore(redis, lane=lane, lane_scripts=WORKER_LANE_SCRIPTS)
        rooms = [fresh_room_id("lost") for _ in range(300)]
        for room in rooms:
            await store.put_room(room, room_update())
        await redis.script_flush()
        loads = await _script_loads(redis)
        fences = await store.lease_attempts(rooms, "relay", "w1", 60_000)
        assert all(fence > 0 for fence in fences)
        assert await _script_loads(redis) - loads == 1
        assert (await store.replicas("relay").mark_alive("w1", 60_000)).alive == 1
    finally:
        await lane.aclose()
        await redis.aclose()


async def _script_loads(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_script|load", {"calls": 0})["calls"])


async def test_a_script_that_timed_out_through_the_pool_is_not_sent_again(
    own_store: tuple[ValkeyProc, Settings],
) -> None:
    """The pool retries a broken connection, never a timeout: the script may have run
    (redis-py's retry takes timeouts too unless told otherwise). A script that counts its
    runs and holds the store longer than the client waits runs once."""
    _, settings = own_store
    redis = connect(settings.redis_url)
    slow = connect(settings.redis_url + "?socket_timeout=0.3")
    count_and_hold = "redis.call('INCR', KEYS[1])\n" + STALL
    try:
        turns = await stall_turns(redis, 1.2)
        with pytest.raises(RedisTimeoutError):
            await slow.register_script(count_and_hold)(keys=["wr:test:runs"], args=[turns, "x"])
        await asyncio.sleep(2.0)  # the held store answers again; a retry would have run
        assert await redis.get("wr:test:runs") == "1"
    finally:
        await slow.aclose()
        await redis.aclose()
