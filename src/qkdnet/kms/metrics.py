"""Prometheus metrics of one KME (served at ``/metrics``).

* ``qkdnet_kme_key_units{link,state}``: key units in the store per link and state, read from the
  store at scrape time (available, granted to a slave, used);
* ``qkdnet_kme_keys_delivered_total{peer_kme,method}`` and ``qkdnet_kme_key_units_ingested_total``;
* ``qkdnet_kme_request_seconds{route}``: request latency histogram;
* ``qkdnet_kme_internal_errors_total``: requests that failed inside the KME (should stay 0).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from qkdnet.kms.store import KeyStore

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _StoreCollector(Collector):
    def __init__(self, kme_id: str, store: KeyStore) -> None:
        self.kme_id = kme_id
        self.store = store

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "qkdnet_kme_key_units", "Key units in the store", labels=["kme", "link", "state"]
        )
        for link, states in self.store.counts().items():
            for state, n in states.items():
                family.add_metric([self.kme_id, link, state], n)
        yield family


class KMEMetrics:
    """The metrics registry of one KME (one registry per KME, so several fit in one process)."""

    def __init__(self, kme_id: str, store: KeyStore | None = None) -> None:
        self.kme_id = kme_id
        self.registry = CollectorRegistry()
        if store is not None:
            self.registry.register(_StoreCollector(kme_id, store))
        self._delivered = Counter(
            "qkdnet_kme_keys_delivered",
            "Keys delivered to SAEs",
            ["kme", "peer_kme", "method"],
            registry=self.registry,
        )
        self._ingested = Counter(
            "qkdnet_kme_key_units_ingested",
            "Key units pushed by QKD modules",
            ["kme", "peer_kme"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "qkdnet_kme_request_seconds",
            "HTTP request latency",
            ["kme", "route"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0),
            registry=self.registry,
        )
        self.internal_errors = Counter(
            "qkdnet_kme_internal_errors",
            "Requests that failed inside the KME",
            ["kme"],
            registry=self.registry,
        )

    def delivered(self, peer_kme: str, method: str, n: int) -> None:
        """Count ``n`` keys delivered by ``method`` towards ``peer_kme``."""
        self._delivered.labels(self.kme_id, peer_kme, method).inc(n)

    def ingested(self, peer_kme: str, n: int) -> None:
        """Count ``n`` units pushed for the link to ``peer_kme``."""
        self._ingested.labels(self.kme_id, peer_kme).inc(n)

    def observe(self, route: str, seconds: float) -> None:
        """Record the latency of one request."""
        self.latency.labels(self.kme_id, route).observe(seconds)

    def internal_error(self) -> None:
        """Count one request that failed inside the KME."""
        self.internal_errors.labels(self.kme_id).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
