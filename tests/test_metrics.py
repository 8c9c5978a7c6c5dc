"""/metrics is not public: on a gateway's main port only the bearer of
WAITROOM_METRICS_TOKEN is answered (anyone else gets a 404 like a path that does not
exist); WAITROOM_METRICS_PORT serves it without a token, on gateways and workers alike.
What is scraped is what shared/metric_names.py declares."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.metric_names import BY_NAME, BY_SAMPLE, Exporter
from shared.settings import Settings
from tests.helpers.api import METRICS, METRICS_TOKEN, RoomFactory, assert_error, bearer
from tests.helpers.servers import GatewayServer, ModuleProc, settings_env
from tests.helpers.wait import wait_until
from waitroom.processes import free_port, wait_for_port

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str, exporter: Exporter) -> Series:
    """Every sample, checked against the catalogue: a family this exporter declares, with
    the declared type and labels."""
    series: Series = {}
    for family in text_string_to_metric_families(text):
        declared = BY_NAME.get(family.name) or BY_SAMPLE.get(family.name)
        assert declared is not None, f"{family.name} is not in shared/metric_names.py"
        assert exporter in declared.exported_by, (family.name, exporter)
        for sample in family.samples:
            assert set(sample.labels) - {"le"} == set(declared.labels), sample
            series[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return series


def value(series: Series, name: str, **labels: str) -> float:
    return series.get((name, frozenset(labels.items())), 0.0)


async def scrape(url: str, exporter: Exporter, headers: dict[str, str] | None = None) -> Series:
    async with httpx.AsyncClient(timeout=10) as c:
        r = await c.get(url, headers=headers or {})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return parse(r.text, exporter)


async def test_main_port_answers_only_the_metrics_token(client: httpx.AsyncClient) -> None:
    refused = [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer wrong-" + METRICS_TOKEN[6:]},  # same length, other token
        {"Authorization": f"Bearer {METRICS_TOKEN}x"},
        {"Authorization": f"Basic {METRICS_TOKEN}"},
        {"Authorization": METRICS_TOKEN},
    ]
    for headers in refused:
        r = await client.get("/metrics", headers=headers)
        assert_error(r, 404, "not_found")
        assert "waitroom_" not in r.text
    unknown = await client.get("/no-such-path")
    assert_error(unknown, 404, "not_found")  # the same answer as a path that is not there
    r = await client.get("/metrics", headers=METRICS)
    assert r.status_code == 200
    series = parse(r.text, "gateway")
    assert value(series, "waitroom_outbox_bound") > 0
    assert value(series, "waitroom_ready") == 1
    assert value(series, "waitroom_store_up") == 1


async def test_without_a_token_configured_nobody_reads_the_main_port(settings: Settings) -> None:
    async with (
        GatewayServer(settings.with_changes(metrics_token="")) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=10) as c,
    ):
        for headers in ({}, {"Authorization": "Bearer"}, METRICS):
            assert_error(await c.get("/metrics", headers=headers), 404, "not_found")


async def test_metrics_port_serves_without_a_token(
    settings: Settings, make_room: RoomFactory
) -> None:
    port = free_port()
    room = await make_room(status="paused", max_active=7)
    async with (
        GatewayServer(settings.with_changes(metrics_port=port)) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=10) as c,
    ):
        me = (await c.post(f"/v1/rooms/{room}/enqueue")).json()
        assert (await c.post(f"/v1/rooms/{room}/heartbeat", headers=bearer(me["token"]))).is_success
        series = await scrape(f"http://127.0.0.1:{port}/metrics", "gateway")
        assert value(series, "waitroom_room_waiting", room=room) == 1
        assert value(series, "waitroom_room_max_active", room=room) == 7
        assert value(series, "waitroom_room_status", room=room, status="paused") == 1
        assert value(series, "waitroom_room_status", room=room, status="active") == 0
        assert value(series, "waitroom_heartbeats_total", room=room) == 1
        assert value(series, "waitroom_tokens_signed_total", type="queue") >= 1
        assert (
            value(
                series,
                "waitroom_http_requests_total",
                route="/v1/rooms/{room}/enqueue",
                status="201",
            )
            == 1
        )
        async with httpx.AsyncClient(timeout=10) as raw:
            other = await raw.get(f"http://127.0.0.1:{port}/healthz")
            assert other.status_code == 404  # the metrics port serves /metrics only
        # the main port still wants the token
        assert_error(await c.get("/metrics"), 404, "not_found")


@pytest.mark.slow
async def test_workers_serve_their_own_metrics(
    settings: Settings, make_room: RoomFactory, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    room = await make_room(max_active=2, release_rate=50, claim_window=1)
    tokens = [(await client.post(f"/v1/rooms/{room}/enqueue")).json()["token"] for _ in range(4)]
    ports = {"admission_worker": free_port(), "heartbeat_worker": free_port()}
    procs = [
        ModuleProc(
            module,
            settings_env(settings, WAITROOM_METRICS_PORT=str(port)),
            tmp_path / f"{module}.log",
        ).start()
        for module, port in ports.items()
    ]
    try:
        for proc, port in zip(procs, ports.values(), strict=True):
            wait_for_port(port, 20, proc.proc)
        admission = f"http://127.0.0.1:{ports['admission_worker']}/metrics"
        heartbeat = f"http://127.0.0.1:{ports['heartbeat_worker']}/metrics"

        async def all_admitted() -> Series | None:
            for token in tokens:  # people waiting keep their places
                await client.post(f"/v1/rooms/{room}/heartbeat", headers=bearer(token))
            series = await scrape(admission, "admission_worker")
            return series if value(series, "waitroom_admissions_total", room=room) == 4 else None

        # two admitted, their claims lapse (claim_window 1 s), the next two admitted
        series = await wait_until(all_admitted, seconds=20, every=0.3)
        assert value(series, "waitroom_lease_held", room=room, role="admission") == 1
        assert value(series, "waitroom_lease_changes_total", room=room, role="admission") == 1
        assert value(series, "waitroom_store_up") == 1
        assert value(series, "waitroom_nats_up") == 1

        async def expired_unclaimed() -> Series | None:
            series = await scrape(heartbeat, "heartbeat_worker")
            lapsed = value(series, "waitroom_expiries_total", room=room, reason="claim_timeout")
            return series if lapsed >= 2 else None

        series = await wait_until(expired_unclaimed, seconds=20, every=0.3)
        assert value(series, "waitroom_lease_held", room=room, role="heartbeat") == 1

        # one of the two relays holds the room's relay lease and delivered its events
        async def delivered() -> list[Series] | None:  # the expiries go out a moment later
            both = [
                await scrape(admission, "admission_worker"),
                await scrape(heartbeat, "heartbeat_worker"),
            ]
            published = sum(value(s, "waitroom_relay_published_total", room=room) for s in both)
            return both if published >= 4 + 4 + 2 else None  # enqueued, admitted, expired

        both = await wait_until(delivered, seconds=20, every=0.3)
        assert sum(value(s, "waitroom_relay_lag_seconds_count") for s in both) >= 4 + 4 + 2
        assert sum(value(s, "waitroom_lease_held", room=room, role="relay") for s in both) == 1
    finally:
        for proc in procs:
            proc.stop()
