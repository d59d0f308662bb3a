"""Prometheus metrics of one server, in a registry of its own (so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServeMetrics:
    """Requests by endpoint and status code, errors, request latency, model calls and their batch sizes."""

    def __init__(self, max_batch: int):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "dltool_serve_requests",
            "HTTP requests answered, by endpoint and status code.",
            ["endpoint", "code"],
            registry=self.registry,
        )
        self.errors = Counter(
            "dltool_serve_errors",
            "Requests answered with an error status (4xx or 5xx), by endpoint and status code.",
            ["endpoint", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "dltool_serve_request_duration_seconds",
            "Time from the request's arrival to its answer, by endpoint.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._children: dict[tuple[str, int], tuple] = {}
        sizes = sorted({1, *(2**i for i in range(1, 16) if 2**i < max_batch), max_batch})
        self.batch_size = Histogram(
            "dltool_serve_batch_size",
            "Samples per model call (concurrent requests merged by dynamic batching).",
            buckets=sizes,
            registry=self.registry,
        )
        self.model_seconds = Histogram(
            "dltool_serve_model_call_seconds",
            "Duration of one model call on the worker thread.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def observe_request(self, endpoint: str, code: int, seconds: float) -> None:
        """Count one answered request."""
        # The labelled children are looked up once per (endpoint, code): `labels()` takes a lock and builds
        # tuples, a measurable share of a request that costs the server ~0.2 ms in all.
        children = self._children.get((endpoint, code))
        if children is None:
            children = self._children[(endpoint, code)] = (
                self.requests.labels(endpoint, str(code)),
                self.errors.labels(endpoint, str(code)) if code >= 400 else None,
                self.latency.labels(endpoint),
            )
        requests, errors, latency = children
        requests.inc()
        if errors is not None:
            errors.inc()
        latency.observe(seconds)

    def observe_batch(self, size: int, seconds: float) -> None:
        """Count one model call of ``size`` samples."""
        self.batch_size.observe(size)
        self.model_seconds.observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
