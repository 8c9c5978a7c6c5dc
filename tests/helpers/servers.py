"""Real servers and real processes for the tests: valkey-server, nats-server, the gateway
served by uvicorn on a loopback port, and worker processes that can be killed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Self

import nats
import uvicorn
from nats.js.api import DeliverPolicy
from redis.asyncio import Redis

from gateway.app import create_app
from gateway.serving import uvicorn_options
from shared import keys
from shared.events import Admitted, Completed, Event, Expired, Left, decode
from shared.nats_link import connect_options
from shared.settings import Settings
from tests.helpers.wait import ended_in
from waitroom.processes import free_port, nats_command, valkey_command, wait_for_port

ROOT = Path(__file__).resolve().parent.parent.parent
STOP_SECONDS = 60.0
"""A server or worker run in the test's loop that takes longer to stop is held by a task."""


@dataclass
class ServerProc:
    """A server process we start, kill -9 and start again on the same port and folder."""

    name: str
    port: int
    data_dir: Path
    proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        log = (self.data_dir.parent / f"{self.name}-{self.port}.log").open("ab")
        self.proc = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()
        wait_for_port(self.port, 15, self.proc)

    def kill(self) -> None:
        """kill -9, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class ValkeyProc(ServerProc):
    def command(self) -> list[str]:
        return valkey_command(self.port, self.data_dir, persist=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@dataclass
class NatsProc(ServerProc):
    """nats-server -js; with ``cluster_port``, a node of a JetStream cluster named
    ``cluster`` that routes to the nodes listening on ``routes`` (their cluster ports)."""

    cluster_port: int = 0
    routes: tuple[int, ...] = ()
    cluster: str = "waitroom-test"

    def command(self) -> list[str]:
        command = nats_command(self.port, self.data_dir)
        if self.cluster_port:
            command += [
                "--server_name",
                self.name,
                "--cluster_name",
                self.cluster,
                "--cluster",
                f"nats://127.0.0.1:{self.cluster_port}",
                "--routes",
                ",".join(f"nats://127.0.0.1:{port}" for port in self.routes),
            ]
        return command

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"


@dataclass
class Servers:
    """The data store and NATS the tests use (started here, or given by the environment,
    then ``valkey``/``nats`` are None and tests that kill servers skip)."""

    redis_url: str
    nats_url: str
    valkey: ValkeyProc | None
    nats: NatsProc | None


class AppServer:
    """An ASGI app served by uvicorn on a free loopback port, in this event loop."""

    def __init__(
        self, app: Any, *, port: int | None = None, lifespan: Literal["on", "off"] = "on"
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = app
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan=lifespan,
            backlog=4096,
            timeout_graceful_shutdown=2,
            # only the app decides whose X-Forwarded-* it believes (uvicorn would trust
            # loopback peers by default)
            proxy_headers=False,
        )
        self.server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        if self._task is not None:
            await ended_in(self._task, STOP_SECONDS, "the server's shutdown")


class GatewayServer(AppServer):
    """The real gateway app (create_app) served on a free loopback port, with the uvicorn
    options ``python -m gateway`` uses."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings.with_changes(port=free_port())
        options = uvicorn_options(self.settings)
        super().__init__(create_app(self.settings), port=self.settings.port)
        for name in ("http", "limit_concurrency", "timeout_keep_alive"):
            setattr(self.server.config, name, options[name])


@dataclass
class ModuleProc:
    """``python -m gateway`` / ``admission_worker`` / ``heartbeat_worker`` as a real
    child process, to stop gracefully or kill -9."""

    module: str
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = field(default=None)

    def start(self) -> ModuleProc:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        return self

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, seconds: float = 15) -> int:
        assert self.proc is not None
        return self.proc.wait(seconds)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that makes a child process use these settings."""
    env = dict(os.environ)
    env.update(
        WAITROOM_REDIS_URL=settings.redis_url,
        WAITROOM_NATS_URL=settings.nats_url,
        WAITROOM_KEYS_DIR=str(settings.keys_dir),
        WAITROOM_ADMIN_KEY=settings.admin_key,
        WAITROOM_METRICS_TOKEN=settings.metrics_token,
        WAITROOM_SITE_KEY=settings.site_key,
        WAITROOM_STREAM=settings.stream_name,
        WAITROOM_ADMISSION_TICK_MS=str(settings.admission_tick_ms),
        WAITROOM_HEARTBEAT_TICK_MS=str(settings.heartbeat_tick_ms),
        WAITROOM_LEASE_MS=str(settings.lease_ms),
        WAITROOM_RATE_LIMITS="true" if settings.rate_limits.enabled else "false",
        WAITROOM_LOG_JSON="true",
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env


async def room_events(
    nats_url: str,
    room: str,
    *,
    settle: float = 0.5,
    stream: str = "WAITROOM",
    tls_ca: Path | None = None,
) -> list[Event]:
    """Every event of a room on the stream, from the start, in stream order."""
    nc = await nats.connect(nats_url, **connect_options(tls_ca, None))
    try:
        js = nc.jetstream()
        sub = await js.subscribe(
            f"waitroom.{room}.>",
            stream=stream,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL,
        )
        out: list[Event] = []
        while True:
            try:
                msg = await sub.next_msg(timeout=settle)
            except nats.errors.TimeoutError:
                break
            out.append(decode(msg.data))
        await sub.unsubscribe()
        return out
    finally:
        await nc.close()


def used_units_replayed(events: list[Event]) -> list[int]:
    """Used units after every event, computed from the stream alone."""
    used, holders, out = 0, {}, []
    for e in events:
        if isinstance(e, Admitted):
            used += e.size
            holders[e.position_id] = e.size
        elif isinstance(e, Completed | Expired | Left) and e.from_state in ("admitted", "active"):
            used -= holders.pop(e.position_id)
        out.append(used)
    return out


async def outbox_drained(redis: Redis, room: str) -> bool:
    return int(await redis.xlen(keys.RoomKeys(room).outbox)) == 0


@contextlib.asynccontextmanager
async def in_process_workers(settings: Settings) -> AsyncIterator[None]:
    """Both workers (with the relay) running as tasks in this loop."""
    from admission_worker.worker import run as run_admission
    from heartbeat_worker.worker import run as run_heartbeat
    from shared.worker_process import worker_context

    stop = asyncio.Event()
    async with (
        worker_context(settings, "admission") as actx,
        worker_context(settings, "heartbeat") as hctx,
    ):
        tasks = [
            asyncio.create_task(run_admission(actx, stop)),
            asyncio.create_task(run_heartbeat(hctx, stop)),
        ]
        try:
            yield
        finally:
            stop.set()
            for task in tasks:
                await ended_in(task, STOP_SECONDS, "an in-process worker's stop")


def run_recover(settings: Settings, *flags: str, status: int = 0) -> str:
    """``waitroom recover --quiet`` as an operator runs it, against these settings; asserts
    its exit status and answers what it printed."""
    done = subprocess.run(
        [sys.executable, "-m", "waitroom.cli", "recover", "--quiet", *flags],
        env=settings_env(settings),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == status, done.stdout + done.stderr
    return done.stdout
