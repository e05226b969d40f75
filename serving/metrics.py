"""Prometheus metrics of the search service (GET /metrics): requests, errors and latency per route template, and
what is served (model version, swaps, age of the latest champion check, whether the latest check failed), read
from the watcher at scrape time. Each app has its own registry, so several apps in one process do not mix."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from lensflow.serving.watcher import ChampionWatcher

# request latency buckets, seconds: a text search is ~10-20 ms, a photo ~30 ms, /describe ~0.5 s on 2 cores
BUCKETS = (0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNMATCHED = "unmatched"  # the route label of requests no route matched (keeps the label set bounded)


class ServedCollector(Collector):
    """What the watcher serves, as gauges and a counter (read when scraped, never stale)."""

    def __init__(self, watcher: ChampionWatcher):
        self.watcher = watcher

    def collect(self):
        w = self.watcher
        live = w.live
        served = GaugeMetricFamily("lensflow_champion_served", "1 when a champion (encoder + index) is served")
        served.add_metric([], 1 if live else 0)
        version = GaugeMetricFamily("lensflow_model_version", "registered model version being served", labels=["model"])
        if live:
            version.add_metric([live.served.champion.name], live.version)
        swaps = CounterMetricFamily("lensflow_champion_swaps", "champion swaps since the service started")
        swaps.add_metric([], w.swaps)
        age = GaugeMetricFamily(
            "lensflow_champion_check_age_seconds", "seconds since the watcher last checked the champion alias"
        )
        if w.checked_mono is not None:
            age.add_metric([], time.monotonic() - w.checked_mono)
        failing = GaugeMetricFamily(
            "lensflow_champion_check_failing", "1 when the latest champion check could not load the new pair"
        )
        failing.add_metric([], 1 if w.error else 0)
        yield from (served, version, swaps, age, failing)


class Metrics:
    """The app's registry and the request metrics the middleware records."""

    def __init__(self, watcher: ChampionWatcher):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "lensflow_http_requests",
            "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.errors = Counter(
            "lensflow_http_errors",
            "HTTP answers with status >= 400, by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "lensflow_http_request_duration_seconds",
            "time to answer, by route template and method",
            ["route", "method"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.registry.register(ServedCollector(watcher))
        ProcessCollector(registry=self.registry)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        if status >= 400:
            self.errors.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
