"""How long a room's snapshot holds the data store, on this machine.

Starts its own valkey-server in a temporary folder, fills one room with the real join
script to each size given, and takes the room's snapshot both ways, in turns, on the same
room: room_snapshot.lua (one script building the JSON) and the relay's read (plain
commands in one MULTI/EXEC, kept raw: shared/store/snapshot_read.py). For each: the
server's own time on it (INFO commandstats: EVALSHA against EXEC; every other client
waits that long) and the caller's wall time; then the CPU a restore spends turning the raw
answer into the script's JSON, and whether the two snapshots hold the same state. A script
that outlasts the client's 5 s timeout still holds the store to its end: its server time
is read once it has finished.

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
        for size in sizes:
            await internals.bulk_enqueue(by_script, ROOM, size - filled)
            await internals.empty_outbox(by_script, ROOM)
            filled = size
            for _ in range(turns):
                line = await one_turn(redis, by_script, by_read)
                sys.stdout.write(f"{size:>10,} {line}\n")
                sys.stdout.flush()
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
