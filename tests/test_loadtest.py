"""`waitroom loadtest` end to end: a short headless locust run against a private stack
(real gateway, workers, valkey and nats processes) writes a report whose invariants hold:
no capacity overshoot, no admission-order inversion, a plot written."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

# found, not imported: importing locust patches this process with gevent
LOAD_EXTRA = all(importlib.util.find_spec(name) for name in ("locust", "matplotlib"))
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not LOAD_EXTRA, reason="no load extra: pip install -e '.[load]'"),
]


def test_loadtest_report_holds_its_invariants(tmp_path: Path) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "waitroom.cli",
            "loadtest",
            "--users",
            "40",
            "--spawn-rate",
            "20",
            "--duration",
            "15",
            "--stop-timeout",
            "3",
            "--max-active",
            "8",
            "--release-rate",
            "4",
            "--visit-seconds",
            "2",
            "--results",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    [folder] = list(tmp_path.glob("loadtest-*"))
    report = json.loads((folder / "report.json").read_text())
    assert report["ok"] is True
    assert report["max_overshoot"] == 0
    assert report["inversions"] == 0
    assert report["admitted_events"] > 0
    assert report["samples"], "the admin figures were never sampled"
    assert any(s["waiting"] > 0 for s in report["samples"])
    assert max(s["used_units"] for s in report["samples"]) <= 8
    by_name = {e["name"]: e for e in report["endpoints"]}
    assert by_name["/v1/rooms/[room]/enqueue"]["requests"] > 0
    assert by_name["/rooms/[room]/go"]["requests"] > 0
    png = folder / "figures.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Invariants" in (folder / "report.md").read_text()
