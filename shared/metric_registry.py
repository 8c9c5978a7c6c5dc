"""prometheus-client metrics made from the catalogue (shared/metric_names.py): a process
registers a family by its name, so its type, help text, labels and buckets are the ones
the dashboard and the alert rules are checked against."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.metric_names import BY_NAME, Exporter


def _family(name: str, exporter: Exporter, kind: str) -> tuple[str, list[str]]:
    family = BY_NAME[name]
    if family.type != kind:
        raise TypeError(f"{name} is a {family.type}, not a {kind}")
    if exporter not in family.exported_by:
        raise ValueError(f"{name} is not exported by the {exporter}")
    return family.help, list(family.labels)


def counter(registry: CollectorRegistry, exporter: Exporter, name: str) -> Counter:
    help_text, labels = _family(name, exporter, "counter")
    return Counter(name, help_text, labels, registry=registry)


def gauge(registry: CollectorRegistry, exporter: Exporter, name: str) -> Gauge:
    help_text, labels = _family(name, exporter, "gauge")
    return Gauge(name, help_text, labels, registry=registry)


def histogram(registry: CollectorRegistry, exporter: Exporter, name: str) -> Histogram:
    help_text, labels = _family(name, exporter, "histogram")
    buckets = BY_NAME[name].buckets
    return Histogram(name, help_text, labels, registry=registry, buckets=buckets)
