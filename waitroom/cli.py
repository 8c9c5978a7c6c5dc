"""The ``waitroom`` command: run the local stack, manage signing keys."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

from shared.errors import StoreUnavailable
from shared.keyring import KID_PATTERN, KeyKind, KeyRing, write_key
from shared.logs import configure
from shared.nats_link import connect_options
from shared.redis_conn import connect
from shared.settings import ENVIRONMENT_HEADING, Part, Settings, environment_help
from shared.store import RoomStore
from shared.store.lane import ScriptLane


def _up(args: argparse.Namespace) -> int:
    from waitroom.up import UpOptions, run_up

    return run_up(
        args.settings,
        args.environ,
        UpOptions(
            data_dir=Path(args.data_dir),
            port=args.port,
            demo_port=args.demo_port,
            redis_port=args.redis_port,
            nats_port=args.nats_port,
            gateways=args.gateways,
            room=args.room,
            release_rate=args.release_rate,
            max_active=args.max_active,
        ),
    )


def _keys_dir(args: argparse.Namespace) -> Path:
    return Path(args.keys_dir) if args.keys_dir else args.settings.keys_dir


def _keys_list(args: argparse.Namespace) -> int:
    keys_dir = _keys_dir(args)
    if not keys_dir.is_dir():
        sys.stderr.write(f"no keys folder at {keys_dir}\n")
        return 1
    ring = KeyRing(keys_dir)
    now = time.time()
    for key in ring.loaded():
        try:
            signing = ring.signer(key.kind).kid == key.kid
        except RuntimeError:
            signing = False
        mark = "signing" if signing else ("pending" if key.active_from > now else "verify-only")
        sys.stdout.write(f"{key.kid}\t{mark}\n")
    return 0


def _keys_rotate(args: argparse.Namespace) -> int:
    keys_dir = _keys_dir(args)
    kind: KeyKind = args.kind
    first = not any(keys_dir.glob(f"{kind}-*.pem"))
    delay = 0 if first else args.activate_after
    path = write_key(keys_dir, kind, int(time.time()) + delay)
    when = "now (the first key of its kind)" if first else f"in {delay}s"
    published = "published in the JWKS at once" if kind == "rsa" else "kept private"
    sys.stdout.write(
        f"added {path.stem}: {published} (gateways look within "
        f"{int(KeyRing.RESCAN_SECONDS)}s), signs {when}\n"
    )
    return 0


def _keys_retire(args: argparse.Namespace) -> int:
    if not KID_PATTERN.match(args.kid):
        sys.stderr.write(f"{args.kid!r} is not a key id (rsa-... or ec-...)\n")
        return 2
    path = _keys_dir(args) / f"{args.kid}.pem"
    if not path.exists():
        sys.stderr.write(f"no key {args.kid} in {path.parent}\n")
        return 1
    path.unlink()
    sys.stdout.write(
        f"removed {args.kid}; gateways drop it within {int(KeyRing.RESCAN_SECONDS)}s, after "
        "which tokens it signed no longer verify (tokens a gateway already checked stay "
        "good until they expire)\n"
    )
    return 0


def _recover(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from shared import event_loop
    from shared.recovery import describe, recover

    settings: Settings = args.settings
    redis_url = args.redis_url or settings.redis_url
    nats_url = args.nats_url or settings.nats_url
    stream = args.stream or settings.stream_name

    async def run() -> int:
        redis = connect(redis_url, tls_ca=settings.redis_tls_ca)
        # the replay's calls over one connection, each sent while the one before runs
        # (shared/recovery.py); a URL with settings of its own keeps the pool
        lane = ScriptLane.for_url(redis_url, tls_ca=settings.redis_tls_ca)
        columns = (
            TextColumn("replaying"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} events"),
            TimeRemainingColumn(),
        )
        try:
            with Progress(*columns, disable=args.quiet) as bar:
                task = bar.add_task("replay", total=None)

                def progress(done: int, total: int) -> None:
                    bar.update(task, completed=done, total=total)

                summary = await recover(
                    RoomStore(redis, lane=lane),
                    nats_url,
                    stream=stream,
                    progress=progress,
                    accept_gap=args.accept_gap,
                    use_snapshots=not args.no_snapshots,
                    nats_options=connect_options(settings.nats_tls_ca, settings.nats_creds),
                )
        finally:
            if lane is not None:
                await lane.aclose()
            await redis.aclose()
        sys.stdout.write(
            f"replayed {summary.events} events ({summary.applied} applied, "
            f"{summary.skipped} already there) into {len(summary.rooms)} rooms "
            f"in {summary.seconds:.2f}s ({summary.rate:,.0f} events/s)\n"
        )
        for room in sorted(summary.reports):
            sys.stdout.write(describe(summary.reports[room]) + "\n")
        if summary.stopped:
            sys.stdout.write(
                f"{len(summary.stopped)} rooms stopped and stay recovering (each line above "
                "says why); for a gap, run `waitroom recover --accept-gap` to rebuild them "
                "from what the stream holds\n"
            )
            return 3
        return 0

    return event_loop.run(run())


def _digest(args: argparse.Namespace) -> int:
    settings: Settings = args.settings

    async def run() -> int:
        redis = connect(args.redis_url or settings.redis_url, tls_ca=settings.redis_tls_ca)
        try:
            store = RoomStore(redis)
            rooms = args.rooms or await store.rooms()
            for room in rooms:
                sys.stdout.write(f"{room}\t{await store.digest(room)}\n")
        finally:
            await redis.aclose()
        return 0

    return asyncio.run(run())


def _audit(args: argparse.Namespace) -> int:
    """Exit 0 if every admission of the room followed its policy, 1 if one did not."""
    from waitroom.audit import audit
    from waitroom.room_stream import read_room_events

    settings: Settings = args.settings
    events = asyncio.run(
        read_room_events(
            args.nats_url or settings.nats_url,
            args.room,
            stream=args.stream or settings.stream_name,
            nats_options=connect_options(settings.nats_tls_ca, settings.nats_creds),
        )
    )
    if not events:
        sys.stderr.write(f"no events of room {args.room} on the stream\n")
        return 2
    report = audit(args.room, events)
    sys.stdout.write(report.summary())
    return 0 if report.ok else 1


def _probe(args: argparse.Namespace) -> int:
    """Exit 0 if this worker replica marked itself alive recently, 1 if not."""
    settings: Settings = args.settings
    instance = args.instance or settings.instance
    holder = f"{args.role}-{instance}"

    async def run() -> int:
        redis = connect(settings.redis_url, tls_ca=settings.redis_tls_ca)
        try:
            alive = await RoomStore(redis).replicas(args.role).alive(holder)
        except StoreUnavailable as exc:
            sys.stderr.write(f"{holder}: {exc}\n")
            return 1
        finally:
            await redis.aclose()
        if not alive:
            sys.stderr.write(f"{holder}: not alive\n")
            return 1
        sys.stdout.write(f"{holder}: alive\n")
        return 0

    return asyncio.run(run())


def _bench(args: argparse.Namespace) -> int:
    from loadtest.bench.cli import main as bench_main

    return bench_main(args.args)


def _loadtest(args: argparse.Namespace) -> int:
    from loadtest.run import main as loadtest_main

    return loadtest_main(args.args)


class _HelpFormatter(argparse.HelpFormatter):
    """Wraps descriptions as usual; prints the list of variables as it was laid out."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith(ENVIRONMENT_HEADING):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def _reads(part: Part) -> dict[str, Any]:
    """``add_parser`` arguments that end a command's help with the variables it reads."""
    return {"epilog": environment_help(part), "formatter_class": _HelpFormatter}


