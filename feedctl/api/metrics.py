"""What `feedctl serve` exposes on /metrics: a registry of the app's own (one per app, so two
apps in one process never share counters), scraped by Prometheus.

Unlike a run's metrics (feedctl.metrics, pushed once at its end), these are counters and
histograms of a long-running process.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UNMATCHED = "<unmatched>"  # requests that match no route share one label value
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ApiMetrics:
    """The app's counters and histograms, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "feedctl_api_requests_total",
            "HTTP requests answered, by route template, method and status code.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "feedctl_api_request_duration_seconds",
            "Time to answer an HTTP request, by route template and method.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.cache_hits = Counter(
            "feedctl_api_cache_hits_total",
            "Feed pages served from the Redis cache, by feed kind.",
            ["kind"],
            registry=self.registry,
        )
        self.cache_misses = Counter(
            "feedctl_api_cache_misses_total",
            "Feed pages read from PostgreSQL (not cached, stale, or Redis failing), by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.redis_alone = Counter(
            "feedctl_api_redis_alone_pages_total",
            "Feed pages served from Redis alone, with no PostgreSQL query (among the cache "
            "hits), by feed kind.",
            ["kind"],
            registry=self.registry,
        )
        self.redis_failures = Counter(
            "feedctl_api_redis_failures_total",
            "Redis calls that failed (the page was then read from PostgreSQL).",
            registry=self.registry,
        )
        for kind in ("user", "community"):  # present from the first scrape
            self.cache_hits.labels(kind)
            self.cache_misses.labels(kind)
            self.redis_alone.labels(kind)

    def page_source(self, kind: str, source: str, redis_alone: bool) -> None:
        (self.cache_hits if source == "cache" else self.cache_misses).labels(kind).inc()
        if redis_alone:
            self.redis_alone.labels(kind).inc()

    def redis_failed(self) -> None:
        self.redis_failures.inc()


class RequestMetrics:
    """ASGI middleware: count and time every HTTP request by its route template."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED
            method = str(scope.get("method", ""))
            self.metrics.requests.labels(template, method, str(status)).inc()
            self.metrics.latency.labels(template, method).observe(time.perf_counter() - started)
