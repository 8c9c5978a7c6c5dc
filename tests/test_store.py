"""The store against a real valkey-server: room_put decides in Lua, every failure reaches
callers as a waitroom error, and Lua errors point at the files' own lines."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis

from shared import keys
from shared.errors import (
    BadEntryId,
    BadRole,
    InvalidBody,
    LeaseLost,
    StoreUnavailable,
)
from shared.redis_conn import connect
from shared.room import RoomUpdate
from shared.scripts import (
    ROLE_SCRIPTS,
    SCRIPT_NAMES,
    WINDOW_SCRIPTS,
    ScriptError,
    register_script,
    script_source,
    with_prelude,
)
from shared.settings import Settings
from shared.store import RoomStore, require_room
from shared.store.calls import mapped
from tests.helpers.servers import ValkeyProc
from waitroom.processes import free_port

URL = "http://127.0.0.1:9/t"


def new_room() -> str:
    return "st-" + secrets.token_hex(5)


def line_of(file: str, text: str) -> int:
    """The line number of the only line of a Lua file holding ``text``."""
    body = (resources.files("shared") / "lua" / file).read_text(encoding="utf-8")
    found = [n for n, line in enumerate(body.split("\n"), 1) if text in line]
    assert len(found) == 1, (file, text, found)
    return found[0]


# --- room_put: merge and rules in one script ---------------------------------------------


async def test_concurrent_partial_updates_never_lose_each_other(store: RoomStore) -> None:
    room = new_room()
    await store.put_room(room, RoomUpdate(target_url=URL))
    updates = [
        RoomUpdate(max_active=7),
        RoomUpdate(title="Launch day"),
        RoomUpdate(release_rate=3.5),
        RoomUpdate(message="Hold tight"),
        RoomUpdate(max_queue_size=900),
        RoomUpdate(status="paused"),
    ]
    await asyncio.gather(*(store.put_room(room, u) for u in updates * 5))
    found = await store.get_config(room)
    assert found is not None
    config, version = found
    assert (config.max_active, config.title, config.release_rate) == (7, "Launch day", 3.5)
    assert (config.message, config.max_queue_size, config.status) == ("Hold tight", 900, "paused")
    assert version == 1 + len(updates) * 5


async def test_rules_across_fields_refuse_the_merged_config_and_write_nothing(
    store: RoomStore,
) -> None:
    room = new_room()
    config, created = await store.put_room(room, RoomUpdate(target_url=URL))
    assert created
    assert (config.heartbeat_interval, config.heartbeat_timeout) == (10, 60)
    outbox = await store.outbox_length(room)
    # on its own heartbeat_interval=60 is fine; merged onto the stored timeout of 60 it is not
    with pytest.raises(InvalidBody) as refused:
        await store.put_room(room, RoomUpdate(heartbeat_interval=60))
    assert refused.value.detail == "heartbeat_timeout must be longer than heartbeat_interval"
    assert await store.outbox_length(room) == outbox
    assert await require_room(store, room) == config
    # both at once is fine
    config, created = await store.put_room(
        room, RoomUpdate(heartbeat_interval=60, heartbeat_timeout=90)
    )
    assert not created
    assert (config.heartbeat_interval, config.heartbeat_timeout) == (60, 90)


async def test_a_new_room_needs_a_target_url(store: RoomStore) -> None:
    room = new_room()
    with pytest.raises(InvalidBody) as refused:
        await store.put_room(room, RoomUpdate(max_active=5))
    assert refused.value.detail == "target_url is required to create a room"
    assert await store.get_config(room) is None
    assert room not in await store.rooms()
    with pytest.raises(InvalidBody):  # bounds of one field, checked before the script
        await store.put_room(room, RoomUpdate(target_url=URL, max_active=0))
    assert await store.get_config(room) is None


async def test_a_stored_config_breaking_a_rule_still_reads(store: RoomStore, redis: Redis) -> None:
    """A config stored before a rule existed: reading it works, the next update must fix it."""
    room = new_room()
    await store.put_room(room, RoomUpdate(target_url=URL))
    await redis.hset(keys.RoomKeys(room).cfg, "heartbeat_timeout", "5")  # older rules
    config = await require_room(store, room)
    assert (config.heartbeat_interval, config.heartbeat_timeout) == (10, 5)
    assert (await store.figures(room)).config["heartbeat_timeout"] == "5"
    with pytest.raises(InvalidBody):
        await store.put_room(room, RoomUpdate(title="still broken"))
    config, _ = await store.put_room(room, RoomUpdate(heartbeat_timeout=30))
    assert config.heartbeat_timeout == 30


# --- script error codes -----------------------------------------------------------------


def event(**fields: Any) -> bytes:
    return msgspec.json.encode({"ts": time.time(), "v": 1, **fields})


async def test_every_kind_of_script_refusal_reaches_the_caller_as_its_error(
    store: RoomStore,
) -> None:
    room = new_room()
    await store.put_room(room, RoomUpdate(target_url=URL, status="paused"))
    person = await store.enqueue(room)
    with pytest.raises(BadRole):
        await store.lease_acquire_many([room], "janitor", "h", 1000)
    seq = person.event_seq + 1
    ghost = event(type="admitted", seq=seq, id=f"{room}:x:{seq}", position_id="ghost")
    stop = (await store.replay({room: [ghost]}))[room].stop
    assert stop is not None
    assert (stop.kind, stop.id) == ("unknown_place", f"{room}:x:{seq}")
    odd = event(type="teleported", seq=seq, id=f"{room}:x:{seq}", position_id=person.position_id)
    stop = (await store.replay({room: [odd]}))[room].stop
    assert stop is not None
    assert (stop.kind, stop.type) == ("unknown_type", "teleported")
    late = event(type="left", seq=seq + 5, id=f"{room}:x:{seq + 5}", position_id="p")
    stop = (await store.replay({room: [late]}))[room].stop
    assert stop is not None
    assert (stop.kind, stop.after, stop.next) == ("gap", person.event_seq, seq + 5)
    assert (await store.status(room, person.position_id)).event_seq == person.event_seq


async def test_a_deletion_lost_in_an_accepted_gap_leaves_nothing_of_the_old_room(
    store: RoomStore, redis: Redis
) -> None:
    """A stream that lost a room's deletion, replayed with ``accept_gap``: the room made
    anew after it starts empty, as the deletion had left it. The old room's people are
    not carried into the new one (their records name no incarnation of their own)."""
    room = new_room()
    await store.put_room(room, RoomUpdate(target_url=URL, status="paused"))
    await store.enqueue(room)
    await store.delete_room(room)
    await store.put_room(room, RoomUpdate(target_url=URL, status="paused"))
    kept = await store.enqueue(room)
    entries: list[tuple[str, dict[str, str]]] = await redis.xrange(  # type: ignore[assignment]
        keys.RoomKeys(room).outbox
    )
    raw = [fields["e"].encode() for _, fields in entries]
    types = [msgspec.json.decode(e)["type"] for e in raw]
    assert types == ["room_updated", "enqueued", "room_deleted", "room_updated", "enqueued"]
    copy = new_room()
    result = (await store.replay({copy: raw[:2] + raw[3:]}, mode="accept_gap"))[copy]
    assert (result.applied, result.stop, len(result.gaps)) == (4, None, 1)
    figures = await store.figures(copy)
    assert figures.waiting == 1
    assert (await store.status(copy, kept.position_id)).position == 1
    assert await store.digest(copy) == await store.digest(room)


async def test_a_replay_failing_part_way_leaves_its_counters_at_what_it_applied(
    store: RoomStore, redis: Redis
) -> None:
    """A replay writes the room's event counter and the joins' counters once, after its
    loop: a store error part way (here a torn key under the sixth join) must still leave
    them at the five joins applied before it, or running the replay again would apply
    those five a second time."""
    room = new_room()
    await store.put_room(room, RoomUpdate(target_url=URL, status="paused"))
    for _ in range(5):
        await store.enqueue(room)
    await store.enqueue(room, ip_hash="torn")
    entries: list[tuple[str, dict[str, str]]] = await redis.xrange(  # type: ignore[assignment]
        keys.RoomKeys(room).outbox
    )
    raw = [fields["e"].encode() for _, fields in entries]
    assert [msgspec.json.decode(e)["type"] for e in raw] == ["room_updated"] + ["enqueued"] * 6
    fifth_arrival = msgspec.json.decode(raw[5])["arrival"]
    copy = new_room()
    await redis.set(keys.RoomKeys(copy).ips, "not a hash")  # the sixth join's HINCRBY fails
    with pytest.raises(ScriptError, match="WRONGTYPE"):
        await store.replay({copy: raw})
    stats = await redis.hmget(keys.RoomKeys(copy).stats, "event_seq", "enqueued_total", "arrival")
    assert stats == ["6", "5", str(fifth_arrival)]
    await redis.delete(keys.RoomKeys(copy).ips)
    again = (await store.replay({copy: raw}))[copy]
    assert (again.applied, again.skipped) == (1, 6)  # only the sixth; the rest were there
    assert (await redis.hget(keys.RoomKeys(copy).stats, "enqueued_total")) == "6"


# --- Lua errors point at the files ------------------------------------------------------


async def test_every_script_compiles(redis: Redis) -> None:
    for name in SCRIPT_NAMES + WINDOW_SCRIPTS + ROLE_SCRIPTS:
        source, _map = script_source(name)
        assert await redis.script_load(source)


async def test_an_error_in_the_prelude_points_at_lib_lua(store: RoomStore, redis: Redis) -> None:
    room = new_room()
    await store.put_room(room, RoomUpdate(target_url=URL, status="paused"))
    person = await store.enqueue(room)
    await redis.hset(keys.RoomKeys(room).people, person.position_id, "{torn record")
    with pytest.raises(ScriptError) as failed:
        await store.status(room, person.position_id)
    where = line_of("_lib.lua", "local p = cjson.decode(raw)")
    assert f"_lib.lua:{where}:" in str(failed.value)
    assert str(failed.value).startswith("status.lua failed:")
    assert "user_script" not in str(failed.value)


async def test_an_error_in_a_script_points_at_its_own_file(store: RoomStore) -> None:
    room = new_room()
    await store.put_room(room, RoomUpdate(target_url=URL))
    with pytest.raises(ScriptError) as failed:
        await store.replay({room: [b"{not json"]})
    where = line_of("replay.lua", "cjson.decode(ARGV[i])")
    assert f"replay.lua:{where}:" in str(failed.value)


async def test_a_deliberate_error_in_new_lua_points_at_its_line(redis: Redis) -> None:
    body = "local room = ROOM\nlocal nothing = room.nothing\nreturn nothing.here\n"
    script = register_script(redis, "broken", *with_prelude("broken.lua", body))
    with pytest.raises(ScriptError) as failed, mapped(script):
        await script(keys=keys.RoomKeys("x").all(), args=["x"])
    message = str(failed.value)
    assert "broken.lua:3:" in message
    assert "@broken.lua:3." in message  # the position the server appends, too


# --- keys outside the rooms -------------------------------------------------------------


async def test_replica_marks_and_the_draining_list(store: RoomStore) -> None:
    replicas = store.replicas("admission")
    holder = "st-" + secrets.token_hex(3)
    assert (await replicas.mark_alive(holder, 60_000)).alive >= 1
    until = await replicas.alive_until(holder)
    assert until is not None
    assert 0 < until - await replicas.server_ms() <= 60_000
    assert await replicas.alive(holder)
    await replicas.leave(holder)
    assert await replicas.alive_until(holder) is None

    room = new_room()
    await store.put_room(room, RoomUpdate(target_url=URL))
    await store.delete_room(room)
    assert room not in await store.rooms()
    assert room in await store.draining_rooms()
    assert not await store.finish_draining(room)  # room_updated and room_deleted wait
    entries = await store.outbox_batch(room, 10)
    assert [msgspec.json.decode(raw)["type"] for _, raw in entries] == [
        "room_updated",
        "room_deleted",
    ]
    ids = [entry_id for entry_id, _ in entries]
    with pytest.raises(LeaseLost):  # only the relay lease's holder trims
        await store.outbox_delivered(room, ids, holder="r", fence=1, lease_ms=1)
    [fence] = await store.lease_acquire_many([room], "relay", "r", 60_000)
    await store.outbox_delivered(room, ids, holder="r", fence=fence, lease_ms=60_000)
    assert await store.finish_draining(room)
    assert room not in await store.draining_rooms()


async def test_a_delivered_batch_is_trimmed_through_its_last_entry_only(
    store: RoomStore, redis: Redis
) -> None:
    """The relay trims a delivered batch by its last entry id: the events written after
    the batch was read stay (entry ids only grow), and only the fence's holder trims."""
    room = new_room()
    await store.put_room(room, RoomUpdate(target_url=URL, max_positions_per_ip=0))
    for _ in range(5):
        await store.enqueue(room)
    batch = await store.outbox_batch(room, 4)
    for _ in range(3):  # written while the batch is on its way
        await store.enqueue(room)
    with pytest.raises(LeaseLost):
        await store.outbox_delivered_through(room, batch, holder="r", fence=1, lease_ms=1)
    [fence] = await store.lease_acquire_many([room], "relay", "r", 60_000)

    async def trim(entries: list[tuple[str, str]]) -> int:
        return await store.outbox_delivered_through(
            room, entries, holder="r", fence=fence, lease_ms=60_000
        )

    assert await trim(batch) == 4
    left = await store.outbox_batch(room, 100)
    assert len(left) == 5  # the batch's ids are gone; the two after it and the three new
    assert all(entry not in batch for entry in left)
    assert [msgspec.json.decode(raw)["seq"] for _, raw in left] == [5, 6, 7, 8, 9]
    assert await trim(batch) == 0  # run again (its answer lost): gone already, not a change
    assert len(await store.outbox_batch(room, 100)) == 5
    with pytest.raises(BadEntryId):
        await trim([("x", "{}")])


