"""People waiting are answered from the gateway's copy of the line, kept by the room's
events: the answers equal the store's, a gap or a stalled relay sends people back to the
store, and heartbeats answered from memory still keep places alive."""

from __future__ import annotations

import asyncio
import json
import random
import time

import httpx
import pytest
from redis.asyncio import Redis

from gateway.line_book import LineBook, RoomLine
from shared.keyring import KeyRing
from shared.nats_link import NatsLink
from shared.room import RoomUpdate
from shared.settings import Settings
from shared.store import RoomStore
from shared.store.views import LineSnapshot
from shared.tokens import TokenService
from tests.helpers.api import bearer, create_room, fresh_room_id, place
from tests.helpers.lines import book, settled
from tests.helpers.servers import GatewayServer, in_process_workers
from tests.helpers.wait import wait_until

URL = "http://127.0.0.1:9/t"


async def positions(c: httpx.AsyncClient, room: str, people: list[dict[str, str]]) -> list[int]:
    return [int((await place(c, room, p["token"]))["position"]) for p in people]


async def store_positions(store: RoomStore, room: str, people: list[dict[str, str]]) -> list[int]:
    return [(await store.status(room, p["position_id"])).rank + 1 for p in people]


async def from_memory(
    store: RoomStore,
    gw: GatewayServer,
    c: httpx.AsyncClient,
    room: str,
    people: list[dict[str, str]],
) -> list[int]:
    """Everyone's position, every one of them answered from the gateway's memory. A line
    may load again now and then (a check against the store on a busy machine sees it
    behind for a moment), so a round with an answer from the store is asked again."""
    for _ in range(3):
        await wait_until(lambda: settled(store, gw, room))
        before = book(gw).answered
        answers = await positions(c, room, people)
        if book(gw).answered - before == len(people):
            return answers
    raise AssertionError("three rounds in a row asked the store for someone")


async def test_answers_from_memory_equal_the_stores_as_the_line_moves(
    settings: Settings, store: RoomStore
) -> None:
    async with GatewayServer(settings) as gw, httpx.AsyncClient(base_url=gw.url) as c:
        room = fresh_room_id()
        await create_room(c, room, status="paused", release_rate=5, max_active=100)
        people = [(await c.post(f"/v1/rooms/{room}/enqueue")).json() for _ in range(30)]
        async with in_process_workers(settings):  # the relay carries the events
            await place(c, room, people[0]["token"])  # the first ask starts the line
            await wait_until(lambda: settled(store, gw, room))
            assert await from_memory(store, gw, c, room, people) == list(range(1, 31))
            rng = random.Random(7)
            leaving = rng.sample(people, 8)
            for p in leaving:
                await c.post(f"/v1/rooms/{room}/leave", headers=bearer(p["token"]))
            await c.put(
                f"/v1/admin/rooms/{room}",
                json={"status": "active"},
                headers={"Authorization": f"Bearer {settings.admin_key}"},
            )

            async def someone_admitted() -> bool:
                states = [(await store.status(room, p["position_id"])).state for p in people]
                return states.count("waiting") < len(people) - len(leaving)

            await wait_until(someone_admitted, seconds=30)  # a few admissions at 5/s
            await c.put(
                f"/v1/admin/rooms/{room}",
                json={"status": "paused"},
                headers={"Authorization": f"Bearer {settings.admin_key}"},
            )
            await wait_until(lambda: settled(store, gw, room))
            waiting = [
                p
                for p in people
                if p not in leaving
                and (await store.status(room, p["position_id"])).state == "waiting"
            ]
            assert 0 < len(waiting) < 22
            answers = await from_memory(store, gw, c, room, waiting)
            assert answers == await store_positions(store, room, waiting)
            answer = await place(c, room, waiting[0]["token"])
            assert answer["total"] == len(waiting)
            assert answer["room_status"] == "paused"


async def test_a_gap_in_the_events_makes_the_line_load_again(
    settings: Settings, store: RoomStore
) -> None:
    async with GatewayServer(settings) as gw, httpx.AsyncClient(base_url=gw.url) as c:
        room = fresh_room_id()
        await create_room(c, room, status="paused")
        people = [(await c.post(f"/v1/rooms/{room}/enqueue")).json() for _ in range(5)]
        async with in_process_workers(settings):
            await place(c, room, people[0]["token"])
            await wait_until(lambda: settled(store, gw, room))
            line = book(gw).lines[room]
            loads = line.loads
            # an event out of turn, as if some were lost on the way to this gateway (not
            # published: on the stream it would be a history the relay must catch up with)
            fake = {
                "type": "left",
                "seq": line.event_seq + 5,
                "position_id": people[0]["position_id"],
            }
            book(gw).heard(room, json.dumps(fake).encode())
            await wait_until(lambda: _async(line.loads > loads))
            await wait_until(lambda: settled(store, gw, room))
            # the made-up departure was not believed: the store's line stands
            assert await positions(c, room, people) == [1, 2, 3, 4, 5]


async def _async(value: bool) -> bool:
    return value


async def test_without_the_relay_the_line_is_not_trusted(
    settings: Settings, store: RoomStore
) -> None:
    async with GatewayServer(settings) as gw, httpx.AsyncClient(base_url=gw.url) as c:
        room = fresh_room_id()
        await create_room(c, room, status="paused")
        a, b = [(await c.post(f"/v1/rooms/{room}/enqueue")).json() for _ in range(2)]
        async with in_process_workers(settings):
            await place(c, room, b["token"])
            await wait_until(lambda: settled(store, gw, room))
        # no relay now: a leave reaches the store but no event reaches the gateway
        await c.post(f"/v1/rooms/{room}/leave", headers=bearer(a["token"]))

        async def moved_up() -> bool:
            return bool((await place(c, room, b["token"]))["position"] == 1)

        await wait_until(moved_up, seconds=5)  # answered from the store once the lag shows


