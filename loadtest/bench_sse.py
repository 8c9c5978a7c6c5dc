"""Memory per open event stream on one gateway process.

Starts valkey-server, nats-server and one `python -m gateway` of its own, puts --streams
people in a paused room, and reads the gateway's resident memory (VmRSS) with one stream
open (the baseline) and with all of them open; prints the ratio and the cost per stream.
Then makes the person at the front leave and counts how many streams heard about it.

python -m loadtest.bench_sse [--streams 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import httpx

from loadtest.sse_crowd import SseCrowd, until
from loadtest.stack import ADMIN_KEY, start_gateway
from waitroom.processes import Supervisor


def rss_kib(process_id: int) -> int:
    for line in Path(f"/proc/{process_id}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def settle(process_id: int, seconds: float = 3.0) -> int:
    await asyncio.sleep(seconds)
    return rss_kib(process_id)


async def bench(streams: int, folder: Path) -> None:
    sup = Supervisor()
    try:
        base, port, process_id = start_gateway(sup, folder)
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as c:
            await c.put(
                "/v1/admin/rooms/bench",
                headers=admin,
                json={
                    "target_url": "http://127.0.0.1:9/t",
                    "status": "paused",
                    "max_positions_per_ip": 0,
                    "heartbeat_timeout": 600,
                },
            )
            sem = asyncio.Semaphore(50)

            async def join() -> str:
                async with sem:
                    token: str = (await c.post("/v1/rooms/bench/enqueue")).json()["token"]
                    return token

            tokens = await asyncio.gather(*(join() for _ in range(streams)))
            crowd = SseCrowd("127.0.0.1", port)
            crowd.open("bench", tokens[:1])
            baseline = await settle(process_id)
            started = time.perf_counter()
            crowd.open("bench", tokens[1:])
            await until(lambda: all(s.count("position") for s in crowd.streams), 120)
            opened_in = time.perf_counter() - started
            loaded = await settle(process_id)
            await c.post("/v1/rooms/bench/leave", headers={"Authorization": f"Bearer {tokens[0]}"})
            await until(lambda: all(s.count("position") >= 2 for s in crowd.streams[1:]), 30)
            moved = sum(1 for s in crowd.streams[1:] if s.count("position") >= 2)
            alive = sum(1 for s in crowd.streams if not s.closed)
            await crowd.close()
    finally:
        sup.stop()
    per = (loaded - baseline) / max(1, streams - 1)
    sys.stdout.write(f"gateway RSS, 1 stream open (baseline): {baseline / 1024:8.1f} MiB  1.000\n")
    sys.stdout.write(
        f"gateway RSS, {streams} streams open:      {loaded / 1024:8.1f} MiB  "
        f"{loaded / baseline:.3f}\n"
    )
    sys.stdout.write(f"memory per open stream: {per:.1f} KiB\n")
    sys.stdout.write(f"all {streams} streams opened and got their place in {opened_in:.1f}s\n")
    sys.stdout.write(
        f"streams told of the move after the front left: {moved}/{streams - 1}; "
        f"still open: {alive}/{streams}\n"
    )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=int, default=2000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(bench(args.streams, Path(tmp)))


if __name__ == "__main__":
    main(sys.argv[1:])