async def test_a_batch_read_from_another_outbox_trims_nothing(
    store: RoomStore, redis: Redis
) -> None:
    """A store that failed over to a replica behind it holds the history up to some entry
    and then its own, made with a clock behind: ids older than the batch's, among them, or
    the batch's very ids with other events. Trimming the batch read from the old outbox
    must drop none of them (an XTRIM through its last id would)."""
    room = new_room()
    await store.put_room(room, RoomUpdate(target_url=URL, max_positions_per_ip=0))
    for _ in range(3):
        await store.enqueue(room)
    batch = await store.outbox_batch(room, 4)
    (first, first_event), (last, _) = batch[0], batch[-1]
    [fence] = await store.lease_acquire_many([room], "relay", "r", 60_000)

    async def trim(entries: list[tuple[str, str]]) -> int:
        return await store.outbox_delivered_through(
            room, entries, holder="r", fence=fence, lease_ms=60_000
        )

    outbox = keys.RoomKeys(room).outbox
    first_ms = int(first.split("-")[0])
    replicas: list[list[tuple[str, str]]] = [
        [(f"{first_ms - 5}-0", "fork 1"), (f"{first_ms}-7", "fork 2")],  # older, and among
        [(first, first_event), (f"{last.split('-')[0]}-99", "fork")],  # the first, then own
        [(first, first_event), *[(entry_id, "fork") for entry_id, _ in batch[1:]]],  # same ids
    ]
    for replica in replicas:
        await redis.delete(outbox)
        for entry_id, event in replica:
            await redis.xadd(outbox, {"e": event}, id=entry_id)
        assert await trim(batch) == -1
        assert await redis.xlen(outbox) == len(replica)


