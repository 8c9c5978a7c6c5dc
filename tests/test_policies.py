"""Room policies end to end: real admission worker processes, the gateway over HTTP, the
JetStream stream, and `waitroom audit` reading it."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import nats
import pytest
from redis.asyncio import Redis

from shared import keys
from shared.events import Admitted, Enqueued, Event, LineOpened, PrequeuePlaced
from shared.policy import order_digest, shuffle_order
from shared.room import RoomUpdate
from shared.settings import Settings
from shared.store import RoomStore
from tests.helpers.api import ADMIN, RoomFactory, assert_error, assert_retry_after, bearer
from tests.helpers.servers import ROOT, ModuleProc, in_process_workers, room_events, settings_env
from tests.helpers.wait import wait_until
from waitroom.audit import audit

pytestmark = pytest.mark.slow

URL = "http://127.0.0.1:9/t"


def waitroom(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "waitroom.cli", *args],
        cwd=ROOT,
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def admission_worker(settings: Settings, tmp_path: Path, name: str) -> ModuleProc:
    env = settings_env(settings, WAITROOM_INSTANCE=name, WAITROOM_ADMISSION_TICK_MS="10")
    return ModuleProc("admission_worker", env, tmp_path / f"{name}.log").start()


async def outbox_drained(redis: Redis, room: str) -> bool:
    return int(await redis.xlen(keys.RoomKeys(room).outbox)) == 0


async def all_admitted(store: RoomStore, room: str, count: int) -> bool:
    return (await store.figures(room)).stat("admitted_total") >= count


async def test_best_fit_passes_nobody_over_max_skips_and_lanes_hold(
    settings: Settings, store: RoomStore, redis: Redis, tmp_path: Path
) -> None:
    """Big table parties behind small ones, the site finishing visits at random: small
    parties go past the big ones, but never more than max_skips times each, and neither a
    lane nor the room is ever over its units."""
    room = "bestfit-" + settings.instance
    lanes = {"counter": 4, "table": 8}
    await store.put_room(
        room,
        RoomUpdate(
            target_url=URL,
            max_active=12,
            lanes=lanes,
            admission_policy="best_fit",
            max_skips=2,
            release_rate=500.0,
            max_positions_per_ip=0,
            status="paused",
        ),
    )
    rng = random.Random(3)
    menu = [(8, "table"), (6, "table"), (2, "table"), (1, "table"), (3, "counter"),
            (1, "counter"), (2, "any"), (1, "any")]  # fmt: skip
    people = 150
    for _ in range(people):
        size, lane = rng.choice(menu)
        await store.enqueue(room, size=size, lane=lane)
    samples: list[tuple[int, int, int]] = []
    done = asyncio.Event()

    async def sample() -> None:
        stats = keys.RoomKeys(room).stats
        while not done.is_set():
            found = await redis.hmget(stats, "used_units", "lane_used:counter", "lane_used:table")
            samples.append(tuple(int(v or 0) for v in found))  # type: ignore[arg-type]
            await asyncio.sleep(0.002)

    async def finish_visits() -> None:
        """The protected site finishing visits at random, freeing units."""
        site = random.Random(7)
        while not done.is_set():
            admitted: list[str] = await redis.zrange(keys.RoomKeys(room).admitted, 0, -1)  # type: ignore[assignment]
            for position_id in admitted:
                if site.random() < 0.3:
                    await store.complete(room, position_id)
            await asyncio.sleep(0.01)

    tasks = [asyncio.create_task(sample()), asyncio.create_task(finish_visits())]
    worker = admission_worker(settings, tmp_path, "bf")
    try:
        await store.put_room(room, RoomUpdate(status="active"))
        await wait_until(lambda: all_admitted(store, room, people), seconds=90)
        await wait_until(lambda: outbox_drained(redis, room), seconds=20)
    finally:
        done.set()
        await asyncio.gather(*tasks)
        worker.stop()

    assert samples
    assert max(s[0] for s in samples) <= 12
    assert max(s[1] for s in samples) <= lanes["counter"]
    assert max(s[2] for s in samples) <= lanes["table"]
    events = await room_events(settings.nats_url, room)
    admitted = [e for e in events if isinstance(e, Admitted)]
    assert len(admitted) == people
    passes = Counter(pid for e in admitted for pid in e.passed)
    assert passes  # best_fit did let smaller parties past
    assert max(passes.values()) == 2  # someone was passed over as often as allowed, no more
    report = audit(room, events)
    assert report.ok, report.violations
    assert report.most_skips == 2
    assert report.peak_lanes == lanes  # each lane was full at times
    out = waitroom(settings, "audit", room)  # and the command says so too
    assert out.returncode == 0, out.stdout + out.stderr
    assert "OK: every admission followed the room's policy" in out.stdout


async def plant_swapped_admissions(nats_url: str, events: list[Event], room: str) -> None:
    """Publish a room's events again as another room's, with the first two people let in
    swapped from the first admission on: the second in line is let in while the first
    waits, and every later event of either is the other's. (Swapping only the two
    admissions plants more than one fault once the first has left before the second is
    let in, as a new room's first tick releases one person.)"""
    raw = [msgspec.to_builtins(e) for e in events]
    admitted = [r for r in raw if r["type"] == "admitted"]
    swap = {
        admitted[0]["position_id"]: admitted[1]["position_id"],
        admitted[1]["position_id"]: admitted[0]["position_id"],
    }
    for r in raw[raw.index(admitted[0]) :]:
        if r.get("position_id") in swap:
            r["position_id"] = swap[r["position_id"]]
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        for r in raw:
            r["room"] = room
            r["id"] = f"{room}:{r['seq']}"
            await js.publish(f"waitroom.{room}.{r['type']}", msgspec.json.encode(r))
    finally:
        await nc.close()


