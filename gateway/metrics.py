"""Prometheus figures of one gateway process, plus each room's live figures at scrape."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric

from shared.store import RoomFigures
from shared.tokens import TokenService


class _SignedTokens:
    """Tokens this process signed, by type, read from the token service at scrape time."""

    def __init__(self, tokens: TokenService) -> None:
        self.tokens = tokens

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "waitroom_tokens_signed",
            "Tokens signed (not served from cache), by type.",
            labels=["type"],
        )
        for kind, count in self.tokens.signed.items():
            family.add_metric([kind], count)
        yield family


class GatewayMetrics:
    def __init__(self, tokens: TokenService, outbox_bound: int = 100_000) -> None:
        self.registry = CollectorRegistry()
        Gauge(
            "waitroom_outbox_bound",
            "Undelivered events a room's outbox may hold before readiness fails "
            "(compare with waitroom_room_outbox).",
            registry=self.registry,
        ).set(outbox_bound)
        self.requests = Counter(
            "waitroom_http_requests",
            "HTTP requests answered, by route and status.",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "waitroom_http_request_seconds",
            "Time to answer an HTTP request, by route.",
            ["route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.registry.register(_SignedTokens(tokens))
        self.room = {
            name: Gauge(
                f"waitroom_room_{name}",
                f"Live figure of a room: {name.replace('_', ' ')}.",
                ["room"],
                registry=self.registry,
            )
            for name in ("waiting", "admitted", "active", "used_units", "outbox", "admit_rate")
        }
        self.sse_open = Gauge(
            "waitroom_sse_streams", "Event streams open on this gateway.", registry=self.registry
        )
        self.store_up = Gauge(
            "waitroom_store_up",
            "1 when the data store answered the last scrape.",
            registry=self.registry,
        )
        self.nats_up = Gauge(
            "waitroom_nats_up",
            "1 while this gateway is connected to NATS.",
            registry=self.registry,
        )

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def set_room(self, room: str, figures: RoomFigures) -> None:
        self.room["waiting"].labels(room).set(figures.waiting)
        self.room["admitted"].labels(room).set(figures.admitted)
        self.room["active"].labels(room).set(figures.active)
        self.room["used_units"].labels(room).set(figures.stat("used_units"))
        self.room["outbox"].labels(room).set(figures.outbox)
        self.room["admit_rate"].labels(room).set(figures.admit_rate())

    def render(self) -> bytes:
        return generate_latest(self.registry)
