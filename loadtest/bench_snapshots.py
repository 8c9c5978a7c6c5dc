"""How long a room's snapshot, and a gateway's load of its line, hold the data store.

Starts its own valkey-server in a temporary folder, fills one room with the real join
script to each size given, and takes the room's snapshot both ways, in turns, on the same
room: room_snapshot.lua (one script building the JSON) and the relay's read (plain
commands in one MULTI/EXEC, kept raw: shared/store/snapshot_read.py). For each: the
server's own time on it (INFO commandstats: EVALSHA against EXEC; every other client
waits that long) and the caller's wall time; then the CPU a restore spends turning the raw
answer into the script's JSON, and whether the two snapshots hold the same state. A script
that outlasts the client's 5 s timeout still holds the store to its end: its server time
is read once it has finished.

Then a gateway's load of the room's line, both ways likewise: line_snapshot.lua (the JSON
decoded off the loop) against the transaction (shared/store/line_read.py, parsed off the
loop); for each, the store's time, the wall time to a line in memory (the places and
the sorted scores, as gateway/line_book.py builds them), the CPU that took, and the
longest the caller's event loop went without a turn meanwhile (a task asking for one
every millisecond: the gateway's other callers wait that long).

python -m loadtest.bench_snapshots [--people 100000 200000] [--turns 2]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import msgspec
from redis.asyncio import Redis

from loadtest.bench import internals
from shared.logs import configure
from shared.redis_conn import connect
from shared.room import RoomUpdate
from shared.store import RoomStore
from shared.store.lane import ScriptLane
from shared.store.snapshot_read import snapshot_json
from shared.store.views import LineSnapshot
from waitroom.processes import Supervisor, start_backends

ROOM = "snapshots"


async def server_ms(redis: Redis, command: str) -> float:
    """The server's total time on ``command`` so far, in ms."""
    _calls, usec = await internals.command_server_usec(redis, command)
    return usec / 1000


def _state(snapshot: bytes) -> dict[str, object]:
    state: dict[str, object] = msgspec.json.decode(snapshot_json(snapshot))
    state.pop("ts")
    return state


async def one_turn(redis: Redis, by_script: RoomStore, by_read: RoomStore) -> str:
    """Both snapshots of the room, one after the other: a line of figures."""
    before = await server_ms(redis, "evalsha")
    started = time.perf_counter()
    script: bytes | None
    try:
        script = await by_script.snapshot(ROOM)
    except Exception as exc:  # (a timeout: the script goes on in the store)
        script, failed = None, type(exc).__name__
    script_wall = time.perf_counter() - started
    script_server = await server_ms(redis, "evalsha") - before
    while script_server == 0:  # still running: its time is counted when it ends
        await asyncio.sleep(0.5)
        script_server = await server_ms(redis, "evalsha") - before
    before = await server_ms(redis, "exec")
    started = time.perf_counter()
    raw = await by_read.snapshot(ROOM)
    read_wall = time.perf_counter() - started
    read_server = await server_ms(redis, "exec") - before
    cpu = time.process_time()
    snapshot_json(raw)
    convert = time.process_time() - cpu
    same = "gave up" if script is None else str(_state(script) == _state(raw))
    if script is None:
        same += f" ({failed})"
    return (
        f"{script_server:10.1f} {script_wall * 1e3:8.0f} {read_server:10.1f} "
        f"{read_wall * 1e3:8.0f} {convert * 1e3:10.0f}  {same}"
    )


async def line_turn(redis: Redis, by_script: RoomStore, by_read: RoomStore) -> str:
    """A gateway's load of the room's line, both ways: a line of figures."""
    from gateway.line_book import build_line

    figures: list[float] = []
    loaded: list[LineSnapshot] = []
    for store, command in ((by_script, "evalsha"), (by_read, "exec")):
        before = await server_ms(redis, command)
        stalls = LoopStalls().start()
        started, cpu = time.perf_counter(), time.process_time()
        snapshot = await store.line_snapshot(ROOM)
        await asyncio.to_thread(build_line, snapshot)
        wall, used = time.perf_counter() - started, time.process_time() - cpu
        longest = await stalls.stop()
        figures += [await server_ms(redis, command) - before, wall * 1e3, used * 1e3, longest]
        loaded.append(snapshot)
    same = build_line(loaded[0])[0] == build_line(loaded[1])[0]
    return " ".join(f"{f:9.1f}" for f in figures) + f"  {same}"


class LoopStalls:
    """The longest the event loop went without a turn while this ran, in ms."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> LoopStalls:
        self._task = asyncio.create_task(self._watch())
        return self

    async def _watch(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            self.longest = max(self.longest, (now - last) * 1e3)
            last = now

    async def stop(self) -> float:
        assert self._task is not None
        await asyncio.sleep(0.005)  # (a stall at the very end is counted)
        self._task.cancel()
        return self.longest


async def bench(sizes: list[int], turns: int, folder: Path) -> None:
    sup = Supervisor()
    try:
        redis_url, _nats_url = start_backends(sup, folder)
        redis = connect(redis_url)
        lane = ScriptLane(redis_url)
        by_script, by_read = RoomStore(redis), RoomStore(redis, lane=lane)
        update = RoomUpdate(
            target_url="http://127.0.0.1:9/t",
            max_active=1_000_000,
            max_party_size=1,
            max_positions_per_ip=0,
            status="paused",
        )
        await by_script.put_room(ROOM, update)
        sys.stdout.write(
            f"{'people':>10} {'script':>10} {'wall':>8} {'one MULTI':>10} {'wall':>8} "
            f"{'convert':>10}  same\n{'':>10} {'server ms':>10} {'ms':>8} {'server ms':>10} "
            f"{'ms':>8} {'CPU ms':>10}\n"
        )
        filled = 0
        lines: list[tuple[int, list[str]]] = []
        for size in sizes:
            await internals.bulk_enqueue(by_script, ROOM, size - filled)
            await internals.empty_outbox(by_script, ROOM)
            filled = size
            for _ in range(turns):
                line = await one_turn(redis, by_script, by_read)
                sys.stdout.write(f"{size:>10,} {line}\n")
                sys.stdout.flush()
            lines.append((size, [await line_turn(redis, by_script, by_read) for _ in range(turns)]))
        sys.stdout.write(
            "\na gateway loading the line: line_snapshot.lua, then one MULTI\n"
            f"{'people':>10} {'server ms':>9} {'wall ms':>9} {'CPU ms':>9} {'stall ms':>9}"
            f" {'server ms':>9} {'wall ms':>9} {'CPU ms':>9} {'stall ms':>9}  same\n"
        )
        for size, turns_done in lines:
            for line in turns_done:
                sys.stdout.write(f"{size:>10,} {line}\n")
        await lane.aclose()
        await redis.aclose()
    finally:
        sup.stop()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--people", type=int, nargs="+", default=[100_000, 200_000], help="room sizes, rising"
    )
    parser.add_argument("--turns", type=int, default=2, help="snapshots each way per size")
    args = parser.parse_args(argv)
    configure(json=False, level="warning")
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(bench(sorted(args.people), args.turns, Path(tmp)))


if __name__ == "__main__":
    main(sys.argv[1:])