async def test_an_unreachable_store_is_store_unavailable_everywhere() -> None:
    redis = connect(f"redis://127.0.0.1:{free_port()}/0", wait=0.5)
    store = RoomStore(redis)
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: store.enqueue("r"),
        lambda: store.statuses("r", ["a", "b"]),
        lambda: store.expire("r", "h", 1, 1000),
        lambda: store.lease_acquire_many(["r"], "admission", "h", 1000),
        lambda: store.put_room("r", RoomUpdate(title="x")),
        lambda: store.get_config("r"),
        lambda: store.rooms(),
        lambda: store.largest_outbox(),
        lambda: store.outbox_batch("r", 10),
        lambda: store.finish_draining("r"),
        lambda: store.replay({"r": [b"{}"]}),
        lambda: store.end_recovery(["r"], set()),
        lambda: store.replicas("admission").alive_until("h"),
    ]
    try:
        for call in calls:
            with pytest.raises(StoreUnavailable):
                await call()
        assert await store.ping() is False
    finally:
        await redis.aclose()


async def test_a_places_record_holds_only_its_arrival_even_in_a_burst_of_joins(
    store: RoomStore, redis: Redis
) -> None:
    """A waiting place's record keeps only what differs from the usual: for a plain join,
    its arrival. Joins faster than ten a millisecond move ``arrival`` (tenths of a ms)
    ahead of the clock, and records used to keep the join's own millisecond then, 23 bytes
    more each, that nothing read. A record stored so is still read, and written again
    without it."""
    room = new_room()
    await store.put_room(room, RoomUpdate(target_url=URL, max_positions_per_ip=0))
    stats, people = keys.RoomKeys(room).stats, keys.RoomKeys(room).people
    ahead = int((time.time() + 10) * 10_000)  # as 100,000 joins in one second leave it
    await redis.hset(stats, "arrival", ahead)
    joined = [await store.enqueue(room) for _ in range(20)]
    assert [p.arrival for p in joined] == list(range(ahead + 1, ahead + 21))
    records = [msgspec.json.decode(r) for r in await redis.hvals(people)]
    assert {tuple(r) for r in records} == {("arrival",)}
    old = joined[0].position_id
    record = msgspec.json.decode(str(await redis.hget(people, old)))
    await redis.hset(people, old, msgspec.json.encode({**record, "joined": 1}))
    assert (await store.status(room, old)).state == "waiting"
    assert (await store.leave(room, old)).state == "left"
    assert "joined" not in msgspec.json.decode(str(await redis.hget(people, old)))