@pytest.mark.slow
async def test_heartbeats_answered_from_memory_keep_places_alive(
    settings: Settings, redis: Redis, store: RoomStore
) -> None:
    async with GatewayServer(settings) as gw, httpx.AsyncClient(base_url=gw.url) as c:
        room = fresh_room_id()
        await create_room(c, room, status="paused", heartbeat_interval=1, heartbeat_timeout=3)
        talker, silent = [(await c.post(f"/v1/rooms/{room}/enqueue")).json() for _ in range(2)]
        async with in_process_workers(settings):
            await place(c, room, talker["token"])
            await wait_until(lambda: settled(store, gw, room))
            before = book(gw).answered
            for _ in range(8):
                r = await c.post(f"/v1/rooms/{room}/heartbeat", headers=bearer(talker["token"]))
                assert r.json()["state"] == "waiting"
                await asyncio.sleep(0.8)
            assert book(gw).answered - before >= 6  # mostly from memory
            assert (await store.status(room, talker["position_id"])).state == "waiting"
            assert (await store.status(room, silent["position_id"])).state == "expired"


async def test_a_visit_shown_for_a_place_in_line_is_answered_at_once_as_admitted(
    settings: Settings, store: RoomStore
) -> None:
    """A place put back in line from its queue token (its admission lost with the store)
    is admitted again when the site shows its access token; the gateway that made that
    change answers the next status from the store's new state, not from its copy of the
    line (no relay runs here: nothing else would tell it)."""
    async with GatewayServer(settings) as gw, httpx.AsyncClient(base_url=gw.url) as c:
        room = fresh_room_id()
        await create_room(c, room, status="paused")
        me = (await c.post(f"/v1/rooms/{room}/enqueue")).json()
        assert (await place(c, room, me["token"]))["state"] == "waiting"
        await wait_until(lambda: settled(store, gw, room))
        assert me["position_id"] in book(gw).lines[room].places
        service = TokenService(
            KeyRing(settings.keys_dir), issuer=settings.issuer, audience=settings.audience
        )
        try:
            now = int(time.time())
            access = await service.sign_access(room, me["position_id"], iat=now, exp=now + 300)
        finally:
            service.close()
        r = await c.post("/v1/session/heartbeat", headers=bearer(access))
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "active"
        assert (await place(c, room, me["token"]))["state"] == "active"
        assert me["position_id"] not in book(gw).lines[room].places


async def loading_book(settings: Settings, store: RoomStore, room: str) -> LineBook:
    """A LineBook on the test store whose line of ``room`` is waiting for its load (its
    NATS link is never started: a load reads the store alone)."""
    link = NatsLink(settings.nats_url, stream=settings.stream_name, duplicate_window=600, name="t")
    lines = LineBook(store, link)
    lines.lines[room] = RoomLine(room)
    return lines


async def test_an_event_heard_while_loading_that_asks_for_a_fresh_start_loads_again(
    settings: Settings, store: RoomStore
) -> None:
    """A pre-queue placed (or the room made again) while the line was being read: the
    load applies it after the snapshot, starts over, and the line ends loaded; it was left
    unloaded before, the store answering everyone until the line went idle (300 s)."""
    room = fresh_room_id()
    await store.put_room(room, RoomUpdate(target_url=URL, max_positions_per_ip=0))
    for _ in range(3):
        await store.enqueue(room)
    seq = await store.event_seq(room)
    lines = await loading_book(settings, store, room)
    line = lines.lines[room]
    assert line.hear(json.dumps({"type": "prequeue_placed", "seq": seq + 1}).encode())
    await lines._load(room)
    assert line.synced
    assert line.loads == 2
    assert len(line.places) == 3


async def test_a_room_update_heard_while_loading_outlasts_the_config_read_before_it(
    settings: Settings, store: RoomStore
) -> None:
    """The room became a lottery while its line was being read: the update, heard then and
    applied after the snapshot, is what the line follows; the config read before it used
    to be written over it (people then told a rank in a room where rank is no place)."""
    room = fresh_room_id()
    await store.put_room(room, RoomUpdate(target_url=URL, max_positions_per_ip=0))
    await store.enqueue(room)
    seq = await store.event_seq(room)
    lines = await loading_book(settings, store, room)
    line = lines.lines[room]
    update = {"type": "room_updated", "seq": seq + 1, "config": {"queueing_method": "random"}}
    assert line.hear(json.dumps(update).encode())
    await lines._load(room)
    assert line.synced
    assert not line.plain


class CountingStore(RoomStore):
    """The store, counting the lines read from it."""

    line_reads = 0

    async def line_snapshot(self, room: str) -> LineSnapshot:
        self.line_reads += 1
        return await super().line_snapshot(room)


async def test_a_line_dropped_while_waiting_its_turn_to_load_is_not_read(
    settings: Settings, redis: Redis
) -> None:
    """Lines load one at a time (each may hold a million places); one dropped while it
    waited (gone idle, its room deleted) is not read from the store when its turn comes."""
    store = CountingStore(redis)
    room = fresh_room_id()
    await store.put_room(room, RoomUpdate(target_url=URL, max_positions_per_ip=0))
    lines = await loading_book(settings, store, room)
    async with lines._one_load:  # another line's load holds the turn
        waiting = asyncio.create_task(lines._load(room))
        await asyncio.sleep(0.05)
        await lines._drop(room)
    await waiting
    assert store.line_reads == 0
    lines.lines[room] = RoomLine(room)  # (and one not dropped is read)
    await lines._load(room)
    assert store.line_reads == 1
