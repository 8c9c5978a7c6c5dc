"""CPU a gateway process spends per call, on this machine.

Starts valkey-server, nats-server and one `python -m gateway` of its own (rate limits
off), sends --calls requests of each kind from --clients concurrent clients, and reads the
gateway's own CPU time (user + system, from /proc) before and after each kind. Baseline:
GET /healthz, the cheapest answer the app gives; every kind is printed as a ratio to it,
with the client-side p50/p99 latency.

python -m loadtest.bench_gateway [--calls 3000] [--clients 50]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from loadtest.stack import ADMIN_KEY, start_gateway
from waitroom.processes import Supervisor

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(process_id: int) -> float:
    fields = Path(f"/proc/{process_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


async def measure(
    process_id: int, calls: int, clients: int, call: Callable[[int], Awaitable[None]]
) -> tuple[float, float, float]:
    """(CPU us per call, p50 ms, p99 ms)."""
    latencies: list[float] = []
    queue = iter(range(calls))

    async def client() -> None:
        for i in queue:
            started = time.perf_counter()
            await call(i)
            latencies.append(time.perf_counter() - started)

    before = cpu_seconds(process_id)
    await asyncio.gather(*(client() for _ in range(clients)))
    used = cpu_seconds(process_id) - before
    q = statistics.quantiles(latencies, n=100)
    return used / calls * 1e6, q[49] * 1000, q[98] * 1000


async def bench(calls: int, clients: int, folder: Path) -> None:
    sup = Supervisor()
    try:
        base, _port, process_id = start_gateway(sup, folder)
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as c:
            await c.put(
                "/v1/admin/rooms/bench",
                headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                json={
                    "target_url": "http://127.0.0.1:9/t",
                    "status": "paused",
                    "max_positions_per_ip": 0,
                },
            )
            tokens: list[str] = []

            async def healthz(_: int) -> None:
                (await c.get("/healthz")).raise_for_status()

            async def join(_: int) -> None:
                r = await c.post("/v1/rooms/bench/enqueue")
                r.raise_for_status()
                tokens.append(r.json()["token"])

            async def status(i: int) -> None:
                auth = {"Authorization": f"Bearer {tokens[i % len(tokens)]}"}
                (await c.get("/v1/rooms/bench/status", headers=auth)).raise_for_status()

            async def heartbeat(i: int) -> None:
                auth = {"Authorization": f"Bearer {tokens[i % len(tokens)]}"}
                (await c.post("/v1/rooms/bench/heartbeat", headers=auth)).raise_for_status()

            await measure(process_id, 200, clients, healthz)  # warm up
            rows = [
                ("GET /healthz (baseline)", await measure(process_id, calls, clients, healthz)),
                ("POST enqueue (signs a token)", await measure(process_id, calls, clients, join)),
                ("GET status", await measure(process_id, calls, clients, status)),
                ("POST heartbeat", await measure(process_id, calls, clients, heartbeat)),
            ]
    finally:
        sup.stop()
    base = rows[0][1][0]
    sys.stdout.write(f"{calls} calls of each kind from {clients} clients, one gateway process\n")
    sys.stdout.write(
        f"{'call':32} {'CPU us/call':>12} {'x baseline':>11} {'p50 ms':>8} {'p99 ms':>8}\n"
    )
    for name, (cpu_us, p50, p99) in rows:
        sys.stdout.write(f"{name:32} {cpu_us:12.0f} {cpu_us / base:11.2f} {p50:8.2f} {p99:8.2f}\n")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=50)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(bench(args.calls, args.clients, Path(tmp)))


if __name__ == "__main__":
    main(sys.argv[1:])
