"""A private stack for a benchmark: valkey-server, nats-server and one gateway process."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from waitroom.processes import Child, Supervisor, free_port, start_backends, wait_for_port

ADMIN_KEY = "bench-admin-key-0123456789"


def start_gateway(sup: Supervisor, folder: Path) -> tuple[str, int, int]:
    """Backends plus ``python -m gateway`` (rate limits off); (base URL, port, process id)."""
    redis_url, nats_url = start_backends(sup, folder)
    port = free_port()
    env = dict(
        os.environ,
        WAITROOM_REDIS_URL=redis_url,
        WAITROOM_NATS_URL=nats_url,
        WAITROOM_KEYS_DIR=str(folder / "keys"),
        WAITROOM_ADMIN_KEY=ADMIN_KEY,
        WAITROOM_PORT=str(port),
        WAITROOM_RATE_LIMITS="false",
        WAITROOM_LOG_LEVEL="warning",
        WAITROOM_STREAMS_PER_ADDRESS="1000000",  # the load comes from one address
    )
    gateway = sup.add(Child("gateway", [sys.executable, "-m", "gateway"], env, folder / "gw.log"))
    wait_for_port(port, 20, gateway.proc)
    return f"http://127.0.0.1:{port}", port, gateway.process_id
