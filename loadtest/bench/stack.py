"""A private stack for one benchmark run: valkey-server and nats-server from the wheels on
free ports, the real gateway (``python -m gateway``), the real workers
(``python -m admission_worker`` / ``heartbeat_worker``) and the floor app, each a child
process whose CPU the benchmark reads. Parts start and stop the processes they need."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from loadtest.bench.cpu import tree_cpu_seconds
from waitroom.processes import (
    Child,
    free_port,
    nats_command,
    valkey_command,
    wait_for_port,
)

ADMIN_KEY = "bench-admin-key-0123456789-abcdef"


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to its hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def stop_child(child: Child, grace: float = 10.0) -> None:
    """SIGTERM, a grace period, then SIGKILL."""
    child.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while child.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if child.alive():
        child.signal(signal.SIGKILL)
    if child.proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.proc.wait(5)


def settle(process_id: int, *, idle: float = 0.1, every: float = 0.5, most: float = 60) -> None:
    """Wait until the process and those below it are near idle (less than ``idle`` of a
    core over ``every`` seconds): a gateway of several server processes has its port
    open while they still import and connect, and that start-up must not be measured."""
    deadline = time.monotonic() + most
    before = tree_cpu_seconds(process_id)
    while time.monotonic() < deadline:
        time.sleep(every)
        now = tree_cpu_seconds(process_id)
        if now - before < idle * every:
            return
        before = now


@dataclass
class Backend:
    child: Child
    url: str

    @property
    def process_id(self) -> int:
        return self.child.process_id


@dataclass
class HttpServer:
    child: Child
    url: str
    port: int

    @property
    def process_id(self) -> int:
        return self.child.process_id


@dataclass
class BenchStack:
    folder: Path
    children: list[Child] = field(default_factory=list)
    valkey: Backend | None = None
    nats: Backend | None = None
    gateway: HttpServer | None = None
    floor: HttpServer | None = None
    workers: list[Child] = field(default_factory=list)

    def _start(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> Child:
        child = Child(name, cmd, env or dict(os.environ), self.folder / f"{name}.log").start()
        self.children.append(child)
        return child

    def _stop(self, child: Child) -> None:
        stop_child(child)
        if child in self.children:
            self.children.remove(child)

    # servers --------------------------------------------------------------------------
    def start_backends(self) -> None:
        self.valkey = self.start_valkey("valkey")
        port = free_port()
        child = self._start("nats", nats_command(port, self.folder / "nats"))
        wait_for_port(port, 15, child.proc)
        self.nats = Backend(child, f"nats://127.0.0.1:{port}")

    def start_valkey(self, name: str) -> Backend:
        port = free_port()
        child = self._start(name, valkey_command(port, self.folder / name, persist=False))
        wait_for_port(port, 15, child.proc)
        return Backend(child, f"redis://127.0.0.1:{port}/0")

    def stop_backend(self, backend: Backend) -> None:
        self._stop(backend.child)

    def waitroom_env(self, **extra: str) -> dict[str, str]:
        assert self.valkey is not None
        assert self.nats is not None
        env = dict(
            os.environ,
            WAITROOM_REDIS_URL=self.valkey.url,
            WAITROOM_NATS_URL=self.nats.url,
            WAITROOM_KEYS_DIR=str(self.folder / "keys"),
            WAITROOM_ADMIN_KEY=ADMIN_KEY,
            WAITROOM_RATE_LIMITS="false",
            WAITROOM_STREAMS_PER_ADDRESS="1000000",  # every stream comes from 127.0.0.1
            WAITROOM_TRUSTED_PROXIES="127.0.0.1/32",
            WAITROOM_LOG_LEVEL="warning",
            WAITROOM_LOG_JSON="true",
        )
        env.update(extra)
        return env

    # the system under test ------------------------------------------------------------
    def start_gateway(self, *, queue_alg: str = "RS256", **extra: str) -> HttpServer:
        self.stop_gateway()
        self.gateway = self.start_other_gateway("gateway", queue_alg=queue_alg, **extra)
        return self.gateway

    def start_other_gateway(
        self, name: str, *, queue_alg: str = "RS256", **extra: str
    ) -> HttpServer:
        """A gateway beside ``self.gateway`` (stop it with ``stop_other``)."""
        port = free_port()
        env = self.waitroom_env(
            WAITROOM_PORT=str(port), WAITROOM_QUEUE_TOKEN_ALG=queue_alg, **extra
        )
        child = self._start(name, [sys.executable, "-m", "gateway"], env)
        wait_for_port(port, 30, child.proc)
        settle(child.process_id)
        return HttpServer(child, f"http://127.0.0.1:{port}", port)

    def stop_other(self, server: HttpServer) -> None:
        self._stop(server.child)

    def stop_gateway(self) -> None:
        if self.gateway is not None:
            self._stop(self.gateway.child)
            self.gateway = None

    def start_workers(self, *, relay: bool = True, **extra: str) -> list[Child]:
        """One admission and one heartbeat worker (each also relays, unless ``relay`` is
        off)."""
        self.stop_workers()
        for module in ("admission_worker", "heartbeat_worker"):
            env = self.waitroom_env(
                WAITROOM_RELAY="true" if relay else "false",
                WAITROOM_INSTANCE=f"bench-{module}",
                **extra,
            )
            self.workers.append(self._start(module, [sys.executable, "-m", module], env))
        return self.workers

    def stop_workers(self) -> None:
        for child in self.workers:
            self._stop(child)
        self.workers = []

    # the floor ------------------------------------------------------------------------
    def start_floor(self) -> HttpServer:
        assert self.valkey is not None
        assert self.nats is not None
        if self.floor is not None:
            return self.floor
        port = free_port()
        cmd = [
            sys.executable,
            "-m",
            "loadtest.bench.floor_app",
            "--redis-url",
            self.valkey.url,
            "--nats-url",
            self.nats.url,
            "--port",
            str(port),
        ]
        child = self._start("floor", cmd)
        wait_for_port(port, 30, child.proc)
        self.floor = HttpServer(child, f"http://127.0.0.1:{port}", port)
        return self.floor

    def stop_floor(self) -> None:
        if self.floor is not None:
            self._stop(self.floor.child)
            self.floor = None

    def run_to_end(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        """A child the caller waits for (``cpu.wait_cpu_seconds``)."""
        log = (self.folder / f"{name}.log").open("ab")
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return proc

    def stop(self) -> None:
        for child in reversed(list(self.children)):
            stop_child(child)
        self.children.clear()
