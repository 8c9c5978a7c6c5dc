"""Every Prometheus metric family waitroom exports: its name, type, help text and labels.

This is the one definition the processes register their metrics from and that the
dashboard (deploy/grafana/) and the alert rules (deploy/prometheus/) are checked against
(tests/test_deploy.py), so a renamed metric cannot leave a silent panel or a dead alert.
Pure data: no registry, no I/O.

Exposition follows prometheus-client: a counter ``x`` is scraped as ``x_total`` (and
``x_created``), a histogram ``x`` as ``x_bucket`` (with ``le``), ``x_sum`` and ``x_count``.
Prometheus adds the target labels (``job``, ``instance``) to every series.

Per-room figures (``waitroom_room_*``) are read from the data store at scrape time by
every gateway, so each gateway reports the same value: aggregate them with ``max by
(room)``, never ``sum``. Counters are per process: ``sum`` them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MetricType = Literal["counter", "gauge", "histogram"]
Exporter = Literal["gateway", "admission_worker", "heartbeat_worker"]

GATEWAY: tuple[Exporter, ...] = ("gateway",)
WORKERS: tuple[Exporter, ...] = ("admission_worker", "heartbeat_worker")
EVERY_PROCESS: tuple[Exporter, ...] = ("gateway", "admission_worker", "heartbeat_worker")

TARGET_LABELS = ("job", "instance")
"""Labels Prometheus puts on every scraped series, whatever the family declares."""

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
RELAY_LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

EXPIRY_REASONS = ("heartbeat_timeout", "claim_timeout", "session_timeout")
"""Values of the ``reason`` label of ``waitroom_expiries`` (the reasons in shared/lua)."""
LEASE_ROLES = ("admission", "heartbeat", "relay")
"""Values of the ``role`` label of the lease families (shared.keys.LEASE_ROLES)."""
ROOM_STATUSES = ("active", "paused", "maintenance")
"""Values of the ``status`` label of ``waitroom_room_status``."""


@dataclass(frozen=True)
class MetricFamily:
    name: str
    type: MetricType
    help: str
    labels: tuple[str, ...]
    exported_by: tuple[Exporter, ...]
    buckets: tuple[float, ...] = ()

    def sample_names(self) -> tuple[str, ...]:
        """The series names a scrape shows for this family."""
        if self.type == "counter":
            return (f"{self.name}_total", f"{self.name}_created")
        if self.type == "histogram":
            return tuple(f"{self.name}{end}" for end in ("_bucket", "_sum", "_count", "_created"))
        return (self.name,)

    def sample_labels(self, sample: str) -> frozenset[str]:
        """Labels a series of this family carries once scraped (target labels included)."""
        extra = ("le",) if sample == f"{self.name}_bucket" else ()
        return frozenset((*self.labels, *TARGET_LABELS, *extra))


def _room_gauge(figure: str, help_text: str) -> MetricFamily:
    return MetricFamily(f"waitroom_room_{figure}", "gauge", help_text, ("room",), GATEWAY)


FAMILIES: tuple[MetricFamily, ...] = (
    # --- each room's live figures, read from the data store at scrape (gateways) ---
    _room_gauge("waiting", "People waiting in the room's line."),
    _room_gauge("admitted", "People admitted and not yet arrived at the site (to claim)."),
    _room_gauge("active", "People visiting the protected site now."),
    _room_gauge("used_units", "Capacity units in use (admitted + active; a party uses its size)."),
    _room_gauge("max_active", "The room's capacity in units (max_active)."),
    _room_gauge("admit_rate", "Admissions per second observed over about the last half minute."),
    _room_gauge("outbox", "Events in the room's outbox not yet delivered to JetStream."),
    _room_gauge(
        "outbox_age_seconds",
        "Seconds the oldest undelivered event of the room's outbox has waited (0 when empty).",
    ),
    MetricFamily(
        "waitroom_room_status",
        "gauge",
        "1 for the room's current status (active, paused or maintenance), 0 for the others.",
        ("room", "status"),
        GATEWAY,
    ),
    MetricFamily(
        "waitroom_outbox_bound",
        "gauge",
        "Undelivered events a room's outbox may hold before readiness fails "
        "(WAITROOM_OUTBOX_MAX; compare with waitroom_room_outbox).",
        (),
        EVERY_PROCESS,
    ),
    # --- what happens to people, counted where it happens ---
    MetricFamily(
        "waitroom_admissions",
        "counter",
        "People admitted by this admission worker, by room.",
        ("room",),
        ("admission_worker",),
    ),
    MetricFamily(
        "waitroom_expiries",
        "counter",
        "Places ended by the heartbeat worker, by room and reason "
        "(heartbeat_timeout, claim_timeout, session_timeout).",
        ("room", "reason"),
        ("heartbeat_worker",),
    ),
    MetricFamily(
        "waitroom_site_messages",
        "counter",
        "Messages of the protected site on NATS (waitroom-site.<room>.completed/.failed) "
        "by kind and outcome: ended (units freed), over (the visit had ended before), "
        "rejected (forged, expired or another room's token; not JSON), failed (store away).",
        ("kind", "outcome"),
        ("admission_worker",),
    ),
    MetricFamily(
        "waitroom_heartbeats",
        "counter",
        "Heartbeats this gateway accepted from people waiting, by room.",
        ("room",),
        GATEWAY,
    ),
    MetricFamily(
        "waitroom_site_reports",
        "counter",
        "Latency reports of the protected site this gateway got with session heartbeats, by "
        "outcome: kept, or dropped as unsigned, bad_mac, no_site_key or not_admitted.",
        ("outcome",),
        GATEWAY,
    ),
    MetricFamily(
        "waitroom_tokens_signed",
        "counter",
        "Tokens signed (not served from cache), by type (queue or access).",
        ("type",),
        GATEWAY,
    ),
    # --- the gateway's HTTP side ---
    MetricFamily(
        "waitroom_http_requests",
        "counter",
        "HTTP requests answered, by route and status.",
        ("route", "status"),
        GATEWAY,
    ),
    MetricFamily(
        "waitroom_http_request_seconds",
        "histogram",
        "Time to answer an HTTP request, by route.",
        ("route",),
        GATEWAY,
        LATENCY_BUCKETS,
    ),
    MetricFamily(
        "waitroom_sse_streams", "gauge", "Event streams open on this gateway.", (), GATEWAY
    ),
    MetricFamily(
        "waitroom_ready",
        "gauge",
        "1 while this gateway would answer /readyz?nats=optional with 200 "
        "(its data store answers; what load balancers ask).",
        (),
        GATEWAY,
    ),
    # --- events: outbox relay to JetStream (workers) ---
    MetricFamily(
        "waitroom_relay_lag_seconds",
        "histogram",
        "Seconds from an event's write to the outbox to JetStream's ack of its publish.",
        (),
        WORKERS,
        RELAY_LAG_BUCKETS,
    ),
    MetricFamily(
        "waitroom_relay_published",
        "counter",
        "Events this replica delivered to JetStream, by room.",
        ("room",),
        WORKERS,
    ),
    # --- per-room leases (workers) ---
    MetricFamily(
        "waitroom_lease_held",
        "gauge",
        "1 while this replica holds the room's lease for the role (admission, heartbeat, relay).",
        ("room", "role"),
        WORKERS,
    ),
    MetricFamily(
        "waitroom_lease_changes",
        "counter",
        "Times this replica took a room's lease for a role it did not hold.",
        ("room", "role"),
        WORKERS,
    ),
    # --- the servers behind every process ---
    MetricFamily(
        "waitroom_store_up",
        "gauge",
        "1 when the data store answered this process's last check.",
        (),
        EVERY_PROCESS,
    ),
    MetricFamily(
        "waitroom_nats_up",
        "gauge",
        "1 while this process is connected to NATS.",
        (),
        EVERY_PROCESS,
    ),
)

BY_NAME: dict[str, MetricFamily] = {family.name: family for family in FAMILIES}

BY_SAMPLE: dict[str, MetricFamily] = {
    sample: family for family in FAMILIES for sample in family.sample_names()
}
"""The family a scraped series name belongs to (``waitroom_http_requests_total`` -> ...)."""
