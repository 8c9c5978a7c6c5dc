"""The HTTP calls: GET /healthz, enqueue (RS256 and ES256 queue tokens), status of a
repeat caller, heartbeat. Each against its floor route, from wrk with 64 connections:
first as fast as the server answers (the CPU per call and the peak rate), then at 80 % of
that peak for the latency. The call and its floor take turns: the peak run is cut into
slices, the call's and the floor's alternating, so that a machine whose speed drifts
during the run (these shared machines do, by a fifth within minutes) moves both alike."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtest.bench.context import TARGET, Bench
from loadtest.bench.cpu import CpuWindow
from loadtest.bench.crowd import join_many
from loadtest.bench.results import Row
from loadtest.bench.wrk import WrkResult, run_wrk

ROOM = "bench"
FLOOR_TEXT = {
    "bare": "GET /healthz against a bare Litestar route answering a small JSON object",
    "enqueue": (
        "one Lua call (arrival, person, line, liveness) + one JetStream publish awaited "
        "+ one token signed (RS256 or ES256) on the event loop, with valkey and nats; the "
        "gateway's figure adds the workers' CPU (their relay does its publish) to its own, "
        "valkey's and nats'"
    ),
    "status": (
        "the Bearer token verified (cached, as the gateway caches) + one Lua call; both "
        "sides count the app, valkey and nats (the gateway answers from its copy of the "
        "line, without the store)"
    ),
    "heartbeat": "the same as status, the Lua call also marking the person seen",
    "processes": (
        "status with WAITROOM_WORKERS=3 (the supervisor and its three server processes) "
        "against the same calls to a one-process gateway beside it, measured in turns"
    ),
}
SERVERS = ("valkey", "nats")


@dataclass
class Measured:
    cpu_us: float
    parts_us: dict[str, float]
    peak: WrkResult
    at_80: WrkResult
    counted: tuple[str, ...] = ()
    """The processes ``cpu_us`` counts."""

    @property
    def counts_servers(self) -> bool:
        return any(name in self.counted for name in SERVERS)

    @property
    def own_us(self) -> float:
        """The counted CPU without valkey's and nats'."""
        return sum(
            us for name, us in self.parts_us.items() if name in self.counted and name not in SERVERS
        )


SLICES = 3
"""Turns each side takes in a measurement (a call and its floor, in turns)."""


@dataclass
class Target:
    """What one side of a paired measurement calls, and whose CPU counts."""

    url: str
    processes: dict[str, int]
    counted: tuple[str, ...]
    settle: Callable[[], Awaitable[object]] | None = None
    """Awaited before and after each slice, inside its CPU window (the relay catching up)."""
    wrk: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Sum:
    used: dict[str, float] = field(default_factory=dict)
    requests: int = 0
    failed: int = 0
    seconds: float = 0.0
    last: WrkResult | None = None

    def add(self, used: dict[str, float], run: WrkResult) -> None:
        for name, seconds in used.items():
            self.used[name] = self.used.get(name, 0.0) + seconds
        self.requests += run.requests
        self.failed += run.failed
        self.seconds += run.seconds
        self.last = run


async def measure(b: Bench, *sides: Target) -> list[Measured]:
    """Each side measured in turns: a warm-up each, ``SLICES`` slices of the peak run
    each (the CPU of its ``counted`` processes per successful call; with ``settle``, the
    CPU window stays open until it returns, e.g. until the relay has caught up), the
    sides' slices alternating, then each at 80 % of its own peak for the latency."""
    for side in sides:
        await asyncio.to_thread(run_wrk, side.url, seconds=1, **side.wrk)
    sums = [_Sum() for _ in sides]
    for _ in range(SLICES):
        for side, total in zip(sides, sums, strict=True):
            if side.settle is not None:
                await side.settle()
            window = CpuWindow(side.processes).start()
            run = await asyncio.to_thread(
                run_wrk, side.url, seconds=b.sizes.seconds / SLICES, **side.wrk
            )
            if side.settle is not None:
                await side.settle()
            total.add(window.stop(), run)
    measured: list[Measured] = []
    for side, total in zip(sides, sums, strict=True):
        assert total.last is not None
        peak = WrkResult(
            total.requests, total.seconds, total.failed, total.last.p50_ms, total.last.p99_ms
        )
        ok = max(1, peak.ok)
        parts = {name: seconds / ok * 1e6 for name, seconds in total.used.items()}
        cpu = sum(us for name, us in parts.items() if name in side.counted)
        at_80 = await asyncio.to_thread(
            run_wrk, side.url, seconds=b.sizes.seconds, rate=0.8 * peak.rate, **side.wrk
        )
        if side.settle is not None:
            await side.settle()
        measured.append(Measured(cpu, parts, peak, at_80, side.counted))
    return measured


