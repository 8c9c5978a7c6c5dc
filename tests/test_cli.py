"""The `waitroom` command's key management and worker probe, and reading settings."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.settings import Settings, SettingsError
from shared.tokens import KeyRing
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


def test_settings_from_env() -> None:
    s = Settings.from_env(
        {
            "WAITROOM_PORT": "9001",
            "WAITROOM_LOG_LEVEL": "",
            "WAITROOM_QUEUE_TOKEN_ALG": "",
            "WAITROOM_TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.1",
            "WAITROOM_RATE_LIMITS": "off",
        }
    )
    assert s.port == 9001
    assert s.log_level == "info"  # empty means unset
    assert s.queue_token_alg == "RS256"
    assert len(s.trusted_proxies) == 2
    assert s.rate_limits.enabled is False
    for bad in (
        {"WAITROOM_PORT": "eighty"},
        {"WAITROOM_LEASE_MS": "5"},
        {"WAITROOM_TRUSTED_PROXIES": "not-a-cidr"},
        {"WAITROOM_RELAY": "maybe"},
        {"WAITROOM_QUEUE_TOKEN_ALG": "HS256"},
    ):
        with pytest.raises(SettingsError):
            Settings.from_env(bad)
