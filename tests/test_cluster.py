"""Many processes and a NATS cluster on one machine, as SREs run waitroom: a three-node
JetStream cluster (the stream at 3 replicas), 3 gateways, 3 admission and 2 heartbeat
workers, one data store, and a crowd spread over the gateways (joins, heartbeats, event
streams, claims, completions). During the run one gateway, one admission worker, one
heartbeat worker and one NATS node are killed with -9, one gateway and one worker are
stopped with SIGTERM, and a new worker is started. Afterwards the guarantees are checked
from the figures sampled during the run and from the stream itself."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from shared import keys
from shared.events import Admitted, Enqueued, Event
from shared.keyring import ensure_keys
from shared.redis_conn import connect
from shared.settings import RateLimits, Settings
from tests.helpers.api import ADMIN, ADMIN_KEY, METRICS_TOKEN, create_room, figures
from tests.helpers.load import Load
from tests.helpers.servers import (
    ModuleProc,
    NatsProc,
    ValkeyProc,
    outbox_drained,
    room_events,
    settings_env,
    used_units_replayed,
)
from tests.helpers.sse import SseClient
from tests.helpers.wait import wait_until
from waitroom.processes import free_port, wait_for_port

pytestmark = pytest.mark.slow

LEASE_MS = 2000
ROOMS = 3
CAPACITY = 3
PEOPLE = 360
SPACING = 0.1
SSE_PEOPLE = 24


class Balancer(httpx.AsyncBaseTransport):
    """What the load balancer in front of the gateways does for the crowd: spreads the
    requests over the gateways and, when one refuses connections or drops a request,
    takes it out of the rotation and sends the request to the next. A join carries an
    ``Idempotency-Key``, so sending it again gets the same place."""

    RETRY = (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)

    def __init__(self, ports: list[int]) -> None:
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
        self.ports = ports
        self.transports = [httpx.AsyncHTTPTransport(limits=limits) for _ in ports]
        self.down: set[int] = set()
        self.turn = 0

    def _next(self) -> int:
        live = [i for i in range(len(self.ports)) if i not in self.down]
        if not live:
            raise httpx.ConnectError("no gateway left")
        self.turn += 1
        return live[self.turn % len(live)]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path.endswith("/enqueue"):
            request.headers.setdefault("Idempotency-Key", uuid.uuid4().hex)
        for _ in range(2 * len(self.ports)):
            i = self._next()
            request.url = request.url.copy_with(host="127.0.0.1", port=self.ports[i])
            request.headers["Host"] = f"127.0.0.1:{self.ports[i]}"
            try:
                return await self.transports[i].handle_async_request(request)
            except self.RETRY:
                if not await self._alive(i):
                    self.down.add(i)
        raise httpx.ConnectError("every gateway failed the request")

    async def _alive(self, i: int) -> bool:
        try:
            async with httpx.AsyncClient(timeout=1) as c:
                r = await c.get(f"http://127.0.0.1:{self.ports[i]}/healthz")
            return r.status_code == 200
        except httpx.HTTPError:
            return False

    async def aclose(self) -> None:
        for transport in self.transports:
            await transport.aclose()


@dataclass
class Takeovers:
    """How long each lease took to change hands, against the lease time."""

    redis: Redis
    times: list[tuple[str, float]] = field(default_factory=list)

    async def holder(self, room: str, role: str) -> str | None:
        value = await self.redis.get(keys.RoomKeys(room).lease(role))
        return None if value is None else str(value).split(":", 1)[0]

    async def measure(self, what: str, room: str, role: str, act: Callable[[], None]) -> None:
        before = await self.holder(room, role)
        started = time.monotonic()
        act()

        async def moved() -> bool:
            now = await self.holder(room, role)
            return now is not None and now != before

        await wait_until(moved, seconds=LEASE_MS / 1000 * 5, every=0.01)
        self.times.append((what, time.monotonic() - started))


@dataclass
class Stack:
    tmp: Path
    settings: Settings
    nats: list[NatsProc]
    valkey: ValkeyProc
    procs: dict[str, ModuleProc] = field(default_factory=dict)
    gateway_ports: list[int] = field(default_factory=list)

    def env(self, name: str, **extra: str) -> dict[str, str]:
        return settings_env(
            self.settings,
            WAITROOM_INSTANCE=name,
            WAITROOM_STREAM_REPLICAS="3",
            WAITROOM_STREAMS_PER_ADDRESS="100000",
            **extra,
        )

    def start(self, name: str, module: str, **extra: str) -> ModuleProc:
        proc = ModuleProc(module, self.env(name, **extra), self.tmp / f"{name}.log").start()
        self.procs[name] = proc
        return proc

    def holder_process(self, holder: str) -> ModuleProc:
        """The worker process a lease holder name (``admission-a1``) belongs to."""
        return self.procs[holder.split("-", 1)[1]]

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.stop()
        for node in self.nats:
            node.stop()
        self.valkey.stop()


def start_stack(tmp: Path, keys_dir: Path) -> Stack:
    valkey = ValkeyProc("valkey", free_port(), tmp / "valkey")
    valkey.data_dir.mkdir()
    valkey.start()
    routes = [free_port() for _ in range(3)]
    nodes = [
        NatsProc(
            f"n{i}",
            free_port(),
            tmp / f"n{i}",
            cluster_port=routes[i],
            routes=tuple(port for j, port in enumerate(routes) if j != i),
        )
        for i in range(3)
    ]
    for node in nodes:
        node.data_dir.mkdir()
        node.start()
    ensure_keys(keys_dir, ("rsa",))  # made once, before three gateways look for them
    settings = Settings(
        redis_url=valkey.url,
        nats_url=",".join(node.url for node in nodes),
        keys_dir=keys_dir,
        admin_key=ADMIN_KEY,
        metrics_token=METRICS_TOKEN,
        rate_limits=RateLimits(enabled=False),
        admission_tick_ms=50,
        heartbeat_tick_ms=100,
        lease_ms=LEASE_MS,
        stream_replicas=3,
        instance="cluster",
        log_json=True,
    )
    stack = Stack(tmp, settings, nodes, valkey)
    for i in range(3):
        port = free_port()
        stack.gateway_ports.append(port)
        stack.start(f"g{i}", "gateway", WAITROOM_PORT=str(port))
    for i in range(3):
        stack.start(f"a{i}", "admission_worker")
    for i in range(2):
        stack.start(f"h{i}", "heartbeat_worker")
    for i, port in enumerate(stack.gateway_ports):
        wait_for_port(port, 30, stack.procs[f"g{i}"].proc)
    return stack


async def every_gateway_ready(ports: list[int]) -> bool:
    async with httpx.AsyncClient(timeout=5) as c:
        for port in ports:
            try:
                r = await c.get(f"http://127.0.0.1:{port}/readyz")
            except httpx.HTTPError:
                return False
            if r.status_code != 200:
                return False
    return True


async def test_many_processes_and_a_nats_cluster_keep_every_guarantee(
    tmp_path: Path, keys_dir: Path
) -> None:
    stack = start_stack(tmp_path, keys_dir)
    redis = connect(stack.settings.redis_url)
    balancer = Balancer(stack.gateway_ports)
    client = httpx.AsyncClient(base_url="http://waitroom", transport=balancer, timeout=30)
    try:
        await wait_until(lambda: every_gateway_ready(stack.gateway_ports), seconds=60, every=0.5)
        await run_the_sale(stack, client, balancer, redis)
    finally:
        await client.aclose()
        await redis.aclose()
        stack.stop()


async def run_the_sale(
    stack: Stack, client: httpx.AsyncClient, balancer: Balancer, redis: Redis
) -> None:
    rooms = [f"sale{i}" for i in range(ROOMS)]
    for room in rooms:
        await create_room(
            client,
            room,
            max_active=CAPACITY,
            release_rate=5,
            claim_window=2,
            session_ttl=2,
            heartbeat_interval=1,
            heartbeat_timeout=10,
        )
    sse_room = "streams"
    await create_room(client, sse_room, status="paused", max_active=SSE_PEOPLE, release_rate=50)

    # people following their place on the gateway that will be stopped with SIGTERM (g1)
    leaving = f"http://127.0.0.1:{stack.gateway_ports[1]}"
    async with httpx.AsyncClient(base_url=leaving, timeout=30) as direct:
        tokens = [
            (await direct.post(f"/v1/rooms/{sse_room}/enqueue")).json()["token"]
            for _ in range(SSE_PEOPLE)
        ]
    first_streams = [SseClient(f"{leaving}/v1/rooms/{sse_room}/events", t) for t in tokens]
    sse_http = httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=200))
    stream_tasks = [asyncio.create_task(s.run(sse_http)) for s in first_streams]

    samples: list[tuple[str, int, int]] = []
    sampling = asyncio.Event()

    async def sample() -> None:
        while not sampling.is_set():
            for room in rooms:
                seen = await figures(client, room)
                samples.append((room, seen["used_units"], seen["admitted"] + seen["active"]))
            await asyncio.sleep(0.1)

    takeovers = Takeovers(redis)
    load = Load(client, rooms)
    stopped_at: list[float] = []

    async def chaos() -> None:
        procs = stack.procs
        await asyncio.sleep(4)
        procs["g0"].signal(signal.SIGKILL)
        await asyncio.sleep(2)
        holder = await wait_until(lambda: takeovers.holder(rooms[0], "admission"))
        victim = stack.holder_process(holder)
        await takeovers.measure(
            "admission worker kill -9", rooms[0], "admission", lambda: victim.signal(signal.SIGKILL)
        )
        holder = await wait_until(lambda: takeovers.holder(rooms[1], "heartbeat"))
        victim = stack.holder_process(holder)
        await takeovers.measure(
            "heartbeat worker kill -9", rooms[1], "heartbeat", lambda: victim.signal(signal.SIGKILL)
        )
        stack.nats[2].kill()
        await asyncio.sleep(3)
        stopped_at.append(time.time())
        procs["g1"].signal(signal.SIGTERM)
        await asyncio.sleep(1)
        holder = await wait_until(lambda: takeovers.holder(rooms[2], "admission"))
        victim = stack.holder_process(holder)
        await takeovers.measure(
            "admission worker SIGTERM", rooms[2], "admission", lambda: victim.signal(signal.SIGTERM)
        )
        stack.start("a3", "admission_worker")

    sampler = asyncio.create_task(sample())
    try:
        await asyncio.gather(load.run(PEOPLE, spacing=SPACING), chaos())
        await wait_until(lambda: all_streams_ended(stream_tasks), seconds=20)
        # the streams of the stopped gateway follow again on one that runs
        staying = f"http://127.0.0.1:{stack.gateway_ports[2]}"
        second_streams = [SseClient(f"{staying}/v1/rooms/{sse_room}/events", t) for t in tokens]
        stream_tasks = [asyncio.create_task(s.run(sse_http)) for s in second_streams]
        await wait_until(lambda: all_seen(second_streams, "position"), seconds=30)
        r = await client.put(
            f"/v1/admin/rooms/{sse_room}", json={"status": "active"}, headers=ADMIN
        )
        assert r.status_code == 200, r.text
        await wait_until(lambda: all_seen(second_streams, "admitted"), seconds=30)
        for room in [*rooms, sse_room]:
            await wait_until(lambda room=room: outbox_drained(redis, room), seconds=60)
    finally:
        sampling.set()
        await sampler
        for task in stream_tasks:
            task.cancel()
        await asyncio.gather(*stream_tasks, return_exceptions=True)
        await sse_http.aclose()

    print(
        f"\n{len(load.people)} people joined over {ROOMS} rooms; takeovers (lease {LEASE_MS} ms):"
    )
    for what, took in takeovers.times:
        print(f"  {what}: {took:.3f} s ({took * 1000 / LEASE_MS:.2f} x the lease)")
    told = max(at for s in first_streams for at, e, _ in s.events if e == "reconnect")
    print(f"  gateway SIGTERM: last stream told to reconnect {told - stopped_at[0]:.3f} s after")
    gone = sorted(f"g{i}" for i in balancer.down)
    print(f"  the balancer took {gone} out of rotation; {len(samples)} figure samples")

    assert not load.errors
    assert stack.procs["g1"].wait(15) == 0  # the SIGTERMed gateway stopped cleanly
    # the sampled figures never showed a room over its capacity
    assert len(samples) > 50
    assert max(used for _, used, _ in samples) <= CAPACITY
    assert max(held for _, _, held in samples) <= CAPACITY
    # the streams of the stopped gateway were told to reconnect, and heard of admission
    for s in first_streams:
        assert s.events[-1][1] == "reconnect", s.events[-3:]
    for s in second_streams:
        _, admitted = s.first("admitted") or (0.0, {})
        assert admitted["access_token"]

    alive = stack.nats[0].url
    for room in [*rooms, sse_room]:
        events = await room_events(alive, room, settle=1.0)
        await check_the_record(redis, room, events)


async def check_the_record(redis: Redis, room: str, events: list[Event]) -> None:
    """What the stream says about a room: every state change once and in order, nobody
    admitted twice, admissions in arrival order, never more units used than capacity."""
    seqs = [e.seq for e in events]
    assert seqs == list(range(1, len(events) + 1)), f"{room}: gaps or doubles in seq"
    assert len({e.id for e in events}) == len(events)
    stored = int(await redis.hget(keys.RoomKeys(room).stats, "event_seq") or 0)
    assert stored == len(events), (
        f"{room}: the store made {stored} events, stream has {len(events)}"
    )
    admitted = [e for e in events if isinstance(e, Admitted)]
    assert admitted, room
    assert len({e.position_id for e in admitted}) == len(admitted), f"{room}: admitted twice"
    joined = {e.position_id: e.arrival for e in events if isinstance(e, Enqueued)}
    order = [joined[e.position_id] for e in admitted]
    assert order == sorted(order), f"{room}: admitted out of arrival order"
    capacity = SSE_PEOPLE if room == "streams" else CAPACITY
    assert max(used_units_replayed(events)) == capacity  # full at times, never past it


async def all_streams_ended(tasks: list[asyncio.Task[None]]) -> bool:
    return all(task.done() for task in tasks)


async def all_seen(clients: list[SseClient], event: str) -> bool:
    return all(s.first(event) for s in clients)
