"""The event log stays true when the data store does not: it comes back older than the
stream (an RDB snapshot reloaded), it dies under load before its outboxes drained, the
stream has a gap. Servers are really killed (-9) and restarted."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from shared import keys
from shared.errors import RoomRecovering
from shared.events import Admitted, Enqueued, Event, Expired, Extended, decode
from shared.keyring import KeyRing
from shared.redis_conn import connect
from shared.settings import Settings
from shared.store import RoomStore
from shared.tokens import TokenService
from tests.helpers.api import ADMIN, METRICS, assert_error, bearer, create_room, figures, place
from tests.helpers.load import Load, crowd_client
from tests.helpers.servers import (
    GatewayServer,
    ModuleProc,
    ValkeyProc,
    room_events,
    run_recover,
    settings_env,
)
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.slow

TOLERATED = ('"store_unavailable"', '"room_recovering"')
"""What a client may be told while the store restarts or a room is caught up."""


Workers = Callable[..., list[ModuleProc]]


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    """Makes an admission and a heartbeat worker (not started); all stopped at the end."""
    made: list[ModuleProc] = []

    def make(settings: Settings, **extra: str) -> list[ModuleProc]:
        env = settings_env(settings, WAITROOM_LEASE_MS="1000", **extra)
        procs = [
            ModuleProc("admission_worker", env | {"WAITROOM_INSTANCE": "a1"}, tmp_path / "a1.log"),
            ModuleProc("heartbeat_worker", env | {"WAITROOM_INSTANCE": "h1"}, tmp_path / "h1.log"),
        ]
        made.extend(procs)
        return procs

    yield make
    for proc in made:
        proc.stop()


async def drained(c: httpx.AsyncClient, room: str) -> bool:
    """Whether the room's outbox is empty (not while the room is being rebuilt)."""
    r = await c.get(f"/v1/admin/rooms/{room}", headers=ADMIN)
    if r.status_code == 503:
        assert_error(r, 503, "room_recovering")
        return False
    assert r.status_code == 200, r.text
    return bool(r.json()["figures"]["outbox"] == 0)


async def event_seq(settings: Settings, room: str) -> int:
    """The room's event counter in the store."""
    redis = connect(settings.redis_url)
    try:
        return int(await redis.hget(keys.RoomKeys(room).stats, "event_seq") or 0)
    finally:
        await redis.aclose()


def assert_one_history(events: list[Event], event_seq: int) -> None:
    """Each change on the stream once, seq rising one by one to the store's counter, and
    nobody admitted twice."""
    assert [e.seq for e in events] == list(range(1, event_seq + 1))
    assert len({e.id for e in events}) == len(events)
    admitted = [e.position_id for e in events if isinstance(e, Admitted)]
    assert len(admitted) == len(set(admitted))


async def history_after_catch_up(
    settings: Settings, room: str, procs: list[ModuleProc], logs: Path
) -> list[Event]:
    """The room's events on the stream, once the workers (their logs in ``logs``) have
    stopped: a relay caught the store up, and the stream holds one history."""
    for w in procs:
        w.stop()
    said = "".join((logs / f"{n}.log").read_text() for n in ("a1", "h1"))
    assert "store_behind_stream" in said
    events = await room_events(settings.nats_url, room, stream=settings.stream_name)
    assert_one_history(events, await event_seq(settings, room))
    return events


