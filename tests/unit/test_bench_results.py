"""The benchmark's pure parts: a row's ratio, the table it prints, the JSON kept of a run,
which earlier run `--compare last` finds, the change printed against it; and the load
test's admission-order inversions and admission rates."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from loadtest.bench import results
from loadtest.bench.cli import PARTS, chosen_parts
from loadtest.bench.parts.http_calls import Measured, _row
from loadtest.bench.wrk import WrkResult
from loadtest.run import Sample, admission_inversions, admission_rates

pytestmark = pytest.mark.unit


def a_run(started: str = "2026-01-02T03:04:05Z", status_us: float = 300.0) -> results.Run:
    run = results.Run(started=started, options={"quick": True}, machine={"cpu": "test cpu"})
    run.add(
        results.Row(
            "status",
            "status of a repeat caller",
            "us CPU/call",
            value=status_us,
            floor=200.0,
            rate=2500.0,
            p50_ms=1.5,
            p99_ms=12.25,
            extra={"app us": 280.0},
        )
    )
    run.add(results.Row("push", "hold 200 streams open, idle", "us CPU/stream/s", 40.0, 8.0))
    run.add(results.Row("scale", "no floor here", "ms", 3.0))
    run.floors["status"] = "a token verified and one Lua call"
    run.notes.append("something worth knowing")
    return run


def test_a_ratio_is_the_value_over_its_floor_and_none_without_one() -> None:
    run = a_run()
    assert run.rows[0].ratio == pytest.approx(1.5)
    assert run.rows[2].ratio is None
    assert results.Row("x", "zero floor", "us", 1.0, floor=0.0).ratio is None


def test_the_table_has_every_row_its_ratio_floors_and_notes() -> None:
    out = io.StringIO()
    results.print_table(a_run(), out)
    text = out.getvalue()
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["part", "measurement", "value"]
    status = next(line for line in lines if line.startswith("status"))
    assert "1.50" in status  # x floor
    assert "2,500" in status  # peak/s with a thousands separator
    assert "12.2" in status or "12.3" in status  # p99
    idle = next(line for line in lines if line.startswith("push"))
    assert "5.00" in idle
    no_floor = next(line for line in lines if line.startswith("scale"))
    assert no_floor.split()[-4:] == ["-", "-", "-", "-"]  # ratio, rate, p50, p99
    assert "(app us 280.0)" in text
    assert "a token verified and one Lua call" in text
    assert "- something worth knowing" in text


def test_a_run_is_kept_as_json_with_ratios(tmp_path: Path) -> None:
    kept = results.save(a_run(), tmp_path)
    assert kept.name == "bench-20260102T030405Z.json"
    data = json.loads(kept.read_text())
    assert data["rows"][0]["ratio"] == pytest.approx(1.5)
    assert data["rows"][2]["ratio"] is None
    assert data["machine"]["cpu"] == "test cpu"
    assert data["floors"]["status"]


def test_compare_last_finds_the_newest_other_run(tmp_path: Path) -> None:
    older = results.save(a_run("2026-01-01T00:00:00Z"), tmp_path)
    newer = results.save(a_run("2026-01-03T00:00:00Z"), tmp_path)
    current = results.save(a_run("2026-01-04T00:00:00Z"), tmp_path)
    assert results.find_earlier("last", tmp_path, exclude=current) == newer
    assert results.find_earlier(str(older), tmp_path) == older
    with pytest.raises(FileNotFoundError):
        results.find_earlier("last", tmp_path / "none")


def test_the_change_is_the_ratio_now_against_then(tmp_path: Path) -> None:
    then = results.save(a_run("2026-01-01T00:00:00Z", status_us=300.0), tmp_path)
    now = a_run("2026-01-02T00:00:00Z", status_us=240.0)  # ratio 1.5 -> 1.2: -20 %
    now.add(results.Row("relay", "a row the earlier run lacks", "us CPU/event", 10.0, 5.0))
    out = io.StringIO()
    results.print_compare(now, then, out)
    lines = out.getvalue().splitlines()
    status = next(line for line in lines if line.startswith("status"))
    assert "-20.0%" in status
    assert "1.50" in status
    assert "1.20" in status
    assert "(new)" in next(line for line in lines if line.startswith("relay"))
    no_floor = next(line for line in lines if line.startswith("scale"))
    assert "%" not in no_floor


def _measured(parts: dict[str, float], counted: tuple[str, ...]) -> Measured:
    run = WrkResult(1000, 1.0, 0, 1.0, 2.0)
    cpu = sum(us for name, us in parts.items() if name in counted)
    return Measured(cpu, parts, run, run, counted)


def test_servers_apart_sets_valkey_and_nats_aside_only_where_they_were_counted() -> None:
    """The issue's own reading: the gateway and workers against the floor app, valkey's
    and nats' CPU taken out of both sides; a row that counts no server has none."""
    real = _measured(
        {"app": 300.0, "workers": 50.0, "valkey": 90.0, "nats": 60.0},
        ("app", "workers", "valkey", "nats"),
    )
    floor = _measured({"floor": 700.0, "valkey": 60.0, "nats": 40.0}, ("floor", "valkey", "nats"))
    row = _row("enqueue", "join", real, floor)
    assert row.ratio == pytest.approx(500 / 800)
    assert row.extra["x floor, servers apart"] == pytest.approx(350 / 700)
    bare = _row(
        "bare",
        "GET /healthz",
        _measured({"app": 116.0, "valkey": 6.0, "nats": 0.0}, ("app",)),
        _measured({"floor": 70.0, "valkey": 9.5, "nats": 0.0}, ("floor",)),
    )
    assert "x floor, servers apart" not in bare.extra


def test_parts_are_checked_by_name() -> None:
    assert chosen_parts("") == set(PARTS)
    assert chosen_parts("status, relay") == {"status", "relay"}
    with pytest.raises(SystemExit, match="unknown part"):
        chosen_parts("status,warp")


def test_an_admission_out_of_arrival_order_within_a_priority_is_an_inversion() -> None:
    events = [
        {"type": "enqueued", "position_id": "a", "priority": 0},
        {"type": "enqueued", "position_id": "b", "priority": 0},
        {"type": "enqueued", "position_id": "v", "priority": 5},
        {"type": "enqueued", "position_id": "c", "priority": 0},
        {"type": "admitted", "position_id": "v", "arrival": 3},  # a higher priority first
        {"type": "admitted", "position_id": "a", "arrival": 1},
        {"type": "admitted", "position_id": "c", "arrival": 4},
        {"type": "admitted", "position_id": "b", "arrival": 2},  # after c: inverted
    ]
    assert admission_inversions(events) == (1, 4)
    assert admission_inversions(events[:-1]) == (0, 3)


def sample(t: float, waiting: int, admitted_total: int) -> Sample:
    return Sample(t, waiting, 0, 0, 0, 10, admitted_total, 0)


def test_admission_rates_over_the_run_and_while_people_wait() -> None:
    samples = [sample(0, 5, 0), sample(1, 5, 2), sample(2, 0, 4), sample(4, 0, 4)]
    overall, while_waiting = admission_rates(samples)
    assert overall == pytest.approx(1.0)  # 4 admitted in 4 s
    assert while_waiting == pytest.approx(2.0)  # 4 in the 2 s people waited
    assert admission_rates(samples[:1]) == (0.0, 0.0)
