"""The worker side: admission (admits/s into free capacity, the real admission worker),
the relay (events/s from the outboxes to JetStream, the real relay in the workers) and
replay (events/s of ``waitroom recover`` into an empty store). CPU per operation counts
the worker processes and the servers they drive (valkey, and nats where it carries the
events), against a floor process doing the least for the same work (floor_work.py)."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from dataclasses import dataclass

import nats
from nats.js import JetStreamContext

from loadtest.bench import internals
from loadtest.bench.context import TARGET, Bench
from loadtest.bench.cpu import CpuWindow, wait_cpu_seconds
from loadtest.bench.results import Row
from loadtest.bench.stack import Backend
from shared.events import SUBJECT_PREFIX
from shared.redis_conn import connect

ADMIT_ROOM = "admit"
FLOOR_ADMIT_ROOM = "admitfloor"
RELAY_ROOMS = 4
REPLAYED = re.compile(r"replayed (\d+) events .*\(([\d,]+) events/s\)")


def _floor_work(b: Bench, *args: str) -> tuple[dict[str, float], dict[str, float]]:
    """Run floor_work.py to its end; (its report, CPU of valkey and nats meanwhile)."""
    servers = b.processes("valkey", "nats")
    window = CpuWindow(servers).start()
    proc = b.stack.run_to_end(
        f"floor-{args[0]}",
        [sys.executable, "-m", "loadtest.bench.floor_work", *args],
        env=b.stack.waitroom_env(),
    )
    wait_cpu_seconds(proc)
    used = window.stop()
    log = (b.folder / f"floor-{args[0]}.log").read_text().strip().splitlines()
    report: dict[str, float] = json.loads(log[-1])
    return report, used


async def admission(b: Bench) -> None:
    stack = b.stack
    assert stack.valkey is not None
    m = b.sizes.admits
    stack.stop_workers()
    b.say(f"admission: {m} people in line, the room opened to all of them at once")
    await b.put_room(
        ADMIT_ROOM,
        target_url=TARGET,
        status="paused",
        max_active=m,
        max_party_size=1,
        release_rate=1_000_000,
        max_positions_per_ip=0,
        heartbeat_timeout=3600,
        claim_window=3600,
    )
    async with internals.open_store(stack.valkey.url) as store:
        # the relay stays off this room while admission is measured (the bench holds its
        # lease); its events are delivered afterwards
        fence = await internals.take_lease(store, ADMIT_ROOM, "relay")
        await internals.bulk_enqueue(store, ADMIT_ROOM, m)
        stack.start_workers(relay=True)
        await asyncio.sleep(3)  # started, leases taken
        procs = b.processes("workers", "valkey")
        window = CpuWindow(procs).start()
        started = time.perf_counter()
        await b.put_room(ADMIT_ROOM, status="active")

        async def all_admitted() -> bool:
            return int((await b.figures(ADMIT_ROOM))["admitted_total"]) >= m

        await b.poll(all_admitted)
        seconds = time.perf_counter() - started
        used = window.stop()
        await internals.release_lease(store, ADMIT_ROOM, "relay", fence)
    real = (used["admission_worker"] + used["valkey"]) / m * 1e6

    b.say("admission: the floor")
    redis = connect(stack.valkey.url)
    try:
        from loadtest.bench.floor_work import fill_line

        await fill_line(redis, FLOOR_ADMIT_ROOM, m)
    finally:
        await redis.aclose()
    report, servers = _floor_work(
        b, "admit", "--redis-url", stack.valkey.url, "--room", FLOOR_ADMIT_ROOM, "--batch", "500"
    )
    floor = (report["cpu"] + servers["valkey"]) / max(1, report["done"]) * 1e6
    b.run.add(
        Row(
            part="admission",
            name="admit into free capacity",
            unit="us CPU/admit",
            value=real,
            floor=floor,
            rate=m / seconds,
            extra={
                "worker us": used["admission_worker"] / m * 1e6,
                "valkey us": used["valkey"] / m * 1e6,
                "floor admits/s": report["done"] / max(1e-9, report["seconds"]),
            },
        )
    )
    b.run.floors["admission"] = (
        "worker + valkey CPU per admit; floor: one minimal Lua call per 500 (pop the head, "
        "mark admitted, one event each) in a loop; the real worker admits each tick what "
        "the room's release bucket allows (WAITROOM_ADMISSION_TICK_MS=100)"
    )


async def relay(b: Bench) -> None:
    stack = b.stack
    assert stack.valkey is not None
    assert stack.nats is not None
    per_room = b.sizes.relay_events // RELAY_ROOMS
    stack.stop_workers()
    rooms = [f"relay-{i}" for i in range(RELAY_ROOMS)]
    b.say(f"relay: {per_room * RELAY_ROOMS} events in {RELAY_ROOMS} rooms' outboxes")
    async with internals.open_store(stack.valkey.url) as store:
        fences = {}
        for room in rooms:
            await b.put_room(room, target_url=TARGET, status="paused", max_positions_per_ip=0)
            fences[room] = await internals.take_lease(store, room, "relay")
            await internals.bulk_enqueue(store, room, per_room)
        # the floor first, while no worker runs, on copies of the same outboxes (its own
        # keys and its own stream: waitroom's stream sees each event once, from the relay)
        copies = {room: await internals.copy_outbox(store, room) for room in rooms}
        outboxes = ",".join(f"{room}={copy}" for room, copy in copies.items())
        report, servers = _floor_work(
            b,
            "relay",
            "--redis-url",
            stack.valkey.url,
            "--nats-url",
            stack.nats.url,
            "--outboxes",
            outboxes,
            "--batch",
            "512",
        )
        floor_events = max(1, int(report["done"]))
        floor = (report["cpu"] + servers["valkey"] + servers["nats"]) / floor_events * 1e6
        real_rooms = rooms

        stack.start_workers(relay=True)
        await asyncio.sleep(3)  # started; the bench holds the relay leases of real_rooms
        events = sum(await internals.outbox_lengths(store, real_rooms))
        procs = b.processes("workers", "valkey", "nats")
        window = CpuWindow(procs).start()
        started = time.perf_counter()
        for room, fence in fences.items():
            await internals.release_lease(store, room, "relay", fence)

        async def delivered() -> bool:
            return not any(await internals.outbox_lengths(store, real_rooms))

        await b.poll(delivered)
        seconds = time.perf_counter() - started
        used = window.stop()
    workers = used["admission_worker"] + used["heartbeat_worker"]
    real = (workers + used["valkey"] + used["nats"]) / events * 1e6
    b.run.add(
        Row(
            part="relay",
            name=f"relay outboxes to JetStream ({RELAY_ROOMS} rooms)",
            unit="us CPU/event",
            value=real,
            floor=floor,
            rate=events / seconds,
            extra={
                "workers us": workers / events * 1e6,
                "valkey us": used["valkey"] / events * 1e6,
                "nats us": used["nats"] / events * 1e6,
                "floor events/s": floor_events / max(1e-9, report["seconds"]),
            },
        )
    )
    b.run.floors["relay"] = (
        "workers + valkey + nats CPU per event; floor: per room 512 outbox entries read "
        "(one Lua call), all published then every ack awaited (the relay's BatchPublisher), "
        "deleted; the real relay does the same "
        "(pipelined batches of 512) and also checks the room's last event on the stream "
        "when it takes a lease, sends an expected last sequence with each batch, keeps "
        "snapshots and trims only under its lease fence"
    )


async def _stream_events(js: JetStreamContext) -> int:
    """Events on waitroom's stream (its snapshots, outside ``waitroom.>``, left out)."""
    info = await js.stream_info("WAITROOM", subjects_filter=f"{SUBJECT_PREFIX}.>")
    return sum((info.state.subjects or {}).values())