async def test_a_store_rolled_back_to_an_older_snapshot_is_caught_up_from_the_stream(
    own_store: tuple[ValkeyProc, Settings], tmp_path: Path, workers: Workers
) -> None:
    valkey, settings = own_store
    procs = workers(settings)
    room = "roll-" + settings.instance
    async with GatewayServer(settings) as gw, crowd_client(gw.url) as c:
        await create_room(
            c, room, max_active=30, release_rate=15, heartbeat_timeout=600, claim_window=600
        )
        for w in procs:
            w.start()
        await wait_until(lambda: drained(c, room), seconds=30)  # the relay is at work
        load = Load(c, [room])
        runner = asyncio.create_task(load.run(400, spacing=0.02))
        try:
            await asyncio.sleep(2)
            redis = connect(settings.redis_url)
            await redis.save()  # the snapshot the store will come back from
            await redis.aclose()
            shutil.copy(valkey.data_dir / "dump.rdb", tmp_path / "older.rdb")
            at_snapshot = await figures(c, room)
            await asyncio.sleep(2.5)  # more joins and admissions, delivered to the stream
            await wait_until(lambda: drained(c, room), seconds=20)
            ahead = await figures(c, room)
            assert ahead["enqueued_total"] > at_snapshot["enqueued_total"]
            assert ahead["admitted_total"] > at_snapshot["admitted_total"]

            valkey.kill()
            shutil.copy(tmp_path / "older.rdb", valkey.data_dir / "dump.rdb")
            # the store is back, older than the stream (started off the loop: the gateway
            # in this loop keeps answering meanwhile)
            await asyncio.to_thread(valkey.start)
            await asyncio.sleep(4)  # the load goes on against it
        finally:
            load.stop.set()
            await runner
        assert all(any(t in e for t in TOLERATED) for e in load.errors), load.errors[:3]
        await c.put(f"/v1/admin/rooms/{room}", headers=ADMIN, json={"status": "paused"})
        await wait_until(lambda: drained(c, room), seconds=30)
        after = await figures(c, room)
        assert after["enqueued_total"] >= ahead["enqueued_total"]  # nothing it had is lost
        statuses = [await place(c, room, p["token"]) for _room, p in load.people]
    events = await history_after_catch_up(settings, room, procs, tmp_path)
    arrival = {e.position_id: e.arrival for e in events if isinstance(e, Enqueued)}
    assert all(p["position_id"] in arrival for _room, p in load.people)  # every join recorded
    waiting = sorted(
        (s["position"], arrival[s["position_id"]]) for s in statuses if s["state"] == "waiting"
    )
    assert waiting  # people still wait: their places kept in arrival order
    assert [a for _pos, a in waiting] == sorted(a for _pos, a in waiting)


async def test_a_rolled_back_stores_outbox_read_before_its_catch_up_is_never_published(
    own_store: tuple[ValkeyProc, Settings], tmp_path: Path, workers: Workers
) -> None:
    """The relay reads a room's outbox, then finds the store behind the stream and catches
    it up: the events read are a fork's (the same seqs and ids as the stream's, another
    history), and the catch-up puts them on top as new events. Published as read, they
    would be taken: their ids reuse the stream's, but the duplicate window is long past,
    and no expected-sequence check covers a seq the stream already holds. The stream
    must hold one history all the same."""
    valkey, base = own_store
    settings = base.with_changes(stream_duplicate_window=1)  # ids forgotten after 1 s
    procs = workers(settings, WAITROOM_DUPLICATE_WINDOW="1")
    room = "fork-" + settings.instance
    async with GatewayServer(settings) as gw, crowd_client(gw.url) as c:
        await create_room(c, room, status="paused", heartbeat_timeout=600)

        async def join(count: int) -> list[dict[str, Any]]:
            answers = [await c.post(f"/v1/rooms/{room}/enqueue") for _ in range(count)]
            assert all(r.status_code == 201 for r in answers), answers[-1].text
            return [r.json() for r in answers]

        for w in procs:
            w.start()
        early = await join(10)
        await wait_until(lambda: drained(c, room), seconds=30)
        redis = connect(settings.redis_url)
        await redis.save()  # the snapshot the store will come back from
        await redis.aclose()
        shutil.copy(valkey.data_dir / "dump.rdb", tmp_path / "older.rdb")
        lost = await join(20)  # on the stream, not in the older store
        await wait_until(lambda: drained(c, room), seconds=30)
        stream_seq = await event_seq(settings, room)
        for w in procs:
            w.stop()  # no relay verifies the store while the fork is made

        valkey.kill()
        shutil.copy(tmp_path / "older.rdb", valkey.data_dir / "dump.rdb")
        await asyncio.to_thread(valkey.start)
        await wait_until(lambda: _answers(c, room), seconds=20)
        fork = await join(5)  # seqs the stream holds, made again with other people
        forked_seq = await event_seq(settings, room)
        assert forked_seq < stream_seq
        await asyncio.sleep(3)  # past the stream's duplicate window

        for w in procs:
            w.start()  # the relay reads the fork's outbox, then catches the room up
        await wait_until(lambda: drained(c, room), seconds=30)
        for person in early + lost + fork:  # every join kept, in the order they came
            assert (await place(c, room, person["token"]))["state"] == "waiting"
        positions = [(await place(c, room, p["token"]))["position"] for p in early + lost + fork]
        assert positions == sorted(positions)
    events = await history_after_catch_up(settings, room, procs, tmp_path)
    joined = [e.position_id for e in events if isinstance(e, Enqueued)]
    assert sorted(joined) == sorted(p["position_id"] for p in early + lost + fork)


