"""``waitroom up`` starts the whole stack, serves a full visit, and stops leaving nothing."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from waitroom.processes import free_port

ROOT = Path(__file__).resolve().parent.parent


def _gone(process_id: int) -> bool:
    try:
        os.kill(process_id, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.slow
def test_waitroom_up_serves_a_visit_and_stops_cleanly(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAITROOM_")}
    env["PYTHONPATH"] = str(ROOT)
    cmd = [
        sys.executable, "-m", "waitroom.cli", "up",
        "--data-dir", str(tmp_path / "data"),
        "--port", str(free_port()),
        "--demo-port", str(free_port()),
        "--redis-port", str(free_port()),
        "--nats-port", str(free_port()),
        "--release-rate", "20",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline().decode()
            lines.append(line)
            if "Press Ctrl-C" in line or not line:
                break
        assert any("waitroom is up" in line for line in lines), "".join(lines)
        up_json = tmp_path / "data" / "up.json"
        state = json.loads(up_json.read_text())
        # it holds the admin key: nobody but its owner may read it, nor the folder
        assert stat.S_IMODE(up_json.stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / "data" / "admin-key").stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700
        base = state["gateway_url"]
        with httpx.Client(base_url=base, timeout=10) as client:
            me = client.post(f"/v1/rooms/{state['room']}/enqueue")
            assert me.status_code == 201, me.text
            auth = {"Authorization": f"Bearer {me.json()['token']}"}
            status: dict[str, object] = {}
            for _ in range(200):
                status = client.get(f"/v1/rooms/{state['room']}/status", headers=auth).json()
                if status["state"] == "admitted":
                    break
                time.sleep(0.05)
            assert status["state"] == "admitted", status
            go = client.get(str(status["redirect_url"]), follow_redirects=False)
            assert go.status_code == 303
            target = go.headers["location"]
            assert target.startswith(state["demo_url"])
            with httpx.Client(timeout=10, follow_redirects=True) as browser:
                page = browser.get(target)  # the site moves the token into a cookie
                assert "You're in" in page.text
                assert "waitroom_token" not in str(page.url)
                done = browser.post(state["demo_url"] + "done")  # "I'm done": slot freed
                assert "Thanks" in done.text
            admin = {"Authorization": f"Bearer {state['admin_key']}"}
            figures = client.get(f"/v1/admin/rooms/{state['room']}", headers=admin).json()
            assert figures["figures"]["completed_total"] == 1
            assert figures["figures"]["used_units"] == 0
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(60)
        out = proc.stdout.read().decode()
        proc.stdout.close()
    assert code == 0, out
    assert "stopped." in out
    process_ids = state["process_ids"].values()
    assert all(_gone(process_id) for process_id in process_ids), state["process_ids"]