@dataclass
class Recovered:
    cpu: float
    """CPU of the recover process less that of only importing its modules."""
    servers: dict[str, float]
    rate: float
    """events/s as ``waitroom recover`` reports them (events it read from the stream)."""
    same: bool


async def _recover_into_empty(b: Bench, name: str, *options: str) -> Recovered:
    """``waitroom recover`` into a new empty valkey; its CPU and whether every room's
    digest equals the running store's."""
    stack = b.stack
    assert stack.valkey is not None
    assert stack.nats is not None
    empty: Backend = stack.start_valkey(f"valkey-{name}")
    try:
        env = stack.waitroom_env()
        imports = stack.run_to_end(
            "imports",
            [sys.executable, "-c", "import waitroom.cli, shared.recovery, rich.progress"],
            env,
        )
        import_cpu = wait_cpu_seconds(imports)
        window = CpuWindow({"valkey": empty.process_id, "nats": b.processes("nats")["nats"]})
        window.start()
        started = time.perf_counter()
        command = [sys.executable, "-m", "waitroom.cli", "recover", "--quiet", *options]
        command += ["--redis-url", empty.url, "--nats-url", stack.nats.url]
        recover = stack.run_to_end(name, command, env)
        recover_cpu = wait_cpu_seconds(recover)
        if recover.returncode != 0:
            raise RuntimeError(
                f"waitroom recover {' '.join(options)} exited with {recover.returncode}"
            )
        seconds = time.perf_counter() - started
        used = window.stop()
        found = REPLAYED.search((b.folder / f"{name}.log").read_text())
        rate = float(found.group(2).replace(",", "")) if found else 0.0
        same = await _same_digests(b, stack.valkey.url, empty.url)
    finally:
        stack.stop_backend(empty)
    if not found:
        b.say(f"replay: no rate in {name}.log; {seconds:.1f} s in all")
    return Recovered(recover_cpu - import_cpu, used, rate, same)