async def access_token(settings: Settings, room: str, person: dict[str, Any]) -> str:
    """An access token for this person's place, signed with the gateway's keys (as if
    they had been admitted a moment ago)."""
    service = TokenService(
        KeyRing(settings.keys_dir), issuer=settings.issuer, audience=settings.audience
    )
    try:
        now = int(time.time())
        return await service.sign_access(room, person["position_id"], iat=now, exp=now + 600)
    finally:
        service.close()


async def _answers(c: httpx.AsyncClient, room: str) -> bool:
    """Whether the gateway answers about the room again (the store is back)."""
    return (await c.get(f"/v1/admin/rooms/{room}", headers=ADMIN)).status_code == 200


async def test_a_room_being_rebuilt_is_told_as_recovering_never_as_missing(
    own_store: tuple[ValkeyProc, Settings],
) -> None:
    """A catch-up or `waitroom recover` with no snapshot to start from begins with the room
    wiped: for that moment it has no config. Every read of it answers 503 room_recovering
    (it is there, ask again soon), not 404 room_not_found (the admin API's reads and the
    challenge said it was gone, and its page told a person in line there was no such
    room); the listing and the metrics go on without it."""
    _valkey, settings = own_store
    room = "rebuilt-" + settings.instance
    redis = connect(settings.redis_url)
    store = RoomStore(redis)
    try:
        async with GatewayServer(settings) as gw, crowd_client(gw.url) as c:
            await create_room(c, room, status="paused")
            me = (await c.post(f"/v1/rooms/{room}/enqueue")).json()
            assert await store.mark_recovering([room], owner="relay") == {}
            await store.restore(room, None)  # from nothing, as the rebuild starts
            for path in (f"/v1/admin/rooms/{room}", f"/v1/admin/rooms/{room}/digest"):
                assert_error(await c.get(path, headers=ADMIN), 503, "room_recovering")
            for path in (f"/v1/rooms/{room}/status", f"/v1/rooms/{room}/challenge"):
                answer = await c.get(path, headers=bearer(me["token"]))
                assert_error(answer, 503, "room_recovering")
            page = await c.get(f"/rooms/{room}", headers={"accept": "text/html"})
            assert page.status_code == 503  # "one moment": never "there is no such room"
            assert "One moment, please" in page.text, page.text[:300]
            go = await c.get(
                f"/rooms/{room}/go", params={"token": me["token"]}, headers={"accept": "text/html"}
            )
            assert go.status_code == 503  # not "this link doesn't work, join again"
            assert "One moment, please" in go.text, go.text[:300]
            listing = await c.get("/v1/admin/rooms", headers=ADMIN)
            assert listing.status_code == 200, listing.text
            assert room not in [r["room"] for r in listing.json()["rooms"]]
            metrics = await c.get("/metrics", headers=METRICS)
            assert metrics.status_code == 200, metrics.text
            with pytest.raises(RoomRecovering):  # a site's report, in a session heartbeat
                await store.report_latency(room, me["position_id"], count=1, p50=1, p95=2, top=3)
            # a site verifying a visitor's access token hears it from the token alone (as
            # while the store is away), not a 503 that would turn the visitor away
            access = await access_token(settings, room, me)
            verified = await c.post("/v1/session/verify", json={"token": access, "room": room})
            assert verified.status_code == 200, verified.text
            assert verified.json()["checked"] == "offline"
            assert verified.json()["active"] is True
            await store.mark_recovering([room], on=False, owner="relay")
            assert_error(
                await c.get(f"/v1/admin/rooms/{room}", headers=ADMIN), 404, "room_not_found"
            )
    finally:
        await redis.aclose()