def _tail(run: WrkResult) -> float:
    """p99 over p50 (the issue's target for the joins at 80 % of the peak: at most 3)."""
    return run.p99_ms / run.p50_ms if run.p50_ms > 0 else 0.0


def _row(part: str, name: str, real: Measured, floor: Measured) -> Row:
    extra = {f"{k} us": v for k, v in real.parts_us.items() if k not in ("valkey", "nats")}
    extra["store+nats us"] = real.parts_us.get("valkey", 0) + real.parts_us.get("nats", 0)
    extra["floor store+nats us"] = floor.parts_us.get("valkey", 0) + floor.parts_us.get("nats", 0)
    if real.counts_servers and floor.counts_servers and floor.own_us > 0:
        # the issue's own reading (gateway + relay against the floor app): valkey's and
        # nats' CPU set apart on both sides
        extra["x floor, servers apart"] = real.own_us / floor.own_us
    failed = real.peak.failed + real.at_80.failed
    if failed:
        extra["failed calls"] = failed
    return Row(
        part=part,
        name=name,
        unit="us CPU/call",
        value=real.cpu_us,
        floor=floor.cpu_us,
        rate=real.peak.rate,
        p50_ms=real.at_80.p50_ms,
        p99_ms=real.at_80.p99_ms,
        extra={
            **extra,
            "floor peak/s": floor.peak.rate,
            "floor p50 ms": floor.at_80.p50_ms,
            "floor p99 ms": floor.at_80.p99_ms,
            "p99/p50": _tail(real.at_80),
            "floor p99/p50": _tail(floor.at_80),
        },
    )