async def replay(b: Bench) -> None:
    stack = b.stack
    assert stack.valkey is not None
    assert stack.nats is not None
    want = b.sizes.replay_events
    nc = await nats.connect(stack.nats.url)
    try:
        js = nc.jetstream()
        have = await _stream_events(js)
        if have < want:
            b.say(f"replay: adding {want - have} events to the stream")
            if not stack.workers:
                stack.start_workers(relay=True)
            await b.put_room(
                "replayfill", target_url=TARGET, status="paused", max_positions_per_ip=0
            )
            async with internals.open_store(stack.valkey.url) as store:
                await internals.bulk_enqueue(store, "replayfill", want - have)
            await b.wait_outbox_empty(["replayfill"])
        stack.stop_workers()  # their shutdown delivers what is left; the state stands still
        events = await _stream_events(js)
        snapshots = (await js.stream_info("WAITROOM")).state.messages - events
    finally:
        await nc.close()
    b.say(f"replay: `waitroom recover --no-snapshots` of {events} events into an empty store")
    whole = await _recover_into_empty(b, "recover", "--no-snapshots")
    b.say(f"replay: `waitroom recover` from {snapshots} snapshot messages and the tail")
    snap = await _recover_into_empty(b, "recover-snapshots")
    report, servers = _floor_work(b, "read", "--nats-url", stack.nats.url)
    floor = (report["cpu"] + servers["nats"]) / max(1, report["done"]) * 1e6
    floor_rate = report["done"] / max(1e-9, report["seconds"])
    for recovered, name in (
        (whole, "waitroom recover, every event"),
        (snap, "waitroom recover from snapshots"),
    ):
        used = recovered.servers
        b.run.add(
            Row(
                part="replay",
                name=name,
                unit="us CPU/event",
                value=(recovered.cpu + used["valkey"] + used["nats"]) / events * 1e6,
                floor=floor,
                rate=recovered.rate,
                extra={
                    "recover us": recovered.cpu / events * 1e6,
                    "valkey us": used["valkey"] / events * 1e6,
                    "nats us": used["nats"] / events * 1e6,
                    "floor events/s": floor_rate,
                    "digests equal": 1.0 if recovered.same else 0.0,
                },
            )
        )
        if not recovered.same:
            b.run.notes.append(f"replay: some room's digest differs after {name}")
    b.run.floors["replay"] = (
        "recover process (less the CPU of only importing its modules) + valkey + nats per "
        f"event of the room's history ({events:,} events); floor: those events read by "
        "the raw pull consumer replay uses, nothing applied. `from snapshots`: each room "
        "from its latest "
        "snapshot on the stream and the events after it (still per event of the history; "
        "its peak/s counts only the events it read)"
    )


async def _same_digests(b: Bench, before_url: str, after_url: str) -> bool:
    outs = []
    for url in (before_url, after_url):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "waitroom.cli",
            "digest",
            "--redis-url",
            url,
            stdout=asyncio.subprocess.PIPE,
            env=b.stack.waitroom_env(),
        )
        out, _ = await proc.communicate()
        outs.append(sorted(out.decode().splitlines()))
    if outs[0] != outs[1]:
        b.say(f"digests before: {outs[0]}")
        b.say(f"digests after replay: {outs[1]}")
    return outs[0] == outs[1]


async def run(b: Bench, parts: set[str]) -> None:
    if b.stack.gateway is None:
        b.stack.start_gateway()
    if "admission" in parts:
        await admission(b)
    if "relay" in parts:
        await relay(b)
    if "replay" in parts:
        await replay(b)