async def test_a_store_killed_before_its_outbox_drained_is_rebuilt_consistent(
    own_store: tuple[ValkeyProc, Settings], tmp_path: Path, workers: Workers
) -> None:
    valkey, settings = own_store
    procs = workers(settings)
    rooms = [f"crash-{i}-{settings.instance}" for i in range(2)]
    async with GatewayServer(settings) as gw, crowd_client(gw.url) as c:
        for room in rooms:
            await create_room(
                c, room, max_active=20, release_rate=30, heartbeat_timeout=600, claim_window=600
            )
        for w in procs:
            w.start()
        for room in rooms:  # the relay is at work (room_updated delivered)
            await wait_until(lambda room=room: drained(c, room), seconds=30)
        load = Load(c, rooms)
        runner = asyncio.create_task(load.run(300, spacing=0.01))
        try:
            await asyncio.sleep(3)
            valkey.kill()  # mid-flood, outboxes not drained
        finally:
            load.stop.set()
            await runner
        valkey.start()  # empty
        out = run_recover(settings)
        for room in rooms:
            assert f"{room}: store had seq 0, stream has " in out
        for room in rooms:
            fig = await figures(c, room)
            assert fig["used_units"] == fig["admitted"] + fig["active"]  # one unit each
            digest = await c.get(f"/v1/admin/rooms/{room}/digest", headers=ADMIN)
            assert digest.status_code == 200
        # whoever holds an access token and shows it is not sent back into the line, even
        # when the store lost their admission before it reached the stream
        assert load.access
        room_of = {p["position_id"]: room for room, p in load.people}
        token_of = {p["position_id"]: p["token"] for _room, p in load.people}
        for position_id, access in load.access.items():
            room, token = room_of[position_id], token_of[position_id]
            await place(c, room, token)  # a join lost too comes back from the queue token
            seen = await c.post("/v1/session/heartbeat", headers=bearer(access))
            assert seen.status_code in (200, 409), seen.text  # 409: the visit ended since
            assert (await place(c, room, token))["state"] != "waiting", position_id
        again = run_recover(settings)
        assert "(0 applied" in again
        for room in rooms:  # the rooms work on: the line moves again
            await c.put(f"/v1/admin/rooms/{room}", headers=ADMIN, json={"status": "active"})
            assert (await c.post(f"/v1/rooms/{room}/enqueue")).status_code == 201
        for room in rooms:
            await wait_until(lambda room=room: drained(c, room), seconds=20)
    for w in procs:
        w.stop()
    for room in rooms:
        events = await room_events(settings.nats_url, room, stream=settings.stream_name)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert len({e.id for e in events}) == len(events)


async def test_a_gap_in_the_stream_is_reported_and_the_room_works_after_accepting_it(
    own_store: tuple[ValkeyProc, Settings], tmp_path: Path, workers: Workers
) -> None:
    import nats

    valkey, settings = own_store
    procs = workers(settings)
    room = "gap-" + settings.instance
    async with GatewayServer(settings) as gw, httpx.AsyncClient(base_url=gw.url, timeout=30) as c:
        await create_room(c, room, status="paused", heartbeat_timeout=600)
        people = [(await c.post(f"/v1/rooms/{room}/enqueue")).json() for _ in range(6)]
        for w in procs:
            w.start()
        await wait_until(lambda: drained(c, room), seconds=20)
        for w in procs:
            w.stop()
        nc = await nats.connect(settings.nats_url)
        js = nc.jetstream()
        on_stream = []
        sub = await js.subscribe(f"waitroom.{room}.>", stream=settings.stream_name)
        for _ in range(7):
            msg = await sub.next_msg(timeout=5)
            on_stream.append(msg.metadata.sequence.stream)
        await sub.unsubscribe()
        await js.delete_msg(settings.stream_name, on_stream[3])  # event seq 4 is gone
        await nc.close()

        valkey.kill()
        valkey.start()  # empty
        out = run_recover(settings, status=3)
        assert f"{room}: store had seq 0, stream has 7" in out
        assert "seqs 4..4 are missing on the stream (the room has 3)" in out
        assert "--accept-gap" in out
        stuck = await c.post(f"/v1/rooms/{room}/enqueue")
        assert_error(stuck, 503, "room_recovering")

        out = run_recover(settings, "--accept-gap")
        assert "gaps accepted: 4..4" in out
        fig = await figures(c, room)
        assert fig["waiting"] == 5  # the place whose join was lost is not there
        lost = people[2]  # the third to join: event 4
        back = await c.post(f"/v1/rooms/{room}/heartbeat", headers=bearer(lost["token"]))
        assert back.json()["position"] == 3  # put back from the token at its arrival
        r = await c.put(f"/v1/admin/rooms/{room}", headers=ADMIN, json={"status": "active"})
        assert r.status_code == 200
        for w in procs:
            w.start()

        async def all_admitted() -> bool:
            return bool((await figures(c, room))["admitted_total"] == 6)

        await wait_until(all_admitted, seconds=20)
        for w in procs:
            w.stop()


