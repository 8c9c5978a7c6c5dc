"""``waitroom bench`` / ``python -m loadtest.bench``: the whole benchmark in one command.

Starts a private stack (valkey-server and nats-server from the wheels on free ports, the
real gateway, the real workers) and the floor app, runs the parts asked for, prints one
table (each figure as the server's CPU per operation and as a ratio to its floor, measured
in the same run), and keeps the run as JSON under bench-results/.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from rich.console import Console

from loadtest.bench import results
from loadtest.bench.context import Bench, Sizes
from loadtest.bench.stack import BenchStack, raise_fd_limit
from loadtest.bench.wrk import ensure_wrk
from waitroom.processes import nats_binary, valkey_binary

PARTS = (
    "bare",
    "enqueue",
    "status",
    "heartbeat",
    "processes",
    "push",
    "admission",
    "relay",
    "replay",
    "scale",
    "streams",
)
PART_HELP = {
    "bare": "GET /healthz against a bare Litestar route",
    "enqueue": "join the line, RS256 and ES256 queue tokens",
    "status": "status of a repeat caller",
    "heartbeat": "heartbeat of a person waiting",
    "processes": "status on a gateway of 3 server processes (WAITROOM_WORKERS=3) vs 1",
    "push": "the event stream: CPU to push one update to N open streams",
    "admission": "admits/s into free capacity, real admission worker",
    "relay": "events/s from outboxes to JetStream, real relay in the workers",
    "replay": "events/s of `waitroom recover` into an empty store",
    "scale": "one room at 100k and 1M people: memory, status p99, tick costs",
    "streams": "memory per open SSE stream; 10,000 streams on one gateway process",
}
Part = Callable[[Bench, set[str]], Awaitable[None]]


def part_runners() -> list[tuple[set[str], Part]]:
    from loadtest.bench.parts import http_calls, push, scale, streams, workers

    return [
        ({"bare", "enqueue", "status", "heartbeat", "processes"}, http_calls.run),
        ({"push"}, push.run),
        ({"admission", "relay", "replay"}, workers.run),
        ({"scale"}, scale.run),
        ({"streams"}, streams.run),
    ]


def build_parser(prog: str = "waitroom bench") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Measure waitroom on this machine: the server's CPU time per operation (from "
            "/proc of the gateway, worker, valkey and nats processes), as a ratio to a "
            "floor app doing only the essential work, measured in the same run. Starts "
            "its own servers on free loopback ports; needs wrk (installed with apt-get "
            "when missing and root). Parts: "
            + "; ".join(f"{name}: {text}" for name, text in PART_HELP.items())
        ),
    )
    parser.add_argument(
        "--only", default="", help=f"comma-separated parts (default: all of {','.join(PARTS)})"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, short runs: a smoke run")
    parser.add_argument("--seconds", type=float, help="length of each wrk run (10; --quick 2)")
    parser.add_argument(
        "--compare", metavar="FILE|last", help="print the change against an earlier run"
    )
    parser.add_argument(
        "--results", default="bench-results", help="where runs are kept (bench-results/)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the servers' folder and logs")
    return parser


def chosen_parts(only: str) -> set[str]:
    if not only:
        return set(PARTS)
    asked = {p.strip() for p in only.split(",") if p.strip()}
    unknown = asked - set(PARTS)
    if unknown:
        raise SystemExit(f"unknown part(s): {', '.join(sorted(unknown))}; parts: {','.join(PARTS)}")
    return asked


async def run_parts(bench: Bench, parts: set[str]) -> None:
    for names, runner in part_runners():
        wanted = parts & names
        if not wanted:
            continue
        started = time.monotonic()
        try:
            await runner(bench, wanted)
        except Exception as exc:
            bench.console.print_exception(show_locals=False)
            bench.run.notes.append(f"{'/'.join(sorted(wanted))} failed: {exc!r}")
        bench.say(f"{'/'.join(sorted(wanted))} done in {time.monotonic() - started:.0f}s")


def main(argv: list[str] | None = None, prog: str = "waitroom bench") -> int:
    args = build_parser(prog).parse_args(argv)
    parts = chosen_parts(args.only)
    sizes = Sizes.quick() if args.quick else Sizes()
    if args.seconds:
        sizes.seconds = args.seconds
    console = Console(stderr=True)
    ensure_wrk()
    raise_fd_limit()
    folder = Path(tempfile.mkdtemp(prefix="waitroom-bench-"))
    stack = BenchStack(folder)
    run = results.Run(
        started=results.now_stamp(),
        options={"parts": sorted(parts), "quick": args.quick, "seconds": sizes.seconds},
        machine=results.machine_info(valkey_binary(), nats_binary()),
    )
    bench = Bench(stack=stack, run=run, sizes=sizes, console=console, folder=folder)
    try:
        console.log(f"servers and logs in {folder}")
        stack.start_backends()
        asyncio.run(run_parts(bench, parts))
    finally:
        stack.stop()
        if not args.keep:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
    run.machine["load_average_end"] = os.getloadavg()
    sys.stdout.write("\n")
    results.print_table(run, sys.stdout)
    kept = results.save(run, Path(args.results))
    sys.stdout.write(f"\nkept as {kept}\n")
    if args.compare:
        try:
            earlier = results.find_earlier(args.compare, Path(args.results), exclude=kept)
        except FileNotFoundError as exc:
            sys.stderr.write(f"{exc}\n")
            return 1
        results.print_compare(run, earlier, sys.stdout)
    return 1 if any("failed" in n for n in run.notes) else 0