Commands = argparse._SubParsersAction  # the subparsers of `waitroom`


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="waitroom",
        description="A fair, honest virtual waiting room. See the README for the API.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (add_up, add_keys, add_recover, add_digest, add_audit, add_probe, add_measuring):
        add(sub)
    return parser


def add_up(sub: Commands[argparse.ArgumentParser]) -> None:
    up = sub.add_parser(
        "up",
        **_reads(Part.UP),
        help="start the whole stack locally (Valkey, NATS, gateway, workers, demo site)",
        description=(
            "Start valkey-server and nats-server -js from their wheels in a data folder, "
            "the gateway, both workers and a demo protected site; create a demo room; "
            "print the URLs and the admin key; stop everything on Ctrl-C. "
            "WAITROOM_REDIS_URL / WAITROOM_NATS_URL, when set, are used instead of "
            "starting servers. Busy ports are replaced by free ones. The parts it starts "
            "get this environment with the addresses it chose; other WAITROOM_ variables "
            "(see their --help) pass through."
        ),
    )
    up.add_argument("--data-dir", default=".waitroom", help="where data, keys and logs live")
    up.add_argument("--port", type=int, default=8000, help="gateway port (default 8000)")
    up.add_argument("--demo-port", type=int, default=8001, help="demo site port (8001)")
    up.add_argument("--redis-port", type=int, default=6390, help="valkey port (6390)")
    up.add_argument("--nats-port", type=int, default=4222, help="NATS port (4222)")
    up.add_argument("--gateways", type=int, default=1, help="gateway processes (1)")
    up.add_argument("--room", default="demo", help="id of the demo room (demo)")
    up.add_argument(
        "--release-rate", type=float, default=2.0, help="demo room's release rate, people/s (2)"
    )
    up.add_argument("--max-active", type=int, default=5, help="demo room's capacity (5)")
    up.set_defaults(func=_up)


