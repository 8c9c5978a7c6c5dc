"""The room policies in the scripts, against a real valkey-server: the Lua rules agree with
their Python mirror (shared/policy.py, which `waitroom audit` uses), and each policy's
join and admission do what the room's settings say."""

from __future__ import annotations

import asyncio
import random
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis

from shared import keys
from shared.errors import (
    InvalidBody,
    InviteExpired,
    InviteInvalid,
    InviteNotFound,
    InviteRevoked,
    InviteUsedUp,
    PartyTooLarge,
    RoomClosed,
    RoomFull,
    UnknownLane,
)
from shared.events import Enqueued, LineOpened, PrequeuePlaced, decode
from shared.policy import Capacity, draw_score, order_digest, shuffle_order
from shared.room import RoomUpdate, epoch_ms
from shared.scripts import register_script, with_prelude
from shared.store import RoomStore

URL = "http://127.0.0.1:9/t"
HOLDER = "policy-test"


def new_room() -> str:
    return "pol-" + secrets.token_hex(5)


async def make_room(store: RoomStore, **config: Any) -> str:
    room = new_room()
    await store.put_room(room, RoomUpdate(target_url=URL, max_positions_per_ip=0, **config))
    return room


async def take_lease(redis: Redis, room: str) -> None:
    """Hold the room's admission lease as HOLDER with fence 1 (no worker runs here)."""
    await redis.set(keys.RoomKeys(room).lease("admission"), f"{HOLDER}:1", px=60_000)


async def outbox_events(redis: Redis, room: str) -> list[Any]:
    entries: list[tuple[str, dict[str, str]]] = await redis.xrange(  # type: ignore[assignment]
        keys.RoomKeys(room).outbox
    )
    return [decode(fields["e"]) for _, fields in entries]


# --- the Lua rules agree with their Python mirror ----------------------------------------

SEATS = """
local out = {}
for _, c in ipairs(cjson.decode(ARGV[2])) do
  redis.call('DEL', K_STATS)
  for name, units in pairs(c.seated) do
    redis.call('HSET', K_STATS, 'lane_used:' .. name, units)
  end
  local cap = capacity({ max_active = tostring(c.max), lanes = cjson.encode(c.lanes) }, c.used)
  local seat, short = seat_for(cap, c.lane, c.size)
  local competing = {}
  for _, other in ipairs({ '', 'a', 'b', 'c' }) do
    competing[#competing + 1] = competes(cap, { lane = c.lane }, short, other)
  end
  out[#out + 1] = { seat or cjson.null, short or cjson.null, competing }
end
return cjson.encode(out)
"""


def random_case(rng: random.Random) -> dict[str, Any]:
    lanes = {n: rng.randint(1, 8) for n in "abc" if rng.random() < 0.6}
    seated = {n: rng.randint(0, units) for n, units in lanes.items()}
    top = rng.randint(1, 20)
    return {
        "max": top,
        "used": rng.randint(0, top),
        "lanes": lanes,
        "seated": seated,
        "lane": rng.choice(["", "any", "a", "b", "c", "z"]),
        "size": rng.randint(1, 10),
    }


async def test_seating_in_lua_is_the_rule_the_audit_checks(redis: Redis) -> None:
    rng = random.Random(5)
    cases = [random_case(rng) for _ in range(600)]
    script = register_script(redis, "seats", *with_prelude("seats.lua", SEATS))
    room = new_room()
    raw = await script(keys=keys.RoomKeys(room).all(), args=[room, msgspec.json.encode(cases)])
    answers = msgspec.json.decode(raw)
    outcomes = set()
    for case, (seat, short, competing) in zip(cases, answers, strict=True):
        cap = Capacity(case["max"], case["lanes"], case["used"], dict(case["seated"]))
        assert (seat, short) == cap.seat_for(case["lane"], case["size"]), case
        expected = [cap.competes(case["lane"], short, other) for other in ("", "a", "b", "c")]
        assert competing == expected, case
        outcomes.add(short or ("lane" if seat else "room"))
    assert outcomes == {"never", "lane", "total", "room"}  # the cases reach every branch
    await redis.delete(*keys.RoomKeys(room).all())


