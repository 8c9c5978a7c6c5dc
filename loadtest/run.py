"""``waitroom loadtest``: the locust scenarios (locustfile.py) run headless against a
private stack (valkey-server, nats-server, the gateway and the workers on free loopback
ports) or against a deployment you run (``--host``), and a report written into a results
folder: report.md, report.json, figures.png and locust's CSV files.

The report holds requests/s and p50/p95/p99 per endpoint; admitted people per second
against the configured release rate; the largest capacity overshoot (used units against
max_active in the admin figures, sampled twice a second: must be 0); admission-order
inversions within a priority (admitted events in the room's JetStream stream whose
arrival number is lower than that of someone of the same priority admitted before them:
must be 0); and a plot of waiting, admitted and active over time. It exits 1 when an
invariant does not hold.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
ENDPOINT_COLUMNS = ("Requests/s", "50%", "95%", "99%", "Request Count", "Failure Count")


@dataclass
class Sample:
    t: float
    waiting: int
    admitted: int
    active: int
    used_units: int
    max_active: int
    admitted_total: int
    expired_total: int


@dataclass
class Report:
    started: str
    host: str
    room: str
    options: dict[str, Any]
    endpoints: list[dict[str, Any]] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    max_overshoot: int = 0
    inversions: int | None = None
    admitted_events: int = 0
    admitted_per_second: float = 0.0
    admitted_per_second_while_waiting: float = 0.0
    release_rate: float = 0.0
    max_active: int = 0
    expired_total: int = 0
    failures: int = 0

    @property
    def ok(self) -> bool:
        return self.max_overshoot == 0 and not self.inversions

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = self.ok
        return out


class Sampler(threading.Thread):
    """The room's admin figures every ``every`` seconds, until stopped."""

    def __init__(self, host: str, room: str, admin_key: str, every: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.url = f"{host.rstrip('/')}/v1/admin/rooms/{room}"
        self.headers = {"Authorization": f"Bearer {admin_key}"}
        self.every = every
        self.samples: list[Sample] = []
        self.stopped = threading.Event()
        self.started_at = time.monotonic()

    def run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self.stopped.is_set():
                try:
                    r = client.get(self.url, headers=self.headers)
                    if r.status_code == 200:
                        body = r.json()
                        f, cfg = body["figures"], body["config"]
                        self.samples.append(
                            Sample(
                                t=round(time.monotonic() - self.started_at, 3),
                                waiting=f["waiting"],
                                admitted=f["admitted"],
                                active=f["active"],
                                used_units=f["used_units"],
                                max_active=cfg["max_active"],
                                admitted_total=f["admitted_total"],
                                expired_total=f["expired_total"],
                            )
                        )
                except httpx.HTTPError:
                    pass
                self.stopped.wait(self.every)


def admission_inversions(events: list[dict[str, Any]]) -> tuple[int, int]:
    """(inversions, admitted events): an admitted event whose arrival is lower than that
    of someone of the same priority admitted before it, in the stream's order."""
    priority: dict[str, int] = {}
    highest: dict[int, int] = {}
    inversions = admitted = 0
    for event in events:
        kind = event.get("type")
        if kind == "enqueued":
            priority[event["position_id"]] = int(event.get("priority", 0))
        elif kind == "admitted":
            admitted += 1
            level = priority.get(event["position_id"], 0)
            arrival = int(event["arrival"])
            if level in highest and arrival < highest[level]:
                inversions += 1
            highest[level] = max(arrival, highest.get(level, arrival))
    return inversions, admitted


async def room_events(nats_url: str, room: str, stream: str = "WAITROOM") -> list[dict[str, Any]]:
    """Every event of the room in its JetStream stream, in stream order."""
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe(
            f"waitroom.{room}.>",
            stream=stream,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE),
        )
        events: list[dict[str, Any]] = []
        while True:
            try:
                batch = await sub.fetch(1000, timeout=1)
            except TimeoutError:
                break
            events.extend(json.loads(m.data) for m in batch)
        return events
    finally:
        await nc.close()


def endpoint_rows(stats_csv: Path) -> list[dict[str, Any]]:
    rows = []
    with stats_csv.open() as f:
        for row in csv.DictReader(f):
            rows.append(
                {
                    "type": row["Type"],
                    "name": row["Name"],
                    "requests": int(row["Request Count"]),
                    "failures": int(row["Failure Count"]),
                    "rps": float(row["Requests/s"]),
                    "p50_ms": _num(row.get("50%")),
                    "p95_ms": _num(row.get("95%")),
                    "p99_ms": _num(row.get("99%")),
                }
            )
    return rows


