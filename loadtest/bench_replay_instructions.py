"""Instructions the data store executes per replayed join, counted by valgrind.

CPU time on these machines moves by 40 % from one run to the next, more than most changes
to a Lua script gain; the count of instructions valkey executes does not (the same to
0.3 % run to run). Makes a history of joins with the real enqueue script in a valkey of
its own, then replays all of it, and a third of it, into two new valkeys run under
`valgrind --tool=cachegrind`; per join = the difference / the joins in between (start-up
and loading the scripts cancel out). Needs valgrind (Debian's `valgrind` package).

python -m loadtest.bench_replay_instructions [--joins 6000] [--batch 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from loadtest.bench import internals
from loadtest.bench.stack import BenchStack
from shared.room import RoomUpdate
from shared.store import RoomStore
from waitroom.processes import free_port, valkey_binary, wait_for_port

ROOM = "replayed"
SUMMARY = re.compile(r"^summary: (\d+)", re.MULTILINE)


async def history(joins: int) -> list[bytes]:
    """The events of ``joins`` joins (and the room's creation), as the stream holds them."""
    stack = BenchStack(Path(tempfile.mkdtemp(prefix="waitroom-instructions-")))
    stack.start_backends()
    try:
        assert stack.valkey is not None
        async with internals.open_store(stack.valkey.url) as store:
            await store.put_room(
                ROOM,
                RoomUpdate(
                    target_url="http://127.0.0.1:9/t", status="paused", max_positions_per_ip=0
                ),
            )
            await internals.bulk_enqueue(store, ROOM, joins)
            return [raw.encode() for _id, raw in await store.outbox_batch(ROOM, joins + 1)]
    finally:
        stack.stop()


def instructions(events: list[bytes], batch: int, folder: Path, name: str) -> int:
    """Instructions a new valkey under cachegrind executes, start to end, replaying
    ``events`` in calls of ``batch``."""
    port = free_port()
    out = folder / f"cachegrind-{name}.out"
    command = ["valgrind", "--tool=cachegrind", "--cache-sim=no", f"--cachegrind-out-file={out}"]
    command += [valkey_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "no"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, 120, server)
        asyncio.run(replay(f"redis://127.0.0.1:{port}/0", events, batch))
        server.wait(120)
    finally:
        if server.poll() is None:
            server.kill()
    found = SUMMARY.search(out.read_text())
    if found is None:
        raise RuntimeError(f"no summary in {out}")
    return int(found.group(1))


async def replay(url: str, events: list[bytes], batch: int) -> None:
    """The events replayed in calls of ``batch``; then the server shut down (cachegrind
    writes its count when the server exits)."""
    redis = Redis.from_url(url)
    try:
        store = RoomStore(redis)
        for i in range(0, len(events), batch):
            result = (await store.replay({ROOM: events[i : i + batch]}))[ROOM]
            if result.stop is not None:
                raise RuntimeError(f"the replay stopped: {result.stop}")
        await redis.execute_command("SHUTDOWN", "NOSAVE")
    except RedisConnectionError:
        pass  # (the shutdown closes the connection)
    finally:
        await redis.aclose()


def run(joins: int, batch: int) -> None:
    events = asyncio.run(history(joins))
    folder = Path(tempfile.mkdtemp(prefix="waitroom-cachegrind-"))
    third = len(events) // 3
    print(f"replaying {len(events)} events, then {third}, under valgrind", file=sys.stderr)
    whole = instructions(events, batch, folder, "whole")
    part = instructions(events[:third], batch, folder, "third")
    per_join = (whole - part) / (len(events) - third)
    print(f"valkey instructions per replayed join: {per_join:,.0f}")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--joins", type=int, default=6000, help="joins in the history")
    parser.add_argument("--batch", type=int, default=1000, help="events per replay call")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        sys.exit("needs valgrind (apt-get install valgrind)")
    run(args.joins, args.batch)


if __name__ == "__main__":
    main(sys.argv[1:])