async def test_the_pre_queue_goes_into_the_line_in_its_draw_in_batches(
    store: RoomStore, redis: Redis
) -> None:
    opens = datetime.now(UTC) + timedelta(seconds=30)
    room = await make_room(store, opens_at=opens, max_active=1, status="paused")
    await store.create_invite(room, "inv-prequeue", priority=2, uses=3, expires_at_ms=0)
    before = await store.enqueue(room)  # a room already waiting when opens_at was set:
    k = keys.RoomKeys(room)
    await redis.zadd(k.line, {"already-waiting": 1})  # (a stand-in, ahead of everyone)
    early = [await store.enqueue(room) for _ in range(37)]
    early += [await store.enqueue(room, invite_id="inv-prequeue") for _ in range(3)]
    early.insert(0, before)
    assert all(p.prequeue and p.position is None for p in early)
    assert {p.opens_at for p in early} == {epoch_ms(opens)}
    joins = [e for e in await outbox_events(redis, room) if isinstance(e, Enqueued)]
    seed = joins[0].draw_seed
    assert seed
    assert not any(e.draw_seed for e in joins[1:])  # made once, on the first join
    assert [e.draw for e in joins] == [draw_score(seed, e.position_id, e.priority) for e in joins]
    await take_lease(redis, room)
    assert await store.open_line(room, HOLDER, 1, 60_000) == 0  # not due yet
    await store.put_room(room, RoomUpdate(opens_at=datetime.now(UTC) - timedelta(seconds=1)))
    late = await store.enqueue(room)  # after opens_at: into the line, behind the pre-queue
    assert not late.prequeue
    assert await store.open_line(room, HOLDER, 1, 60_000, batch=15) == 26
    tick = await store.scripts.admit(keys=k.all(), args=[room, HOLDER, 1, 60_000, 10, "s"])
    assert msgspec.json.decode(tick)["opening"] is True  # nobody admitted until all placed
    assert msgspec.json.decode(tick)["admitted"] == {}
    assert await store.open_line(room, HOLDER, 1, 60_000, batch=15) == 11
    assert await store.open_line(room, HOLDER, 1, 60_000, batch=15) == 0
    vips = [p.position_id for p in early if p.priority == 2]
    plain = [p.position_id for p in early if p.priority == 0]
    drawn = shuffle_order(seed, vips) + shuffle_order(seed, plain)
    line = await redis.zrange(k.line, 0, -1)
    assert line == ["already-waiting", *drawn, late.position_id]
    for place, position_id in enumerate(drawn, 2):
        view = await store.status(room, position_id)
        assert (view.position, view.prequeue) == (place, False)
    events = await outbox_events(redis, room)
    (opened,) = [e for e in events if isinstance(e, LineOpened)]
    last = max(p.arrival for p in early)
    assert (opened.seed, opened.count, opened.base) == (seed, 41, last - 41 + 1)
    batches = [e for e in events if isinstance(e, PrequeuePlaced)]
    assert [b.placed for b in batches] == [15, 15, 11]
    assert [b.order for b in batches] == [
        order_digest(drawn[:15]),
        order_digest(drawn[15:30]),
        order_digest(drawn[30:]),
    ]
    assert await redis.hget(k.stats, "draw_seed") is None  # the next pre-queue draws anew
    # the same events, replayed into an empty store, give the same room
    await redis.zrem(k.line, "already-waiting")  # the stand-in, never on the stream
    digest = await store.digest(room)
    entries: list[tuple[str, dict[str, str]]] = await redis.xrange(k.outbox)  # type: ignore[assignment]
    await redis.delete(*k.all())
    await store.replay({room: [fields["e"].encode() for _, fields in entries]})
    await store.end_recovery([room], set())
    assert await store.digest(room) == digest