async def run(b: Bench, parts: set[str]) -> None:
    stack = b.stack
    gateway = stack.start_gateway(queue_alg="RS256")
    stack.start_workers(relay=True)
    floor = stack.start_floor()
    await b.put_room(
        ROOM,
        target_url=TARGET,
        status="paused",
        max_positions_per_ip=0,
        heartbeat_timeout=3600,
    )
    real_procs = b.processes("app", "workers", "valkey", "nats")
    floor_procs = b.processes("floor", "valkey", "nats")

    async def relay_caught_up() -> None:
        await b.wait_outbox_empty([ROOM])

    if "bare" in parts:
        b.say("GET /healthz against the bare route")
        real, base = await measure(
            b,
            Target(f"{gateway.url}/healthz", real_procs, ("app",)),
            Target(f"{floor.url}/floor/bare", floor_procs, ("floor",)),
        )
        b.run.add(_row("bare", "GET /healthz", real, base))
        b.run.floors["bare"] = FLOOR_TEXT["bare"]

    if "enqueue" in parts:
        rsa_floor: Measured | None = None
        for alg in ("RS256", "ES256"):
            if alg == "ES256":
                gateway = stack.start_gateway(queue_alg="ES256")
                real_procs = b.processes("app", "workers", "valkey", "nats")
            b.say(f"enqueue, {alg} queue tokens")
            post = {"method": "POST", "body": "{}"}
            real, base = await measure(
                b,
                Target(
                    f"{gateway.url}/v1/rooms/{ROOM}/enqueue",
                    real_procs,
                    ("app", "admission_worker", "heartbeat_worker", *SERVERS),
                    settle=relay_caught_up,
                    wrk=post,
                ),
                Target(
                    f"{floor.url}/floor/{ROOM}/join?alg={alg}",
                    floor_procs,
                    ("floor", *SERVERS),
                    wrk=post,
                ),
            )
            b.run.add(_row("enqueue", f"enqueue, {alg} queue token", real, base))
            if alg == "RS256":
                rsa_floor = base
            elif rsa_floor is not None:  # the targets: both against the RS256 floor
                b.run.add(_row("enqueue", "enqueue, ES256, vs the RS256 floor", real, rsa_floor))
        b.run.floors["enqueue"] = FLOOR_TEXT["enqueue"]
        gateway = stack.start_gateway(queue_alg="RS256")
        real_procs = b.processes("app", "workers", "valkey", "nats")

    calls = [p for p in ("status", "heartbeat") if p in parts]
    if not calls and "processes" not in parts:
        return
    with tempfile.TemporaryDirectory(prefix="bench-tokens-") as tmp:
        real_tokens, floor_tokens = Path(tmp) / "real", Path(tmp) / "floor"
        b.say(f"{b.sizes.tokens} people join each (their tokens for the calls)")
        async with b.gateway_client() as c:
            tokens = await join_many(c, f"/v1/rooms/{ROOM}/enqueue", b.sizes.tokens)
        real_tokens.write_text("\n".join(tokens) + "\n")
        async with b.floor_client() as c:
            tokens = await join_many(c, f"/floor/{ROOM}/join", b.sizes.tokens)
        floor_tokens.write_text("\n".join(tokens) + "\n")
        await relay_caught_up()
        for call in calls:
            method = "GET" if call == "status" else "POST"
            b.say(f"{call} of a repeat caller")
            real, base = await measure(
                b,
                Target(
                    f"{gateway.url}/v1/rooms/{ROOM}/{call}",
                    real_procs,
                    ("app", *SERVERS),
                    wrk={"method": method, "tokens": real_tokens},
                ),
                Target(
                    f"{floor.url}/floor/{ROOM}/{call}",
                    floor_procs,
                    ("floor", *SERVERS),
                    wrk={"method": method, "tokens": floor_tokens},
                ),
            )
            label = "status of a repeat caller" if call == "status" else "heartbeat"
            b.run.add(_row(call, label, real, base))
            b.run.floors[call] = FLOOR_TEXT[call]
        if "processes" in parts:
            await three_processes(b, real_tokens)


async def three_processes(b: Bench, tokens: Path) -> None:
    """The same status calls to a gateway of three server processes (WAITROOM_WORKERS=3)
    and to the one-process gateway beside it, in turns: what a second and third process
    on the port cost per request."""
    b.say("status of a repeat caller, 3 gateway processes against 1, in turns")
    one = b.stack.gateway
    assert one is not None
    three = b.stack.start_other_gateway("gateway-3", queue_alg="RS256", WAITROOM_WORKERS="3")
    others = b.processes("workers", "valkey", "nats")
    try:
        measured_three, measured_one = await measure(
            b,
            *(
                Target(
                    f"{gateway.url}/v1/rooms/{ROOM}/status",
                    {"app": gateway.process_id, **others},
                    ("app", *SERVERS),
                    wrk={"method": "GET", "tokens": tokens},
                )
                for gateway in (three, one)
            ),
        )
    finally:
        b.stack.stop_other(three)
    row = _row("processes", "status, 3 gateway processes vs 1", measured_three, measured_one)
    row.extra["1 process peak/s"] = measured_one.peak.rate
    row.extra["1 process p50 ms"] = measured_one.at_80.p50_ms
    row.extra["1 process p99 ms"] = measured_one.at_80.p99_ms
    for name in (
        "floor peak/s",
        "floor p50 ms",
        "floor p99 ms",
        "floor p99/p50",
        "floor store+nats us",
    ):
        row.extra.pop(name, None)
    b.run.add(row)
    b.run.floors["processes"] = FLOOR_TEXT["processes"]
