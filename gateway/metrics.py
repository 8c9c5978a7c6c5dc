"""Prometheus figures of one gateway process, plus each room's live figures at scrape.

Every family is made from the catalogue (shared/metric_names.py), which the dashboard and
the alert rules are checked against."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric

from shared.metric_names import BY_NAME, ROOM_STATUSES
from shared.metric_registry import counter, gauge, histogram
from shared.store import RoomFigures
from shared.tokens import TokenService

ROOM_FIGURES = (
    "waiting",
    "admitted",
    "active",
    "used_units",
    "max_active",
    "admit_rate",
    "outbox",
    "outbox_age_seconds",
)


class _Tallied:
    """A counter family read at scrape time from a tally the domain code keeps (tokens it
    signed, heartbeats it accepted), so that code needs no metrics object."""

    def __init__(self, name: str, tally: Tally[str] | dict[str, int]) -> None:
        self.family = BY_NAME[name]
        self.tally = tally

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            self.family.name, self.family.help, labels=list(self.family.labels)
        )
        for label, count in self.tally.items():
            family.add_metric([label], count)
        yield family


class GatewayMetrics:
    def __init__(
        self,
        tokens: TokenService,
        outbox_bound: int = 100_000,
        heartbeats: Tally[str] | None = None,
        site_reports: Tally[str] | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        gauge(self.registry, "gateway", "waitroom_outbox_bound").set(outbox_bound)
        self.requests = counter(self.registry, "gateway", "waitroom_http_requests")
        self.latency = histogram(self.registry, "gateway", "waitroom_http_request_seconds")
        self._series: dict[tuple[str, int], tuple[Counter, Histogram]] = {}
        """(route, status) -> its series (routes are templates: a bounded set)."""
        self.registry.register(_Tallied("waitroom_tokens_signed", tokens.signed))
        self.registry.register(
            _Tallied("waitroom_heartbeats", Tally() if heartbeats is None else heartbeats)
        )
        self.registry.register(
            _Tallied("waitroom_site_reports", Tally() if site_reports is None else site_reports)
        )
        self.room = {
            name: gauge(self.registry, "gateway", f"waitroom_room_{name}") for name in ROOM_FIGURES
        }
        self.room_status = gauge(self.registry, "gateway", "waitroom_room_status")
        self.sse_open = gauge(self.registry, "gateway", "waitroom_sse_streams")
        self.ready = gauge(self.registry, "gateway", "waitroom_ready")
        self.store_up = gauge(self.registry, "gateway", "waitroom_store_up")
        self.nats_up = gauge(self.registry, "gateway", "waitroom_nats_up")

    def observe(self, route: str, status: int, seconds: float) -> None:
        series = self._series.get((route, status))
        if series is None:  # a label lookup costs more than the count: kept per pair
            series = self.requests.labels(route, str(status)), self.latency.labels(route)
            self._series[(route, status)] = series
        series[0].inc()
        series[1].observe(seconds)

    def forget_rooms(self) -> None:
        """Drop every room's series before a scrape sets them again (a deleted room goes)."""
        for figure in self.room.values():
            figure.clear()
        self.room_status.clear()

    def set_room(self, room: str, figures: RoomFigures) -> None:
        values = {
            "waiting": figures.waiting,
            "admitted": figures.admitted,
            "active": figures.active,
            "used_units": figures.stat("used_units"),
            "max_active": int(float(figures.config.get("max_active") or 0)),
            "admit_rate": figures.admit_rate(),
            "outbox": figures.outbox,
            "outbox_age_seconds": figures.outbox_age,
        }
        for name, value in values.items():
            self.room[name].labels(room).set(value)
        status = figures.config.get("status", "active")
        for each in ROOM_STATUSES:
            self.room_status.labels(room, each).set(1 if each == status else 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