# --- joining by the room's policy --------------------------------------------------------


async def test_room_put_checks_the_policy_fields_together(store: RoomStore) -> None:
    soon = datetime.now(UTC) + timedelta(hours=1)
    with pytest.raises(InvalidBody) as refused:
        await make_room(store, opens_at=soon, closes_at=soon - timedelta(minutes=1))
    assert refused.value.detail == "closes_at must be later than opens_at"
    room = await make_room(store, lanes={"counter": 8, "table": 24}, opens_at=soon)
    config, _ = await store.put_room(room, RoomUpdate(admission_policy="best_fit"))
    assert config.lanes == {"counter": 8, "table": 24}  # kept by a partial update
    assert config.opens_at == soon.replace(microsecond=soon.microsecond // 1000 * 1000)
    config, _ = await store.put_room(room, RoomUpdate(lanes={}, opens_at=None))
    assert (config.lanes, config.opens_at, config.admission_policy) == ({}, None, "best_fit")


async def test_lanes_take_their_own_names_and_parties_that_fit_one(store: RoomStore) -> None:
    room = await make_room(store, lanes={"counter": 4, "table": 12}, status="paused")
    assert (await store.enqueue(room, lane="counter", size=4)).lane == "counter"
    assert (await store.enqueue(room)).lane == "any"  # no lane named: any
    with pytest.raises(UnknownLane):
        await store.enqueue(room, lane="terrace")
    with pytest.raises(PartyTooLarge):
        await store.enqueue(room, lane="counter", size=5)
    assert (await store.enqueue(room, lane="any", size=9)).size == 9
    plain = await make_room(store)
    assert (await store.enqueue(plain, lane="any")).lane == ""
    with pytest.raises(UnknownLane):
        await store.enqueue(plain, lane="counter")


async def test_nobody_new_joins_once_the_room_closes(store: RoomStore) -> None:
    room = await make_room(store, closes_at=datetime.now(UTC) + timedelta(milliseconds=300))
    inside = await store.enqueue(room)
    await asyncio.sleep(0.4)
    with pytest.raises(RoomClosed):
        await store.enqueue(room)
    # a place already in the line stays, and one the store lost comes back from its token
    assert (await store.status(room, inside.position_id)).state == "waiting"
    restored = await store.enqueue(
        room, position_id="restored-1", restore_arrival=inside.arrival + 1, incarnation=""
    )
    assert restored.state == "waiting"


async def test_an_invite_gives_its_priority_as_often_as_it_may(store: RoomStore) -> None:
    room = await make_room(store, status="paused")
    await store.enqueue(room)
    invite = await store.create_invite(room, "inv-two-uses", priority=4, uses=2, expires_at_ms=0)
    assert (invite.used, invite.revoked) == (0, False)
    first = await store.enqueue(room, invite_id="inv-two-uses")
    assert (first.priority, first.position) == (4, 1)  # ahead of the earlier arrival
    second = await store.enqueue(room, invite_id="inv-two-uses")
    assert (second.priority, second.position) == (4, 2)
    with pytest.raises(InviteUsedUp):
        await store.enqueue(room, invite_id="inv-two-uses")
    with pytest.raises(InviteInvalid):
        await store.enqueue(room, invite_id="never-minted")
    again = await store.enqueue(room, position_id=first.position_id, invite_id="inv-two-uses")
    assert again.position_id == first.position_id  # a retry spends no use
    expiring = int(datetime.now(UTC).timestamp() * 1000) + 300
    await store.create_invite(room, "inv-expiring", priority=2, uses=9, expires_at_ms=expiring)
    await store.create_invite(room, "inv-revoked", priority=2, uses=9, expires_at_ms=0)
    assert (await store.revoke_invite(room, "inv-revoked")).revoked
    assert (await store.revoke_invite(room, "inv-revoked")).revoked  # twice is fine
    with pytest.raises(InviteRevoked):
        await store.enqueue(room, invite_id="inv-revoked")
    assert (await store.enqueue(room, invite_id="inv-expiring")).priority == 2
    await asyncio.sleep(0.4)
    with pytest.raises(InviteExpired):
        await store.enqueue(room, invite_id="inv-expiring")
    with pytest.raises(InviteNotFound):
        await store.revoke_invite(room, "inv-unknown")
    with pytest.raises(InvalidBody):
        await store.create_invite(room, "inv-past", priority=1, uses=1, expires_at_ms=expiring)
    assert (await store.figures(room)).invites == 3


async def test_passthrough_and_reject_admit_at_the_door_while_there_is_room(
    store: RoomStore,
) -> None:
    for method in ("passthrough", "reject"):
        room = await make_room(store, queueing_method=method, max_active=3)
        first = await store.enqueue(room, size=2)
        assert first.state == "admitted"  # at once, no worker involved
        assert (await store.enqueue(room)).state == "admitted"
        if method == "passthrough":
            assert (await store.enqueue(room)).state == "waiting"  # full: a line
        else:
            with pytest.raises(RoomFull):
                await store.enqueue(room)
        await store.complete(room, first.position_id)
        latecomer = await store.enqueue(room)
        # room again, but in passthrough someone waits: the line goes first
        assert latecomer.state == ("waiting" if method == "passthrough" else "admitted")


async def test_a_lottery_draws_only_from_the_highest_priority(
    store: RoomStore, redis: Redis
) -> None:
    room = await make_room(store, queueing_method="random", release_rate=1000.0, status="paused")
    await store.create_invite(room, "inv-lottery1", priority=3, uses=5, expires_at_ms=0)
    plain = [await store.enqueue(room) for _ in range(30)]
    vips = {(await store.enqueue(room, invite_id="inv-lottery1")).position_id for _ in range(5)}
    await store.put_room(room, RoomUpdate(status="active", max_active=8))
    await take_lease(redis, room)
    admitted: list[str] = []
    while len(admitted) < 8:  # a new room's bucket starts with one release
        admitted += (await store.admit(room, HOLDER, 1, 60_000)).position_ids
        await asyncio.sleep(0.01)
    assert set(admitted[:5]) == vips  # every priority-3 place before any other
    rest = admitted[5:]
    assert len(rest) == 3
    order = [p.position_id for p in plain]
    assert [order.index(pid) for pid in rest] != [0, 1, 2]  # drawn, not taken in order


async def test_strict_lets_nobody_take_the_units_a_party_ahead_waits_for(
    store: RoomStore, redis: Redis
) -> None:
    """A party of 4 waits for the table lane (2 of its 4 seats taken). A couple behind it
    who joined ``any`` would fit the 2 free table seats (the counter has 1): under strict
    they wait too, rather than take the seats the party ahead waits for."""
    room = await make_room(
        store, lanes={"table": 4, "counter": 2}, max_active=6, release_rate=1000.0
    )
    await take_lease(redis, room)
    seated = [
        await store.enqueue(room, lane="table", size=2),
        await store.enqueue(room, lane="counter", size=1),
    ]
    admitted: list[str] = []
    while len(admitted) < len(seated):
        admitted += (await store.admit(room, HOLDER, 1, 60_000)).position_ids
        await asyncio.sleep(0.01)
    party = await store.enqueue(room, lane="table", size=4)
    couple = await store.enqueue(room, lane="any", size=2)
    for _ in range(3):
        await asyncio.sleep(0.01)
        assert (await store.admit(room, HOLDER, 1, 60_000)).position_ids == []
    assert (await store.status(room, couple.position_id)).state == "waiting"
    assert (await store.status(room, party.position_id)).rank == 0