def _num(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "", "N/A") else None
    except ValueError:
        return None


def admission_rates(samples: list[Sample]) -> tuple[float, float]:
    """(admitted/s over the whole run, admitted/s over the intervals that began with
    people waiting)."""
    if len(samples) < 2:
        return 0.0, 0.0
    span = samples[-1].t - samples[0].t
    total = samples[-1].admitted_total - samples[0].admitted_total
    busy_time = busy_admitted = 0.0
    for a, b in itertools.pairwise(samples):
        if a.waiting > 0:
            busy_time += b.t - a.t
            busy_admitted += b.admitted_total - a.admitted_total
    return total / span if span else 0.0, busy_admitted / busy_time if busy_time else 0.0


def plot(samples: list[Sample], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s.t for s in samples]
    fig, ax = plt.subplots(figsize=(10, 5), dpi=100)
    ax.plot(t, [s.waiting for s in samples], label="waiting", color="#1f5f99")
    ax.plot(t, [s.admitted for s in samples], label="admitted (to claim)", color="#e08a00")
    ax.plot(t, [s.active for s in samples], label="active", color="#2a9d3a")
    ax.plot(t, [s.used_units for s in samples], label="used units", color="#555", lw=0.8)
    ax.plot(t, [s.max_active for s in samples], label="max_active", color="#c0392b", ls="--", lw=1)
    ax.set_xlabel("seconds")
    ax.set_ylabel("people")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_markdown(report: Report, path: Path) -> None:
    o = report.options
    lines = [
        f"# Load test, {report.started}",
        "",
        f"{o['users']} simulated people arriving at {o['spawn_rate']}/s against "
        f"{report.host}, room `{report.room}` (max_active {report.max_active}, release_rate "
        f"{report.release_rate:g}/s, visits of ~{o['visit_seconds']} s), for {o['duration']} s.",
        "",
        "## Invariants",
        "",
        "| invariant | found | must be |",
        "|---|---|---|",
        f"| largest capacity overshoot (used units - max_active, sampled) | "
        f"{report.max_overshoot} | 0 |",
        f"| admission-order inversions within a priority (JetStream, "
        f"{report.admitted_events} admitted events) | "
        f"{'not checked' if report.inversions is None else report.inversions} | 0 |",
        "",
        f"Result: **{'held' if report.ok else 'BROKEN'}**.",
        "",
        "## Admission",
        "",
        f"- admitted per second over the run: {report.admitted_per_second:.2f}",
        f"- admitted per second while people were waiting: "
        f"{report.admitted_per_second_while_waiting:.2f} (release_rate {report.release_rate:g}; "
        f"capacity and visit length bound it too)",
        f"- expired (heartbeat timeouts and unclaimed admissions): {report.expired_total}",
        "",
        "## Endpoints",
        "",
        "| type | name | requests | failures | req/s | p50 ms | p95 ms | p99 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in report.endpoints:
        lines.append(
            f"| {e['type']} | {e['name']} | {e['requests']} | {e['failures']} | "
            f"{e['rps']:.1f} | {_ms(e['p50_ms'])} | {_ms(e['p95_ms'])} | {_ms(e['p99_ms'])} |"
        )
    lines += ["", "![waiting, admitted and active over time](figures.png)", ""]
    path.write_text("\n".join(lines))


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def build_parser(prog: str = "waitroom loadtest") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", help="a gateway you run (default: start a private stack)")
    parser.add_argument("--admin-key", help="its admin key (default WAITROOM_ADMIN_KEY)")
    parser.add_argument(
        "--nats-url", help="its NATS, to count inversions (default: not checked with --host)"
    )
    parser.add_argument("--room", default="load", help="room id (load)")
    parser.add_argument("--users", type=int, default=300, help="simulated people (300)")
    parser.add_argument(
        "--spawn-rate", type=float, default=100, help="arrivals per second in the spike (100)"
    )
    parser.add_argument("--duration", type=int, default=60, help="seconds (60)")
    parser.add_argument("--max-active", type=int, default=50, help="room capacity (50)")
    parser.add_argument("--release-rate", type=float, default=10, help="people/s (10)")
    parser.add_argument("--visit-seconds", type=float, default=3, help="mean visit (3)")
    parser.add_argument(
        "--heartbeat",
        default="5,15",
        help="room heartbeat_interval,heartbeat_timeout in s (5,15: silent people expire)",
    )
    parser.add_argument(
        "--stop-timeout",
        type=int,
        default=10,
        help="seconds people get at the end to leave and complete their visits (10)",
    )
    parser.add_argument(
        "--results", default="bench-results", help="folder the report's folder goes in"
    )
    return parser


def main(argv: list[str] | None = None, prog: str = "waitroom loadtest") -> int:
    args = build_parser(prog).parse_args(argv)
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    out = Path(args.results) / f"loadtest-{started.replace(':', '').replace('-', '')}"
    out.mkdir(parents=True, exist_ok=True)
    stack = None
    host, admin_key, nats_url = args.host, args.admin_key, args.nats_url
    try:
        if host is None:
            from loadtest.bench.stack import ADMIN_KEY, BenchStack, raise_fd_limit

            raise_fd_limit()
            stack = BenchStack(Path(tempfile.mkdtemp(prefix="waitroom-loadtest-")))
            stack.start_backends()
            gateway = stack.start_gateway(WAITROOM_RATE_LIMITS="true")
            stack.start_workers(relay=True)
            assert stack.nats is not None
            host, admin_key, nats_url = gateway.url, ADMIN_KEY, stack.nats.url
            sys.stderr.write(f"private stack: gateway {host}, logs in {stack.folder}\n")
        admin_key = admin_key or os.environ.get("WAITROOM_ADMIN_KEY", "")
        if not admin_key:
            sys.stderr.write("an admin key is needed (--admin-key or WAITROOM_ADMIN_KEY)\n")
            return 2
        report = run_load(args, host, admin_key, nats_url, out, started)
    finally:
        if stack is not None:
            stack.stop()
    write_markdown(report, out / "report.md")
    (out / "report.json").write_text(json.dumps(report.to_json(), indent=2) + "\n")
    sys.stdout.write((out / "report.md").read_text())
    sys.stdout.write(f"\nreport in {out}\n")
    return 0 if report.ok else 1


def run_load(
    args: argparse.Namespace,
    host: str,
    admin_key: str,
    nats_url: str | None,
    out: Path,
    started: str,
) -> Report:
    env = dict(
        os.environ,
        WAITROOM_ADMIN_KEY=admin_key,
        WAITROOM_LOAD_ROOM=args.room,
        WAITROOM_LOAD_MAX_ACTIVE=str(args.max_active),
        WAITROOM_LOAD_RELEASE_RATE=str(args.release_rate),
        WAITROOM_LOAD_VISIT_SECONDS=str(args.visit_seconds),
        WAITROOM_LOAD_HEARTBEAT=args.heartbeat,
    )
    sampler = Sampler(host, args.room, admin_key)
    sampler.start()
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "-u",
        str(args.users),
        "-r",
        str(args.spawn_rate),
        "-t",
        f"{args.duration}s",
        "--host",
        host,
        "--csv",
        str(out / "locust"),
        "--only-summary",
        "--stop-timeout",
        str(args.stop_timeout),
        "--loglevel",
        "WARNING",
    ]
    with (out / "locust.log").open("wb") as log:
        subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    time.sleep(2)  # the last admissions reach the figures and the stream
    sampler.stopped.set()
    sampler.join(5)
    samples = sampler.samples
    if samples:  # seconds from the room's first figures (locust takes a moment to start)
        first = samples[0].t
        for s in samples:
            s.t = round(s.t - first, 3)
    report = Report(
        started=started,
        host=host,
        room=args.room,
        options={
            "users": args.users,
            "spawn_rate": args.spawn_rate,
            "duration": args.duration,
            "visit_seconds": args.visit_seconds,
            "heartbeat": args.heartbeat,
        },
        samples=samples,
        release_rate=args.release_rate,
        max_active=args.max_active,
    )
    if samples:
        report.max_overshoot = max(max(0, s.used_units - s.max_active) for s in samples)
        report.max_overshoot = max(
            report.max_overshoot,
            max(max(0, s.admitted + s.active - s.max_active) for s in samples),
        )
        report.expired_total = samples[-1].expired_total
    report.admitted_per_second, report.admitted_per_second_while_waiting = admission_rates(samples)
    stats = out / "locust_stats.csv"
    if stats.exists():
        report.endpoints = endpoint_rows(stats)
        report.failures = sum(e["failures"] for e in report.endpoints if e["name"] != "Aggregated")
    if nats_url:
        events = asyncio.run(room_events(nats_url, args.room))
        report.inversions, report.admitted_events = admission_inversions(events)
    if samples:
        plot(samples, out / "figures.png", f"room {args.room}: {args.users} people")
    return report