def add_keys(sub: Commands[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser(
        "keys",
        **_reads(Part.KEYS),
        help="list, rotate or retire the token signing keys",
        description=(
            "Signing keys live in WAITROOM_KEYS_DIR (or --keys-dir), shared by every "
            "gateway. Every key there is published in the JWKS; the newest active one signs."
        ),
    )
    keys_dir = argparse.ArgumentParser(add_help=False)
    keys_dir.add_argument("--keys-dir", help="the keys folder (default WAITROOM_KEYS_DIR)")
    ksub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    ksub.add_parser(
        "list", help="every key and whether it signs", parents=[keys_dir], **_reads(Part.KEYS)
    ).set_defaults(func=_keys_list)
    rotate = ksub.add_parser(
        "rotate",
        **_reads(Part.KEYS),
        parents=[keys_dir],
        help="add a new key that starts signing later",
        description=(
            "Add a new key. An RSA key is published in the JWKS at once (running gateways "
            "notice within 30 s) and starts signing after --activate-after seconds, so "
            "protected sites that cache the JWKS learn it first. The first key of a kind "
            "signs at once. --kind ec adds a key for ES256 queue tokens "
            "(WAITROOM_QUEUE_TOKEN_ALG=ES256), never published."
        ),
    )
    rotate.add_argument("--kind", choices=["rsa", "ec"], default="rsa", help="rsa (default) or ec")
    rotate.add_argument(
        "--activate-after", type=int, default=600, help="seconds until the new key signs (600)"
    )
    rotate.set_defaults(func=_keys_rotate)
    retire = ksub.add_parser(
        "retire",
        help="remove a key (its tokens stop verifying)",
        parents=[keys_dir],
        **_reads(Part.KEYS),
    )
    retire.add_argument("kid")
    retire.set_defaults(func=_keys_retire)


def add_recover(sub: Commands[argparse.ArgumentParser]) -> None:
    recover = sub.add_parser(
        "recover",
        **_reads(Part.RECOVER),
        help="rebuild every room from the event stream into an empty data store",
        description=(
            "Rebuild every room the JetStream stream knows (config, line, admissions, "
            "sessions and their deadlines, counters) into the data store at "
            "WAITROOM_REDIS_URL: each room from its latest snapshot on the stream when that "
            "is ahead of the store, then the events after it. Idempotent: events a room "
            "already has are skipped, so running it twice gives the same state. Rooms "
            "being rebuilt answer 503 room_recovering (gateways keep serving the others). "
            "Prints one line per room: the seq the store had, the last seq on the stream, "
            "gaps. A snapshot that cannot be read is passed over for the one before it. A "
            "room whose events have a gap on the stream stops there and stays recovering "
            "(exit status 3) until you run it again with --accept-gap; so does a room whose "
            "snapshot is of a later version (run that version, or --no-snapshots). Compare "
            "`waitroom digest` before and after."
        ),
    )
    recover.add_argument(
        "--accept-gap",
        action="store_true",
        help="go on past missing events (each gap is reported; events naming places lost "
        "in it are skipped) so every room ends usable",
    )
    recover.add_argument(
        "--no-snapshots",
        action="store_true",
        help="replay every room from the start of the stream, not from its latest snapshot",
    )
    recover.add_argument("--redis-url", help="default WAITROOM_REDIS_URL")
    recover.add_argument("--nats-url", help="default WAITROOM_NATS_URL")
    recover.add_argument("--stream", help="default WAITROOM_STREAM (WAITROOM)")
    recover.add_argument("--quiet", action="store_true", help="no progress bar")
    recover.set_defaults(func=_recover)


def add_digest(sub: Commands[argparse.ArgumentParser]) -> None:
    digest = sub.add_parser(
        "digest",
        **_reads(Part.DIGEST),
        help="print a digest of each room's state",
        description=(
            "A sha256 over each room's config, counters, line order, live people, admissions "
            "and sessions (not liveness times). Equal digests mean equal rooms: take one "
            "before a loss and compare after `waitroom recover`."
        ),
    )
    digest.add_argument("rooms", nargs="*", help="rooms (default: all)")
    digest.add_argument("--redis-url", help="default WAITROOM_REDIS_URL")
    digest.set_defaults(func=_digest)


def add_audit(sub: Commands[argparse.ArgumentParser]) -> None:
    audit = sub.add_parser(
        "audit",
        **_reads(Part.AUDIT),
        help="check from the event stream that a room admitted people by its policy",
        description=(
            "Read the room's events from the JetStream stream (read access to the stream is "
            "all it needs) and check every admission against the room's policy at the time: "
            "capacity (room and lanes) never exceeded; no inversions within a lane under "
            "fifo/strict; under best_fit nobody who fit passed over and nobody passed over "
            "more than max_skips times; random draws from the highest priority waiting; "
            "the pre-queue placed in the order its recorded seed draws; invites used within "
            "their uses, expiry and priority. Prints a summary; exits 1 on a violation, 2 "
            "when the stream holds nothing of the room."
        ),
    )
    audit.add_argument("room", help="the room's id")
    audit.add_argument("--nats-url", help="default WAITROOM_NATS_URL")
    audit.add_argument("--stream", help="default WAITROOM_STREAM (WAITROOM)")
    audit.set_defaults(func=_audit)


def add_probe(sub: Commands[argparse.ArgumentParser]) -> None:
    probe = sub.add_parser(
        "probe",
        **_reads(Part.PROBE),
        help="exit non-zero unless a worker replica is alive (a liveness probe)",
        description=(
            "Each worker replica marks itself alive in the data store on every tick, keyed by "
            "its WAITROOM_INSTANCE (use the pod name). This exits 0 if the mark is fresh, 1 "
            "if not, so one healthy pod cannot vouch for a dead one."
        ),
    )
    probe.add_argument("role", choices=["admission", "heartbeat"])
    probe.add_argument("--instance", help="default WAITROOM_INSTANCE")
    probe.set_defaults(func=_probe)


def add_measuring(sub: Commands[argparse.ArgumentParser]) -> None:
    """`bench` and `loadtest`: every option goes on to their own parsers."""
    bench = sub.add_parser(
        "bench",
        add_help=False,
        prefix_chars="+",  # every option goes on to the benchmark's own parser
        help="measure CPU per operation against a floor, on this machine (--help for more)",
    )
    bench.add_argument("args", nargs=argparse.REMAINDER)
    bench.set_defaults(func=_bench)
    loadtest = sub.add_parser(
        "loadtest",
        add_help=False,
        prefix_chars="+",  # every option goes on to the load test's own parser
        help="run the locust scenarios headless and write a report (--help for more)",
    )
    loadtest.add_argument("args", nargs=argparse.REMAINDER)
    loadtest.set_defaults(func=_loadtest)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.environ = dict(os.environ)
    args.settings = settings = Settings.from_env_or_exit(args.environ, "waitroom")
    configure(json=False, level=settings.log_level if settings.was_set("log_level") else "warning")
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
