"""One gateway pod using its cores: WAITROOM_WORKERS server processes on one port, each a
full gateway, all stopped cleanly by one SIGTERM."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from shared.settings import Settings
from tests.helpers.api import ADMIN, create_room
from tests.helpers.servers import ModuleProc, settings_env
from tests.helpers.wait import wait_until
from waitroom.processes import free_port, wait_for_port

pytestmark = pytest.mark.slow


def children(process_id: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == process_id:
            found.add(int(stat.parent.name))
    return found


async def test_several_server_processes_share_one_port_and_stop_together(
    settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    env = settings_env(settings, WAITROOM_PORT=str(port), WAITROOM_WORKERS="3")
    gateway = ModuleProc("gateway", env, tmp_path / "gw.log").start()
    assert gateway.proc is not None
    try:
        wait_for_port(port, 30, gateway.proc)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            room = "workers-" + settings.instance
            await create_room(c, room, status="paused")
            joined = []
            for _ in range(30):  # new connections, spread over the processes by the kernel
                async with httpx.AsyncClient(base_url=str(c.base_url), timeout=10) as one:
                    r = await one.post(f"/v1/rooms/{room}/enqueue")
                    assert r.status_code == 201, r.text
                    joined.append(r.json())
            assert sorted(j["position"] for j in joined) == list(range(1, 31))
            figures = (await c.get(f"/v1/admin/rooms/{room}", headers=ADMIN)).json()
            assert figures["figures"]["waiting"] == 30
        workers = children(gateway.proc.pid)
        assert len(workers) >= 3, workers
    finally:
        gateway.signal(signal.SIGTERM)
    assert gateway.wait(30) == 0

    async def all_gone() -> bool:
        return not (workers & running())

    await wait_until(all_gone, seconds=10)


def running() -> set[int]:
    return {int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()}
