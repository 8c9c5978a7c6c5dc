"""The `waitroom` command's key management and worker probe (settings: tests/unit)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from shared.keyring import KeyRing
from shared.settings import Settings
from tests.helpers.servers import ROOT, ModuleProc, settings_env


def waitroom(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "waitroom.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_keys_rotate_list_retire(tmp_path: Path) -> None:
    first = waitroom("keys", "rotate", "--keys-dir", str(tmp_path))
    assert first.returncode == 0, first.stderr
    assert "signs now" in first.stdout  # the first key of a kind signs at once
    second = waitroom("keys", "rotate", "--keys-dir", str(tmp_path), "--activate-after", "600")
    assert "signs in 600s" in second.stdout
    listed = waitroom("keys", "list", "--keys-dir", str(tmp_path)).stdout.splitlines()
    marks = dict(line.split("\t") for line in listed)
    assert sorted(marks.values()) == ["pending", "signing"]
    assert waitroom("keys", "retire", "--keys-dir", str(tmp_path), "../x").returncode == 2
    ring = KeyRing(tmp_path)
    assert len(ring.jwks()["keys"]) == 2  # the pending key is published already
    pending = next(kid for kid, mark in marks.items() if mark == "pending")
    signing = ring.signer("rsa").kid
    assert signing != pending
    gone = waitroom("keys", "retire", "--keys-dir", str(tmp_path), signing)
    assert gone.returncode == 0
    assert waitroom("keys", "retire", "--keys-dir", str(tmp_path), signing).returncode == 1
    ec = waitroom("keys", "rotate", "--keys-dir", str(tmp_path), "--kind", "ec")
    assert "kept private" in ec.stdout
    assert len(KeyRing(tmp_path).jwks()["keys"]) == 1  # ec keys are never published


def test_probe_tells_a_live_worker_from_a_dead_one(settings: Settings, tmp_path: Path) -> None:
    env = settings_env(settings, WAITROOM_INSTANCE="probe-me")
    worker = ModuleProc("admission_worker", env, tmp_path / "w.log").start()
    try:
        for _ in range(100):
            alive = waitroom("probe", "admission", env=env)
            if alive.returncode == 0:
                break
            time.sleep(0.1)
        assert alive.returncode == 0, alive.stderr
        other = waitroom("probe", "admission", "--instance", "nobody", env=env)
        assert other.returncode == 1
        assert waitroom("probe", "heartbeat", env=env).returncode == 1
    finally:
        worker.stop()
    assert waitroom("probe", "admission", env=env).returncode == 1  # it left on SIGTERM


def test_unusable_settings_stop_each_part_with_a_message(tmp_path: Path) -> None:
    env = {k: v for k, v in settings_env(Settings()).items() if not k.startswith("WAITROOM_")}
    env.update(WAITROOM_REDIS_URL="http://db:6379", WAITROOM_LEASE_MS="5")
    refused = waitroom("digest", env=env)
    assert refused.returncode == 1
    assert refused.stderr.startswith("waitroom: cannot start, the environment is wrong:")
    assert "WAITROOM_REDIS_URL must be a URL starting with redis://" in refused.stderr
    assert "WAITROOM_LEASE_MS must be at least 100" in refused.stderr
    for module in ("gateway", "admission_worker", "heartbeat_worker"):
        proc = ModuleProc(module, env, tmp_path / f"{module}.log").start()
        assert proc.wait() == 1
        said = (tmp_path / f"{module}.log").read_text()
        assert f"python -m {module}: cannot start" in said
        assert "WAITROOM_LEASE_MS must be at least 100" in said
