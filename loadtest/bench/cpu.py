"""CPU time and memory of processes, read from /proc (or from ``wait4`` for a child that
has finished): what every figure of the benchmark is made of."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(process_id: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{process_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def _parent_of(process_id: int) -> int:
    return int(Path(f"/proc/{process_id}/stat").read_text().rsplit(")", 1)[1].split()[1])


def descendants(process_id: int) -> list[int]:
    """Every live process below ``process_id`` (a gateway run with WAITROOM_WORKERS > 1 is
    a supervisor whose server processes do the work)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parents.setdefault(_parent_of(int(entry.name)), []).append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    found: list[int] = []
    todo = list(parents.get(process_id, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(parents.get(child, []))
    return found


def tree_cpu_seconds(process_id: int) -> float:
    """CPU time of the process and every live process below it."""
    total = cpu_seconds(process_id)
    for child in descendants(process_id):
        try:
            total += cpu_seconds(child)
        except OSError:
            continue
    return total


def main_thread_cpu_ns(process_id: int) -> int:
    """CPU time of the process's main thread in nanoseconds (/proc/<pid>/schedstat): exact
    where /proc/<pid>/stat counts in clock ticks; enough for valkey, whose main thread runs
    every command."""
    return int(Path(f"/proc/{process_id}/schedstat").read_text().split()[0])


def threads_cpu_ns(process_id: int) -> int:
    """CPU time of the live threads of the process and of every process below it, in
    nanoseconds (/proc/<pid>/task/*/schedstat). Exact where clock ticks round a quiet
    process's few milliseconds to nothing; threads that have ended are not counted, so it
    is for windows in which no thread comes or goes (an idle server)."""
    total = 0
    for pid in [process_id, *descendants(process_id)]:
        for task in Path(f"/proc/{pid}/task").glob("*/schedstat"):
            try:
                total += int(task.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue  # gone meanwhile
    return total


def rss_kib(process_id: int) -> int:
    for line in Path(f"/proc/{process_id}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {process_id}")


def wait_cpu_seconds(proc: subprocess.Popen[bytes]) -> float:
    """Wait for a child to end; the CPU time it used, from the kernel's account of it."""
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime


@dataclass
class CpuWindow:
    """CPU used by named processes (each with the processes below it) between ``start``
    and ``stop``."""

    processes: Mapping[str, int]
    before: dict[str, float] = field(default_factory=dict)
    used: dict[str, float] = field(default_factory=dict)

    def start(self) -> CpuWindow:
        self.before = {name: tree_cpu_seconds(pid) for name, pid in self.processes.items()}
        return self

    def stop(self) -> dict[str, float]:
        self.used = {
            name: tree_cpu_seconds(pid) - self.before[name] for name, pid in self.processes.items()
        }
        return self.used
