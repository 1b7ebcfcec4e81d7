"""`GET /metrics`: Prometheus metrics (prometheus_client) for requests, the explanation cache,
the models and the audit jobs.

Labels never hold input values or ids: a request is counted under its route template
(`/v1/explanations/<id>`, not the path), "unmatched" when no route matches; methods outside
the standard ones count as "other". Requests are measured around the whole WSGI app, so the
overload gate's 503 and 504 are counted too.

Under `explainer serve` with several workers, PROMETHEUS_MULTIPROC_DIR is set (api.server)
and the counts of all workers are summed at every scrape (prometheus_client's multiprocess
mode). Each worker then copies its live cache and model figures into the metric files every
SYNC_S seconds (and the scraping worker just before it answers); prometheus_client's process
metrics are not given in that mode. With one process they are, and the figures are read live.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, get_args

from flask import Flask, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from werkzeug.exceptions import HTTPException

from api.observability import UNMATCHED
from api.routes.audits import STORE
from api.runtime import Runtime
from explainer.audit.store import AuditStore, Status

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
SYNC_S = 5.0


def multiprocess_mode() -> bool:
    """Whether prometheus_client keeps its values in PROMETHEUS_MULTIPROC_DIR's files."""
    return MULTIPROC_ENV in os.environ


class RequestMetrics:
    """WSGI middleware: counts requests and times them by route template and method."""

    def __init__(self, app: Flask, registry: CollectorRegistry | None) -> None:
        self.app = app
        self.inner: WSGIApplication = app.wsgi_app
        self.requests = Counter(
            "explainer_http_requests",
            "HTTP requests by route template, method and status code",
            ["route", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "explainer_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template and method",
            ["route", "method"],
            buckets=BUCKETS_S,
            registry=registry,
        )

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        route = self._route(environ)
        method = environ.get("REQUEST_METHOD", "")
        method = method if method in METHODS else "other"
        status = ["500"]  # when the app raises before it starts its response

        def start(status_line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status[0] = status_line.split(" ", 1)[0]
            return start_response(status_line, headers, exc_info)

        try:
            return self.inner(environ, start)
        finally:
            self.requests.labels(route, method, status[0]).inc()
            self.latency.labels(route, method).observe(time.perf_counter() - started)

    def _route(self, environ: WSGIEnvironment) -> str:
        try:
            rule, _ = self.app.url_map.bind_to_environ(environ).match(return_rule=True)
        except HTTPException:  # no route, wrong method, or a redirect
            return UNMATCHED
        return str(rule.rule)


class LiveFigures:
    """This worker's explanation cache and model counts, copied into metrics by `sync()`."""

    def __init__(self, state: Runtime, registry: CollectorRegistry | None) -> None:
        self.state = state
        self.hits = Counter(
            "explainer_explanation_cache_hits", "Explanation cache hits", registry=registry
        )
        self.misses = Counter(
            "explainer_explanation_cache_misses", "Explanation cache misses", registry=registry
        )
        self.entries = Gauge(
            "explainer_explanation_cache_entries",
            "Explanations held in the cache (summed over workers)",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.loaded = Gauge(
            "explainer_models_loaded",
            "Models loaded and serving (with several workers: the fewest any worker serves)",
            registry=registry,
            multiprocess_mode="livemin",
        )
        self.failed = Gauge(
            "explainer_models_failed",
            "Models that failed to load (with several workers: the most in any worker)",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self._seen = (0, 0)
        self._lock = threading.Lock()

    def sync(self) -> None:
        """Copy the live figures: counters move on by what happened since the last sync."""
        with self._lock:
            self.loaded.set(len(self.state.repository.handles))
            self.failed.set(len(self.state.repository.errors))
            if self.state.engine is None:
                return
            cache = self.state.engine.explanations
            hits, misses = cache.hits, cache.misses
            self.hits.inc(hits - self._seen[0])
            self.misses.inc(misses - self._seen[1])
            self._seen = (hits, misses)
            self.entries.set(len(cache))

    def sync_forever(self) -> None:
        """Keep the metric files current while this worker runs (multiprocess mode)."""
        while True:
            self.sync()
            time.sleep(SYNC_S)


class AuditJobs(Collector):
    """Audit jobs by status, counted in the shared database at scrape time."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "explainer_audit_jobs", "Audit jobs by status", labels=["status"]
        )
        store: AuditStore | None = self.app.extensions.get(STORE)
        if store is not None:  # the audit worker makes it once the models are loaded
            counts = store.count_by_status()
            for status in get_args(Status):
                family.add_metric([status], counts.get(status, 0))
        yield family


def _process_registry(app: Flask) -> CollectorRegistry:
    """One process's registry: the audit jobs and prometheus_client's process metrics."""
    registry = CollectorRegistry()
    registry.register(AuditJobs(app))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def _scrape_registry(app: Flask) -> CollectorRegistry:
    """A registry for one scrape that sums every worker's metric files."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    registry.register(AuditJobs(app))
    return registry


def install_metrics(app: Flask, state: Runtime) -> None:
    """Measure every request (call it after the other WSGI middleware) and serve /metrics."""
    shared = multiprocess_mode()
    registry = None if shared else _process_registry(app)
    app.wsgi_app = RequestMetrics(app, registry)  # type: ignore[method-assign]
    figures = LiveFigures(state, registry)
    if shared:
        threading.Thread(target=figures.sync_forever, name="metrics-sync", daemon=True).start()

    def metrics() -> Response:
        figures.sync()
        body = generate_latest(_scrape_registry(app) if registry is None else registry)
        return Response(body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.add_url_rule("/metrics", "metrics", metrics, methods=["GET"])
