"""Rows of a benchmark run, the table they print as, the JSON kept under bench-results/
with the machine they ran on, and the change against an earlier run."""

from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO


@dataclass
class Row:
    """One measurement: ``value`` in ``unit`` against ``floor`` (same unit), measured in the
    same run; ``ratio`` is value / floor. ``rate`` is operations/s at the peak, ``p50_ms``
    and ``p99_ms`` the latency at 80 % of it, where they apply."""

    part: str
    name: str
    unit: str
    value: float
    floor: float | None = None
    rate: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.floor is None or self.floor == 0:
            return None
        return self.value / self.floor

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["ratio"] = self.ratio
        return out


@dataclass
class Run:
    started: str
    options: dict[str, Any]
    machine: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    floors: dict[str, str] = field(default_factory=dict)
    """part -> what its floor does (printed under the table)."""
    notes: list[str] = field(default_factory=list)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def to_json(self) -> dict[str, Any]:
        return {
            "started": self.started,
            "options": self.options,
            "machine": self.machine,
            "rows": [r.to_json() for r in self.rows],
            "floors": self.floors,
            "notes": self.notes,
        }


def now_stamp() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else ""


def machine_info(valkey: str, nats: str) -> dict[str, Any]:
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    wrk = shutil.which("wrk")
    return {
        "host": platform.node(),
        "kernel": platform.release(),
        "cpu": cpu_model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "load_average": os.getloadavg(),
        "python": sys.version.split()[0],
        "valkey": _first_line([valkey, "--version"]),
        "nats": _first_line([nats, "--version"]),
        "wrk": _first_line([wrk, "-v"]) if wrk else "",
        "commit": _first_line(["git", "rev-parse", "--short", "HEAD"]),
    }


def _num(value: float | None, _digits: int = 0) -> str:
    if value is None:
        return "-"
    size = abs(value)
    if size >= 100:
        return f"{value:,.0f}"
    if size >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def print_table(run: Run, out: TextIO) -> None:
    head = (
        f"{'part':10} {'measurement':38} {'value':>11} {'floor':>11} {'unit':16} "
        f"{'x floor':>8} {'peak/s':>9} {'p50 ms':>7} {'p99 ms':>7}"
    )
    out.write(head + "\n" + "-" * len(head) + "\n")
    for r in run.rows:
        ratio = f"{r.ratio:8.2f}" if r.ratio is not None else f"{'-':>8}"
        out.write(
            f"{r.part:10} {r.name[:38]:38} {_num(r.value, 1):>11} {_num(r.floor, 1):>11} "
            f"{r.unit[:16]:16} {ratio} {_num(r.rate):>9} {_num(r.p50_ms, 1):>7} "
            f"{_num(r.p99_ms, 1):>7}\n"
        )
        if r.extra:
            bits = ", ".join(
                f"{k} {v:.2f}" if k.startswith("x ") else f"{k} {v:,.1f}"
                for k, v in r.extra.items()
            )
            out.write(f"{'':10} {'':38} ({bits})\n")
    if run.floors:
        out.write("\nfloors (what each ratio is against):\n")
        for part, text in run.floors.items():
            out.write(f"  {part:10} {text}\n")
    if run.notes:
        out.write("\nnotes:\n")
        for note in run.notes:
            out.write(f"  - {note}\n")


def save(run: Run, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    stamp = run.started.replace(":", "").replace("-", "")
    path = folder / f"bench-{stamp}.json"
    path.write_text(json.dumps(run.to_json(), indent=2) + "\n")
    return path


def find_earlier(spec: str, folder: Path, exclude: Path | None = None) -> Path:
    """``last``: the newest run kept in ``folder`` (other than ``exclude``); else a path."""
    if spec != "last":
        return Path(spec)
    runs = sorted(p for p in folder.glob("bench-*.json") if p != exclude)
    if not runs:
        raise FileNotFoundError(f"no earlier run in {folder}")
    return runs[-1]


def print_compare(run: Run, earlier_path: Path, out: TextIO) -> None:
    """Each row's ratio to its floor now and then: ratios travel between machines, raw
    CPU times do not (they are shown too, for the same machine)."""
    earlier = json.loads(earlier_path.read_text())
    before = {(r["part"], r["name"]): r for r in earlier.get("rows", [])}
    out.write(f"\nchange against {earlier_path} ({earlier.get('started', '?')}, ")
    out.write(f"{earlier.get('machine', {}).get('cpu', '?')})\n")
    out.write(
        f"{'part':10} {'measurement':38} {'x floor then':>12} {'now':>8} {'change':>8} "
        f"{'value then':>11} {'now':>11}\n"
    )
    for r in run.rows:
        old = before.get((r.part, r.name))
        if old is None:
            out.write(f"{r.part:10} {r.name[:38]:38} {'(new)':>12}\n")
            continue
        then, now = old.get("ratio"), r.ratio
        change = f"{(now / then - 1) * 100:+7.1f}%" if then and now else f"{'-':>8}"
        out.write(
            f"{r.part:10} {r.name[:38]:38} {_num(then, 2):>12} {_num(now, 2):>8} {change} "
            f"{_num(old.get('value'), 1):>11} {_num(r.value, 1):>11}\n"
        )