async def test_audit_passes_a_clean_run_and_finds_a_planted_inversion(
    settings: Settings, store: RoomStore, redis: Redis, tmp_path: Path
) -> None:
    room = "audit-" + settings.instance
    await store.put_room(
        room,
        RoomUpdate(target_url=URL, max_active=3, release_rate=200.0, max_positions_per_ip=0),
    )
    joined = [await store.enqueue(room) for _ in range(12)]
    worker = admission_worker(settings, tmp_path, "au")
    try:
        for person in joined:
            await wait_until(lambda p=person: in_state(store, room, p.position_id, "admitted"))
            await store.complete(room, person.position_id)
        await wait_until(lambda: outbox_drained(redis, room), seconds=20)
    finally:
        worker.stop()
    clean = waitroom(settings, "audit", room)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert f"room {room}:" in clean.stdout
    assert "12 admitted" in clean.stdout

    planted = "planted-" + settings.instance
    await plant_swapped_admissions(
        settings.nats_url, await room_events(settings.nats_url, room), planted
    )
    found = waitroom(settings, "audit", planted)
    assert found.returncode == 1, found.stdout + found.stderr
    assert "1 violation(s)" in found.stdout
    assert "inversion" in found.stdout
    nothing = waitroom(settings, "audit", "no-such-room-" + settings.instance)
    assert nothing.returncode == 2
    assert "no events" in nothing.stderr


async def in_state(store: RoomStore, room: str, position_id: str, state: str) -> bool:
    return (await store.status(room, position_id)).state == state


async def mint(client: httpx.AsyncClient, room: str, **body: Any) -> dict[str, Any]:
    r = await client.post(f"/v1/admin/rooms/{room}/invites", json=body, headers=ADMIN)
    assert r.status_code == 201, r.text
    found: dict[str, Any] = r.json()
    return found