async def test_party_size_follows_capacity_down_unless_given(store: RoomStore) -> None:
    room = new_room()
    config, _ = await store.put_room(room, RoomUpdate(target_url=URL, max_active=4))
    assert (config.max_active, config.max_party_size) == (4, 4)
    config, _ = await store.put_room(room, RoomUpdate(max_active=100, max_party_size=50))
    assert config.max_party_size == 50
    config, _ = await store.put_room(room, RoomUpdate(max_active=20))
    assert config.max_party_size == 20
    with pytest.raises(InvalidBody) as refused:
        await store.put_room(room, RoomUpdate(max_active=5, max_party_size=8))
    assert refused.value.detail == "max_party_size must be at most max_active"
    assert (await require_room(store, room)).max_party_size == 20


async def test_pipelined_script_calls_run_once_each_after_the_store_forgot_its_scripts(
    own_store: tuple[ValkeyProc, Settings],
) -> None:
    """Pipelines of script calls skip redis-py's SCRIPT EXISTS round trip; a store that
    forgot its scripts (a restart) answers NOSCRIPT, and those calls, which did not run,
    run once after the scripts are loaded again."""
    _, settings = own_store
    redis = await connect(settings.redis_url)
    try:
        store = RoomStore(redis)
        rooms = [new_room() for _ in range(3)]
        for room in rooms:
            await store.put_room(room, RoomUpdate(target_url=URL))
        fences = await store.lease_acquire_many(rooms, "relay", "h", 60_000)
        assert all(fences)
        before = await redis.info("commandstats")
        await redis.script_flush()
        assert await store.lease_acquire_many(rooms, "relay", "h", 60_000) == fences  # renewed
        after = await redis.info("commandstats")
        assert (
            "cmdstat_script|exists" not in after
            or after["cmdstat_script|exists"]["calls"]
            == before.get("cmdstat_script|exists", {"calls": 0})["calls"]
        )
        assert await store.lease_acquire_many(rooms, "relay", "other", 60_000) == [0, 0, 0]
    finally:
        await redis.aclose()
