"""A gateway's line read with plain commands in one transaction (shared/store/line_read.py)
answers what line_snapshot.lua answers, refuses what it refuses, and holds one moment of
the room while joins race in."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis
from redis.exceptions import InvalidResponse

from gateway.line_book import build_line
from shared.errors import RoomNotFound, RoomRecovering
from shared.room import RoomUpdate
from shared.settings import Settings
from shared.store import RoomStore
from shared.store.lane import ScriptLane
from shared.store.line_read import line_reads, parse_line
from shared.store.raw_reads import read_transaction
from shared.store.views import LineSnapshot
from tests.helpers.histories import URL, every_kind_of_state, put_rooms, racing_joins

DB = 3
"""A database of the test valkey other than the default: the lane's SELECT answer comes
first on its connection, and the read must pass it."""


@pytest.fixture
async def stores(settings: Settings) -> AsyncIterator[tuple[RoomStore, RoomStore]]:
    """The same database through the script (no lane) and through the transaction."""
    from shared.redis_conn import connect

    url = settings.redis_url.rsplit("/", 1)[0] + f"/{DB}"
    redis: Redis = connect(url)
    lane = ScriptLane(url)
    try:
        yield RoomStore(redis), RoomStore(redis, lane=lane)
    finally:
        await lane.aclose()
        await redis.aclose()


def places(snapshot: LineSnapshot) -> list[tuple[str, float]]:
    """The line's places in its order, as a gateway builds them."""
    return list(build_line(snapshot)[0].items())


def _fields(snapshot: LineSnapshot) -> dict[str, Any]:
    fields = msgspec.structs.asdict(snapshot)
    del fields["now"], fields["line"]  # (cjson writes an empty line as {})
    fields["places"] = places(snapshot)
    return fields


async def paced_rooms(store: RoomStore) -> list[str]:
    """A room following its site (a pace set), one with priorities and people gone, and
    an empty one."""
    inst = secrets.token_hex(3)
    paced, ranked, empty = f"paced-{inst}", f"ranked-{inst}", f"empty-{inst}"
    await store.put_room(
        paced,
        RoomUpdate(
            target_url=URL, max_positions_per_ip=0, auto_release=True, target_latency_ms=800
        ),
    )
    [fence] = await store.lease_acquire_many([paced], "admission", "t", 600_000)
    await store.set_pace(paced, "t", fence, 600_000, 3.25)
    for _ in range(4):
        await store.enqueue(paced)
    await store.put_room(
        ranked, RoomUpdate(target_url=URL, max_positions_per_ip=0, status="paused")
    )
    joined = [await store.enqueue(ranked, priority=n % 3) for n in range(9)]
    for person in joined[:2]:
        await store.leave(ranked, person.position_id)
    await store.put_room(empty, RoomUpdate(target_url=URL, max_positions_per_ip=0))
    return [paced, ranked, empty]


async def test_a_line_read_in_one_transaction_is_the_scripts_line(
    stores: tuple[RoomStore, RoomStore],
) -> None:
    """Field for field what line_snapshot.lua answers, over rooms holding admissions (the
    observed pace), people who left the line (the rate of giving up), priorities, a pace set by the
    site's controller, and an empty line; an unknown room is refused alike."""
    store, laned = stores
    rooms = [*await every_kind_of_state(store), *await paced_rooms(store)]
    for room in rooms:
        by_script, read = await store.line_snapshot(room), await laned.line_snapshot(room)
        assert abs(read.now - by_script.now) < 5_000
        script_fields, read_fields = _fields(by_script), _fields(read)
        for name in ("rate", "gone_rate"):  # (cjson writes 14 digits; the read has all)
            assert read_fields.pop(name) == pytest.approx(script_fields.pop(name), rel=1e-12)
        assert read_fields == script_fields
    taken = [await laned.line_snapshot(room) for room in rooms]
    history, paced, ranked, empty = taken[0], taken[3], taken[4], taken[5]
    assert places(history)
    assert history.rate > 0
    assert paced.pace == 3.25
    assert paced.auto_release
    assert len(places(ranked)) == 7
    assert ranked.status == "paused"
    assert ranked.gone_rate > 0
    assert places(empty) == []
    for either in (store, laned):
        with pytest.raises(RoomNotFound):
            await either.line_snapshot(f"none-{secrets.token_hex(3)}")
    rebuilt = rooms[0]  # wiped as a rebuild from nothing begins: recovering, not missing
    await store.mark_recovering([rebuilt], owner="relay")
    await store.restore(rebuilt, None)
    for either in (store, laned):
        with pytest.raises(RoomRecovering):
            await either.line_snapshot(rebuilt)


async def test_a_line_read_cut_short_is_refused(stores: tuple[RoomStore, RoomStore]) -> None:
    """An answer that is not whole is refused, never taken for a shorter line."""
    store, laned = stores
    room = f"cut-{secrets.token_hex(3)}"
    await put_rooms(store, [room])
    for _ in range(5):
        await store.enqueue(room)
    assert laned.lane is not None
    reads = line_reads(room)
    raw, pos, end = await read_transaction(laned.lane, reads, within=10)
    assert len(places(parse_line(raw, pos, end, len(reads)))) == 5
    for cut in (end - 9, end - 40):
        with pytest.raises(InvalidResponse):
            parse_line(raw[:cut], pos, cut, len(reads))


async def test_a_line_read_among_racing_joins_holds_one_moment(
    stores: tuple[RoomStore, RoomStore],
) -> None:
    """Lines read while joins race in: each is one moment of the room, its event counter
    agreeing with its length (a gateway applies the events after that counter to it: a
    counter from another moment would add or lose people)."""
    store, laned = stores
    room = f"race-{secrets.token_hex(3)}"
    await put_rooms(store, [room])
    base = (await laned.line_snapshot(room)).event_seq
    async with racing_joins(store, room):
        seen = []
        for _ in range(20):
            line = await laned.line_snapshot(room)
            assert len(places(line)) == line.event_seq - base
            seen.append(line.event_seq)
        assert len(set(seen)) > 10  # the joins went on between the reads