async def test_invites_order_200_concurrent_joins_by_priority_then_arrival(
    client: httpx.AsyncClient, make_room: RoomFactory, settings: Settings
) -> None:
    room = await make_room(status="paused", max_active=500, release_rate=1000)
    invites = {p: await mint(client, room, priority=p, uses=20) for p in (1, 4, 9)}
    assert invites[9]["url"].endswith(f"/rooms/{room}?invite={invites[9]['invite']}")
    bodies = [{"invite": invites[p]["invite"]} for p in (1, 4, 9) for _ in range(20)]
    bodies += [{}] * 140
    random.Random(2).shuffle(bodies)

    async def join(body: dict[str, str]) -> dict[str, Any]:
        r = await client.post(f"/v1/rooms/{room}/enqueue", json=body)
        assert r.status_code == 201, r.text
        answer: dict[str, Any] = r.json()
        return answer

    joined = await asyncio.gather(*(join(b) for b in bodies))
    places = {j["position_id"]: (await place_of(client, room, j["token"])) for j in joined}
    assert sorted(places.values()) == list(range(1, 201))

    used_up = await client.post(f"/v1/rooms/{room}/enqueue", json=bodies_with(invites[4]))
    assert_error(used_up, 409, "invite_used_up")
    forged = invites[9]["invite"][:-2] + "xx"
    forged_join = await client.post(f"/v1/rooms/{room}/enqueue", json={"invite": forged})
    assert_error(forged_join, 400, "invite_invalid")
    spare = await mint(client, room, priority=5, uses=3)
    r = await client.delete(f"/v1/admin/rooms/{room}/invites/{spare['id']}", headers=ADMIN)
    assert r.json() == {"id": spare["id"], "revoked": True, "used": 0}
    revoked = await client.post(f"/v1/rooms/{room}/enqueue", json={"invite": spare["invite"]})
    assert_error(revoked, 409, "invite_revoked")
    gone = await client.delete(f"/v1/admin/rooms/{room}/invites/nope", headers=ADMIN)
    assert_error(gone, 404, "invite_not_found")

    async with in_process_workers(settings):  # the relay brings the joins onto the stream

        async def joins() -> dict[str, Enqueued]:
            events = await room_events(settings.nats_url, room, settle=0.2)
            found = {e.position_id: e for e in events if isinstance(e, Enqueued)}
            return found if len(found) == 200 else {}

        enqueued = await wait_until(joins, seconds=20)
        assert Counter(e.priority for e in enqueued.values()) == {0: 140, 1: 20, 4: 20, 9: 20}
        expected = sorted(
            enqueued, key=lambda pid: (-enqueued[pid].priority, enqueued[pid].arrival)
        )
        assert sorted(places, key=places.__getitem__) == expected  # priority, then arrival
        await client.put(f"/v1/admin/rooms/{room}", json={"status": "active"}, headers=ADMIN)

        async def everyone_in() -> list[str]:
            events = await room_events(settings.nats_url, room, settle=0.2)
            admitted = [e.position_id for e in events if isinstance(e, Admitted)]
            return admitted if len(admitted) == 200 else []

        assert await wait_until(everyone_in, seconds=30) == expected
    assert audit(room, await room_events(settings.nats_url, room)).ok


def bodies_with(invite: dict[str, Any]) -> dict[str, str]:
    return {"invite": invite["invite"]}


async def place_of(client: httpx.AsyncClient, room: str, token: str) -> int:
    r = await client.get(f"/v1/rooms/{room}/status", headers=bearer(token))
    assert r.status_code == 200, r.text
    return int(r.json()["position"])


async def test_passthrough_admits_at_once_below_capacity_and_queues_above(
    client: httpx.AsyncClient, make_room: RoomFactory, settings: Settings
) -> None:
    room = await make_room(queueing_method="passthrough", max_active=5, release_rate=100)
    first = [(await client.post(f"/v1/rooms/{room}/enqueue")).json() for _ in range(5)]
    for answer in first:  # straight through: admitted in the join's own answer
        assert answer["state"] == "admitted"
        assert answer["access_token"]
        assert f"/rooms/{room}/go?token=" in answer["redirect_url"]
    queued = [(await client.post(f"/v1/rooms/{room}/enqueue")).json() for _ in range(3)]
    assert [q["state"] for q in queued] == ["waiting"] * 3
    assert [q["position"] for q in queued] == [1, 2, 3]
    async with in_process_workers(settings):
        for answer in first[:2]:
            done = await client.post("/v1/session/complete", headers=bearer(answer["access_token"]))
            assert done.status_code == 200, done.text
        await wait_until(lambda: _state_is(client, room, queued[1]["token"], "admitted"))
        assert await _state_is(client, room, queued[2]["token"], "waiting")
        # room again, but someone still waits: a newcomer queues behind them
        assert (await client.post(f"/v1/rooms/{room}/enqueue")).json()["state"] == "waiting"
        events = await wait_until(lambda: admissions_on_stream(settings, room, 7), seconds=15)
    assert sum(isinstance(e, Admitted) and e.direct for e in events) == 5
    assert audit(room, events).ok


async def _state_is(client: httpx.AsyncClient, room: str, token: str, state: str) -> bool:
    r = await client.get(f"/v1/rooms/{room}/status", headers=bearer(token))
    return bool(r.json()["state"] == state)