async def test_a_long_visit_kept_alive_survives_a_store_loss_and_recover(
    own_store: tuple[ValkeyProc, Settings], tmp_path: Path, workers: Workers
) -> None:
    valkey, settings = own_store
    procs = workers(settings)
    room = "visit-" + settings.instance
    async with GatewayServer(settings) as gw, httpx.AsyncClient(base_url=gw.url, timeout=30) as c:
        await create_room(c, room, session_ttl=8, max_session=600, heartbeat_timeout=600)
        for w in procs:
            w.start()
        me = (await c.post(f"/v1/rooms/{room}/enqueue")).json()

        async def admitted() -> bool:
            return bool((await place(c, room, me["token"]))["state"] == "admitted")

        await wait_until(admitted, seconds=20)
        status = await place(c, room, me["token"])
        access = bearer(status["access_token"])
        assert (await c.get(status["redirect_url"])).status_code == 303
        for _ in range(22):  # 11 s: longer than session_ttl, kept alive
            assert (await c.post("/v1/session/heartbeat", headers=access)).status_code == 200
            await asyncio.sleep(0.5)
        await wait_until(lambda: drained(c, room), seconds=20)
        before = (await c.get(f"/v1/admin/rooms/{room}/digest", headers=ADMIN)).json()

        valkey.kill()
        valkey.start()  # empty
        run_recover(settings)
        after = (await c.get(f"/v1/admin/rooms/{room}/digest", headers=ADMIN)).json()
        assert after["digest"] == before["digest"]  # session deadlines included
        assert (await place(c, room, me["token"]))["state"] == "active"
        for _ in range(8):  # the visit goes on past its first deadline
            assert (await c.post("/v1/session/heartbeat", headers=access)).status_code == 200
            await asyncio.sleep(0.5)
        assert (await place(c, room, me["token"]))["state"] == "active"
    for w in procs:
        w.stop()
    events = await room_events(settings.nats_url, room, stream=settings.stream_name)
    assert sum(isinstance(e, Extended) for e in events) >= 5
    assert not any(isinstance(e, Expired) for e in events)


