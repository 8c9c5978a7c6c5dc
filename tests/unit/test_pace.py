"""The pace of a room that follows its site: the controller's steps, the site's latency
from the guards' reports, and a guard's summary of its samples (pure functions)."""

from __future__ import annotations

import pytest

from admission_worker.pace import next_pace
from shared.site_latency import LatencyReport, recent, report_mac, report_signed, site_p95
from waitroom_site.latency import LatencySamples, percentile

pytestmark = pytest.mark.unit


def report(p95: float, n: int = 10, t: int = 0) -> LatencyReport:
    return LatencyReport(t=t, n=n, p50=p95 / 2, p95=p95, max=p95 * 2)


def test_a_slow_site_cuts_the_pace_in_proportion_at_most_by_half() -> None:
    assert next_pace(10.0, 10.0, 200, 250.0) == 8.0  # 25 % over: 0.8 of the pace
    assert next_pace(10.0, 10.0, 200, 400.0) == 5.0  # twice the target: half
    assert next_pace(10.0, 10.0, 200, 4000.0) == 5.0  # never more than half in one step


def test_a_fast_or_idle_site_raises_the_pace_step_by_step_up_to_the_release_rate() -> None:
    assert next_pace(2.0, 10.0, 200, 100.0) == 3.0  # below 80 % of the target: +10 %
    assert next_pace(2.0, 10.0, 200, None) == 3.0  # nobody on the site to slow down
    assert next_pace(9.5, 10.0, 200, 50.0) == 10.0  # never above release_rate
    assert next_pace(12.0, 10.0, 200, 180.0) == 10.0  # release_rate lowered meanwhile


def test_near_the_target_the_pace_holds() -> None:
    assert next_pace(4.0, 10.0, 200, 170.0) == 4.0
    assert next_pace(4.0, 10.0, 200, 200.0) == 4.0


def test_a_pace_cut_below_two_percent_stops_admissions_until_the_site_recovers() -> None:
    assert next_pace(0.3, 10.0, 200, 400.0) == 0.0
    assert next_pace(0.0, 10.0, 200, 400.0) == 0.0
    assert next_pace(0.0, 10.0, 200, 100.0) == 1.0  # recovered: it climbs back


def test_the_site_latency_is_the_median_of_the_reports_each_counting_once() -> None:
    assert site_p95([]) is None
    assert site_p95([report(100.0)]) == 100.0
    assert site_p95([report(100.0), report(900.0), report(300.0)]) == 300.0
    assert site_p95([report(100.0), report(900.0)]) == 100.0  # even: the lower middle
    # the samples a report claims do not weigh: three reports of 100 ms outvote two
    assert site_p95([report(900.0, n=10**9), *[report(100.0, n=1)] * 3, report(800.0)]) == 100.0


def test_one_report_cannot_outweigh_the_rest_by_claiming_many_samples() -> None:
    honest = [report(100.0, n=200) for _ in range(2)]
    forged = report(60_000.0, n=10**9)
    assert site_p95([*honest, forged]) == 100.0


def test_a_report_mac_binds_the_key_the_room_the_visit_and_the_bytes() -> None:
    key, body = "k" * 32, b'{"latency":{"count":1,"p50_ms":1,"p95_ms":2,"max_ms":3}}'
    mac = report_mac(key, "shop", "sub-1", body)
    assert report_signed(key, "shop", "sub-1", body, mac)
    assert report_signed(key, "shop", "sub-1", body, mac.upper())
    assert not report_signed(key, "shop", "sub-1", body + b" ", mac)
    assert not report_signed(key, "shop", "sub-2", body, mac)
    assert not report_signed(key, "other", "sub-1", body, mac)
    assert not report_signed("j" * 32, "shop", "sub-1", body, mac)
    assert not report_signed("", "shop", "sub-1", body, report_mac("", "shop", "sub-1", body))
    assert not report_signed(key, "shop", "sub-1", body, None)
    assert not report_signed(key, "shop", "sub-1", body, "not hex")
    assert not report_signed(key, "shop", "sub-1", body, "\u00e9" * 64)  # no error either


def test_only_reports_inside_the_window_count() -> None:
    reports = [report(100.0, t=0), report(300.0, t=9_000), report(500.0, t=12_000)]
    assert [r.p95 for r in recent(reports, now_ms=15_000)] == [300.0, 500.0]


def test_the_guard_sums_its_samples_up_and_starts_afresh() -> None:
    samples = LatencySamples()
    assert samples.take() is None
    for ms in range(1, 101):  # 1 .. 100 ms
        samples.add(ms / 1000)
    summary = samples.take()
    assert summary == {"count": 100, "p50_ms": 50.0, "p95_ms": 95.0, "max_ms": 100.0}
    assert samples.take() is None
    assert len(samples) == 0


def test_past_its_bound_the_guard_keeps_the_latest_samples_and_counts_all() -> None:
    samples = LatencySamples(max_samples=10)
    for ms in [1000.0] * 50 + [10.0] * 10:
        samples.add(ms / 1000)
    summary = samples.take()
    assert summary is not None
    assert summary["count"] == 60
    assert summary["max_ms"] == 10.0


def test_nearest_rank_percentiles() -> None:
    assert percentile([5.0], 0.95) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.95) == 4.0