async def test_reject_turns_people_away_only_when_full(
    client: httpx.AsyncClient, make_room: RoomFactory, settings: Settings
) -> None:
    room = await make_room(queueing_method="reject", max_active=4)
    inside = []
    for size in (1, 2):
        r = await client.post(f"/v1/rooms/{room}/enqueue", json={"size": size})
        assert r.status_code == 201, r.text
        assert r.json()["state"] == "admitted"
        inside.append(r.json())
    too_big = await client.post(f"/v1/rooms/{room}/enqueue", json={"size": 2})  # 1 unit free
    assert_error(too_big, 409, "room_full")
    assert_retry_after(too_big)
    fits = await client.post(f"/v1/rooms/{room}/enqueue", json={"size": 1})
    assert fits.json()["state"] == "admitted"
    assert_error(await client.post(f"/v1/rooms/{room}/enqueue"), 409, "room_full")
    figures = (await client.get(f"/v1/admin/rooms/{room}", headers=ADMIN)).json()["figures"]
    assert (figures["waiting"], figures["used_units"]) == (0, 4)  # nobody queued
    done = await client.post("/v1/session/complete", headers=bearer(inside[1]["access_token"]))
    assert done.status_code == 200
    again = await client.post(f"/v1/rooms/{room}/enqueue", json={"size": 2})
    assert again.json()["state"] == "admitted"  # room again: let in
    async with in_process_workers(settings):  # the relay brings the events onto the stream
        events = await wait_until(lambda: admissions_on_stream(settings, room, 4), seconds=15)
    report = audit(room, events)
    assert report.ok, report.violations
    assert report.at_the_door == 4


async def admissions_on_stream(settings: Settings, room: str, count: int) -> list[Event]:
    """The room's events once ``count`` admissions are on the stream, else nothing."""
    events = await room_events(settings.nats_url, room, settle=0.2)
    return events if sum(isinstance(e, Admitted) for e in events) >= count else []


async def test_the_pre_queue_opens_in_the_order_its_recorded_seed_draws(
    client: httpx.AsyncClient, make_room: RoomFactory, settings: Settings
) -> None:
    opens = datetime.now(UTC) + timedelta(seconds=2)
    room = await make_room(opens_at=opens.isoformat(), status="paused", release_rate=1000)
    early = [(await client.post(f"/v1/rooms/{room}/enqueue")).json() for _ in range(30)]
    for answer in early:
        assert (answer["state"], answer["position"], answer["eta_seconds"]) == (
            "waiting",
            None,
            None,
        )
        assert answer["opens_at"] == pytest.approx(opens.timestamp(), abs=0.001)
    figures = (await client.get(f"/v1/admin/rooms/{room}", headers=ADMIN)).json()["figures"]
    assert (figures["prequeue"], figures["waiting"]) == (30, 0)
    async with in_process_workers(settings):

        async def placed() -> list[Event]:
            events = await room_events(settings.nats_url, room, settle=0.2)
            return events if any(isinstance(e, PrequeuePlaced) for e in events) else []

        events = await wait_until(placed, seconds=15)
        (event,) = [e for e in events if isinstance(e, LineOpened)]
        late = [(await client.post(f"/v1/rooms/{room}/enqueue")).json() for _ in range(5)]
        drawn = shuffle_order(event.seed, [a["position_id"] for a in early])
        first = next(e for e in events if isinstance(e, Enqueued))
        assert first.draw_seed == event.seed  # the seed on the stream since the first join
        (batch,) = [e for e in events if isinstance(e, PrequeuePlaced)]
        assert (event.count, batch.placed, batch.order) == (30, 30, order_digest(drawn))
        order = [*drawn, *(a["position_id"] for a in late)]
        tokens = {a["position_id"]: a["token"] for a in [*early, *late]}
        places = [await place_of(client, room, tokens[pid]) for pid in order]
        assert places == list(range(1, 36))  # the draw, then later arrivals
        await client.put(f"/v1/admin/rooms/{room}", json={"status": "active"}, headers=ADMIN)

        async def everyone_in() -> bool:
            r = await client.get(f"/v1/admin/rooms/{room}", headers=ADMIN)
            return bool(r.json()["figures"]["admitted_total"] == 35)

        await wait_until(everyone_in, seconds=20)
        await asyncio.sleep(0.5)
    events = await room_events(settings.nats_url, room)
    assert [e.position_id for e in events if isinstance(e, Admitted)] == order
    report = audit(room, events)
    assert report.ok, report.violations
    assert report.openings == 1


async def test_a_closed_room_turns_newcomers_away(
    client: httpx.AsyncClient, make_room: RoomFactory
) -> None:
    room = await make_room(closes_at=(datetime.now(UTC) + timedelta(seconds=1)).isoformat())
    inside = (await client.post(f"/v1/rooms/{room}/enqueue")).json()
    await asyncio.sleep(1.1)
    assert_error(await client.post(f"/v1/rooms/{room}/enqueue"), 409, "room_closed")
    again = await client.post(f"/v1/rooms/{room}/enqueue", headers=bearer(inside["token"]))
    assert again.status_code == 200  # a place already held is answered, not refused
    assert again.json()["position_id"] == inside["position_id"]