async def _admitted_times(settings: Settings, room: str) -> list[float]:
    """The times (the store's clock) of the room's admissions, as the stream has them."""
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig

    subject = f"waitroom.{room}.admitted"
    nc = await nats.connect(settings.nats_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(settings.stream_name, subjects_filter=subject)
        count = (info.state.subjects or {}).get(subject, 0)
        sub = await js.pull_subscribe(
            subject, stream=settings.stream_name, config=ConsumerConfig(ack_policy=AckPolicy.NONE)
        )
        times: list[float] = []
        while len(times) < count:
            times += [decode(m.data).ts for m in await sub.fetch(1000, timeout=10)]
        return times
    finally:
        await nc.close()


def _rate(times: list[float], skip: float) -> float:
    """Admissions per second after the first ``skip`` seconds (the bucket's start)."""
    kept = [t for t in times if t >= times[0] + skip]
    return (len(kept) - 1) / (kept[-1] - kept[0])


async def test_the_release_rate_is_exact_from_half_a_person_to_a_thousand_a_second(
    own_store: tuple[ValkeyProc, Settings], tmp_path: Path, workers: Workers
) -> None:
    from shared.room import RoomUpdate

    _valkey, settings = own_store
    rates = {"r05": 0.5, "r2": 2.0, "r33": 3.3, "r10": 10.0, "r1000": 1000.0}
    window = 16.0
    redis = connect(settings.redis_url)
    store = RoomStore(redis)
    rooms: dict[str, float] = {}
    for name, rate in rates.items():
        room = f"{name}-{settings.instance}"
        rooms[room] = rate
        await store.put_room(
            room,
            RoomUpdate(
                target_url="http://127.0.0.1:9/t",
                status="paused",
                release_rate=rate,
                max_active=1_000_000,
                max_positions_per_ip=0,
                heartbeat_timeout=3600,
                claim_window=3600,
            ),
        )
        need = int(rate * window) + 10
        for i in range(0, need, 500):
            await asyncio.gather(*(store.enqueue(room) for _ in range(min(500, need - i))))
    procs = workers(settings, WAITROOM_ADMISSION_TICK_MS="20")[:1]
    procs[0].start()
    try:
        for room in rooms:
            await store.put_room(room, RoomUpdate(status="active"))
        await asyncio.sleep(window + 1)
        for room in rooms:
            await store.put_room(room, RoomUpdate(status="paused"))
    finally:
        procs[0].stop()
        await redis.aclose()
    measured: dict[str, Any] = {}
    for room, rate in rooms.items():
        times = await _admitted_times(settings, room)
        measured[room] = (rate, round(_rate(times, skip=1.0), 3), len(times))
    for rate, got, _count in measured.values():
        assert abs(got - rate) <= 0.05 * rate, measured


async def test_a_purge_after_recovery_never_forgets_a_place_back_in_line(redis: Redis) -> None:
    """A place put back from its token after it ended (a replayed history) is live again:
    the purge of ended places must not forget it, and admission goes on."""
    import msgspec

    from shared.room import RoomUpdate

    store = RoomStore(redis)
    room = "purge-" + str(time.time_ns())
    await store.put_room(room, RoomUpdate(target_url="http://127.0.0.1:9/t", status="paused"))
    made = await store.enqueue(room)
    await store.leave(room, made.position_id)
    seq = made.event_seq + 1
    back = msgspec.json.encode(
        {
            "v": 1,
            "type": "enqueued",
            "id": f"{room}:x:{seq + 1}",
            "room": room,
            "seq": seq + 1,
            "ts": time.time(),
            "position_id": made.position_id,
            "arrival": made.arrival,
            "priority": 0,
            "size": 1,
            "restored": True,
        }
    )
    result = (await store.replay({room: [back]}))[room]
    assert result.applied == 1
    await store.put_room(room, RoomUpdate(status="active"))
    [fence] = await store.lease_acquire_many([room], "heartbeat", "h", 60_000)
    purged = await store.expire(room, "h", fence, 60_000, retention_ms=0)
    assert purged["purged"] == 0  # live again: nothing to forget
    assert (await store.status(room, made.position_id)).state == "waiting"
    [afence] = await store.lease_acquire_many([room], "admission", "a", 60_000)
    admitted = await store.admit(room, "a", afence, 60_000)
    assert admitted.position_ids == [made.position_id]


async def test_a_pause_the_store_lost_before_the_stream_had_it_is_made_again(
    own_store: tuple[ValkeyProc, Settings], workers: Workers
) -> None:
    valkey, settings = own_store
    procs = workers(settings)
    room = "pause-" + settings.instance
    async with GatewayServer(settings) as gw, httpx.AsyncClient(base_url=gw.url, timeout=30) as c:
        await create_room(c, room, heartbeat_timeout=600)
        for w in procs:
            w.start()
        await wait_until(lambda: drained(c, room), seconds=30)  # the room is on the stream
        for w in procs:
            w.stop()  # no relay: the pause waits in the outbox
        r = await c.put(f"/v1/admin/rooms/{room}", headers=ADMIN, json={"status": "paused"})
        assert r.status_code == 200
        assert (await figures(c, room))["outbox"] == 1
        valkey.kill()
        valkey.start()  # empty: the pause is gone with it
        out = run_recover(settings)
        assert f"{room}: store had seq 0, stream has 1" in out

        async def paused() -> bool:
            r = await c.get(f"/v1/admin/rooms/{room}", headers=ADMIN)
            return bool(r.status_code == 200 and r.json()["config"]["status"] == "paused")

        await wait_until(paused, seconds=10)  # the gateway that made it made it again
