"""Prometheus figures of one worker process (admission or heartbeat): its leases, its
relay, the servers it talks to. Each worker adds its own counters (admissions, expiries)
to ``registry``; WAITROOM_METRICS_PORT serves them (shared/metrics_server.py)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from shared.metric_names import Exporter
from shared.metric_registry import counter, gauge, histogram


class WorkerMetrics:
    def __init__(self, exporter: Exporter, outbox_bound: int) -> None:
        self.exporter = exporter
        self.registry = CollectorRegistry()
        gauge(self.registry, exporter, "waitroom_outbox_bound").set(outbox_bound)
        self.store_up = gauge(self.registry, exporter, "waitroom_store_up")
        self.nats_up = gauge(self.registry, exporter, "waitroom_nats_up")
        self.relay_lag = histogram(self.registry, exporter, "waitroom_relay_lag_seconds")
        self.relay_published = counter(self.registry, exporter, "waitroom_relay_published")
        self.lease_held = gauge(self.registry, exporter, "waitroom_lease_held")
        self.lease_changes = counter(self.registry, exporter, "waitroom_lease_changes")

    def lease_taken(self, room: str, role: str) -> None:
        self.lease_changes.labels(room, role).inc()
        self.lease_held.labels(room, role).set(1)

    def lease_gone(self, room: str, role: str) -> None:
        self.lease_held.labels(room, role).set(0)

    def render(self, *, nats_connected: bool) -> bytes:
        self.nats_up.set(1 if nats_connected else 0)
        return generate_latest(self.registry)
