"""`waitroom bench` end to end at its smallest sizes: a private stack (real gateway, a
gateway of three processes, workers, valkey and nats processes, the floor app) measured
part by part; the run kept as JSON has a row for every part, every ratio to a floor is a
sane positive number, replay's digests are equal, and `--compare` against the run works.
No figure is asserted: the figures are the benchmark's output, not a test's."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.bench.cli import PARTS

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1500),  # every part, then a second run: minutes on a busy machine
    pytest.mark.skipif(shutil.which("wrk") is None, reason="no wrk: apt-get install wrk"),
]


def bench(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "waitroom.cli", "bench", "--quick", "--seconds", "1", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_every_part_gives_rows_with_sane_ratios_and_compare_works(tmp_path: Path) -> None:
    run = bench("--results", str(tmp_path), timeout=900)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    [kept] = list(tmp_path.glob("bench-*.json"))
    data = json.loads(kept.read_text())
    rows = data["rows"]
    assert {r["part"] for r in rows} == set(PARTS)
    assert not data["notes"], data["notes"]
    for row in rows:
        assert row["value"] > 0, row
        if row["floor"] is not None:
            assert row["ratio"] is not None, row
            assert math.isfinite(row["ratio"]), row
            assert 0 < row["ratio"] < 1000, row
    by_part = {r["part"]: r for r in rows}
    assert by_part["replay"]["extra"]["digests equal"] == 1.0
    assert by_part["streams"]["extra"]["refused"] == 0
    for row in rows:  # the table printed has every row
        assert row["name"][:38] in run.stdout

    again = bench("--only", "bare", "--results", str(tmp_path), "--compare", "last", timeout=300)
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-4000:]
    assert f"change against {kept}" in again.stdout
    change = again.stdout.split("change against", 1)[1]
    compared = next(line for line in change.splitlines() if line.startswith("bare "))
    assert "%" in compared.split("GET /healthz", 1)[1]
