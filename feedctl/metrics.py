"""Prometheus metrics of one run: one registry per run, delivered at its end, success or
failure, to the Pushgateway (grouped by job and instance) or to a file for node_exporter's
textfile collector.

Every value describes the run that delivered it (gauges, not counters: a registry lives for
one run, so a counter would restart at every run). Delivery replaces only the metrics the
run reports: `feedctl_job_last_success_timestamp_seconds` is set only by a run that
succeeded, so a failed run leaves the previous success in place. A Pushgateway that cannot
be reached never changes a run's outcome: the caller gets one warning.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, pushadd_to_gateway, write_to_textfile
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from feedctl.config import Settings
from feedctl.errors import EXIT_FAILED, EXIT_OK, EXIT_PARTIAL
from feedctl.server_errors import as_feedctl_error

PUSH_TIMEOUT_SECONDS = 5.0


@dataclasses.dataclass(frozen=True)
class CountMetric:
    """A field of a pipeline's report, exported as a gauge."""

    field: str
    name: str
    help: str


# Per command: the report fields worth a dashboard. Every report has `redis_failures`.
COUNT_METRICS: dict[str, tuple[CountMetric, ...]] = {
    "fanout": (
        CountMetric("events", "feedctl_fanout_events", "Events applied by the last fan-out run."),
        CountMetric(
            "entries_written",
            "feedctl_fanout_entries_written",
            "Feed entries written to PostgreSQL by the last fan-out run.",
        ),
        CountMetric(
            "entries_removed",
            "feedctl_fanout_entries_removed",
            "Feed entries removed by the last fan-out run.",
        ),
        CountMetric(
            "lag_events",
            "feedctl_fanout_lag_events",
            "Events not yet fanned out when the last fan-out run ended.",
        ),
        CountMetric(
            "lag_seconds",
            "feedctl_fanout_lag_seconds",
            "Age of the oldest event not yet fanned out when the last fan-out run ended.",
        ),
        CountMetric(
            "feeds_marked_for_repair",
            "feedctl_fanout_feeds_marked_for_repair",
            "Feeds the last fan-out run marked for repair after Redis writes failed.",
        ),
    ),
    "rank": (
        CountMetric(
            "posts_rescored", "feedctl_rank_posts_rescored", "Posts rescored by the last rank run."
        ),
        CountMetric(
            "entries_updated",
            "feedctl_rank_entries_updated",
            "Feed entries whose score the last rank run refreshed in PostgreSQL.",
        ),
        CountMetric(
            "feeds_touched",
            "feedctl_rank_feeds_touched",
            "Cached feeds the last rank run refreshed in Redis.",
        ),
    ),
    "cache warm": (
        CountMetric(
            "feeds_written", "feedctl_warm_feeds_written", "Feeds the last warm run cached."
        ),
        CountMetric(
            "feeds_skipped",
            "feedctl_warm_feeds_skipped",
            "Feeds the last warm run found already cached.",
        ),
    ),
    "cache repair": (
        CountMetric(
            "feeds_written",
            "feedctl_repair_feeds_repaired",
            "Feeds the last repair run rewrote from PostgreSQL.",
        ),
    ),
    "cache verify": (
        CountMetric(
            "feeds_compared",
            "feedctl_verify_feeds_compared",
            "Cached feeds the last verify run compared with PostgreSQL.",
        ),
        CountMetric(
            "feeds_mismatched",
            "feedctl_verify_feeds_mismatched",
            "Cached feeds that still disagreed with PostgreSQL in the last verify run.",
        ),
        CountMetric(
            "mismatches_found",
            "feedctl_verify_mismatches",
            "Mismatches (entries, scores, sentinels, keys) found by the last verify run.",
        ),
    ),
    "cache vacuum": (
        CountMetric(
            "keys_dropped", "feedctl_vacuum_keys_dropped", "Keys the last vacuum run dropped."
        ),
        CountMetric(
            "members_freed",
            "feedctl_vacuum_members_freed",
            "Sorted-set members the last vacuum run freed (dropped or trimmed).",
        ),
        CountMetric(
            "bytes_freed",
            "feedctl_vacuum_freed_bytes",
            "Redis memory the last vacuum run freed, in bytes (MEMORY USAGE estimate).",
        ),
    ),
    "expire": (
        CountMetric(
            "posts_expired",
            "feedctl_expire_posts",
            "Posts older than feed_retention the last expire run removed from feeds.",
        ),
        CountMetric(
            "entries_removed",
            "feedctl_expire_entries_removed",
            "Feed entries the last expire run removed from PostgreSQL.",
        ),
    ),
}
REDIS_FAILURES = CountMetric(
    "redis_failures",
    "feedctl_redis_write_failures",
    "Redis writes that failed in the last run (their feeds are marked for repair).",
)

DURATION = "feedctl_job_duration_seconds"
EXIT_CODE = "feedctl_job_exit_code"
LAST_RUN = "feedctl_job_last_run_timestamp_seconds"
LAST_SUCCESS = "feedctl_job_last_success_timestamp_seconds"
FAILURES_IN_A_ROW = "feedctl_job_consecutive_failures"
AWAITING_REPAIR = "feedctl_feeds_awaiting_repair"
_HELP = {
    DURATION: "How long the last run took, in seconds.",
    EXIT_CODE: "Exit code of the last run: 0 done, 1 failed, 2 bad input, 3 some Redis "
    "writes failed, 75 locked.",
    LAST_RUN: "When the last run ended (Unix time).",
    LAST_SUCCESS: "When the last successful run (exit 0 or 3) ended (Unix time).",
    FAILURES_IN_A_ROW: "Runs of this job that failed since its last success "
    "(jobs run by `feedctl jobs run` only).",
    AWAITING_REPAIR: "Feeds marked for repair when the last run ended "
    "(jobs run by `feedctl jobs run` only).",
}


def exported_names() -> set[str]:
    """Every metric name feedctl can deliver."""
    counts = {m.name for metrics in COUNT_METRICS.values() for m in metrics}
    return counts | {REDIS_FAILURES.name} | set(_HELP)


def instance_name() -> str:
    """The `instance` label: this machine's host name."""
    return socket.gethostname()


@dataclasses.dataclass
class RunMetrics:
    """What one run reports."""

    job: str
    command: str
    exit_code: int
    seconds: float
    finished_at: float  # Unix time
    counts: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    failures_in_a_row: int | None = None
    feeds_awaiting_repair: int | None = None
    # Labels beside job and instance that tell runs of one job apart (`fanout --shard`).
    grouping: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return self.exit_code in (EXIT_OK, EXIT_PARTIAL)


def registry_of(run: RunMetrics, labels: Mapping[str, str] | None = None) -> CollectorRegistry:
    """A fresh registry holding this run's metrics (with `labels` on every sample)."""
    registry = CollectorRegistry()
    names = list(labels or {})

    def put(name: str, help_text: str, value: float) -> None:
        gauge = Gauge(name, help_text, labelnames=names, registry=registry)
        (gauge.labels(**labels) if labels else gauge).set(value)

    put(DURATION, _HELP[DURATION], run.seconds)
    put(EXIT_CODE, _HELP[EXIT_CODE], run.exit_code)
    put(LAST_RUN, _HELP[LAST_RUN], run.finished_at)
    if run.succeeded:
        put(LAST_SUCCESS, _HELP[LAST_SUCCESS], run.finished_at)
    if run.failures_in_a_row is not None:
        put(FAILURES_IN_A_ROW, _HELP[FAILURES_IN_A_ROW], run.failures_in_a_row)
    if run.feeds_awaiting_repair is not None:
        put(AWAITING_REPAIR, _HELP[AWAITING_REPAIR], run.feeds_awaiting_repair)
    for metric in (*COUNT_METRICS.get(run.command, ()), REDIS_FAILURES):
        value = run.counts.get(metric.field)
        if isinstance(value, int | float) and not isinstance(value, bool):
            put(metric.name, metric.help, value)
    return registry


def push(
    registry: CollectorRegistry,
    url: str,
    job: str,
    instance: str,
    grouping: Mapping[str, str] | None = None,
) -> None:
    """Replace this run's metrics in the Pushgateway group {job, instance, grouping...}
    (HTTP POST)."""
    pushadd_to_gateway(
        url,
        job=job,
        registry=registry,
        grouping_key={"instance": instance, **(grouping or {})},
        timeout=PUSH_TIMEOUT_SECONDS,
    )


class _Carried(Collector):
    """Metric families from a previous textfile, written again unchanged."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def write_textfile(registry: CollectorRegistry, path: Path) -> None:
    """Write the registry for node_exporter's textfile collector, atomically.

    Families of the previous file that this run does not report are kept, as the
    Pushgateway keeps them: a failed run leaves the last success in place.
    """
    fresh = {metric.name for metric in registry.collect()}
    carried = [family for family in _previous_families(path) if family.name not in fresh]
    if carried:
        registry.register(_Carried(carried))
    write_to_textfile(str(path), registry)


def _previous_families(path: Path) -> list[Metric]:
    """The families of an earlier textfile; none when it is missing or unreadable."""
    try:
        return list(text_string_to_metric_families(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return []


def deliver(
    run: RunMetrics,
    *,
    pushgateway_url: str | None,
    textfile: Path | None = None,
    instance: str | None = None,
) -> str | None:
    """Push the run's metrics (or write them to `textfile`); a warning when that failed."""
    host = instance or instance_name()
    try:
        if textfile is not None:
            labels = {"job": run.job, "instance": host, **run.grouping}
            write_textfile(registry_of(run, labels), textfile)
        elif pushgateway_url:
            push(registry_of(run), pushgateway_url, run.job, host, run.grouping)
    except (OSError, ValueError, http.client.HTTPException) as exc:
        where = f"to {textfile}" if textfile else f"to the Pushgateway at {pushgateway_url}"
        reason = str(exc).strip() or type(exc).__name__
        return f"could not deliver the metrics of job {run.job} {where}: {reason}"
    return None


class RunRecorder:
    """What a command run by hand tells `pushed`: its report."""

    def __init__(self) -> None:
        self.counts: dict[str, Any] = {}
        self.dry_run = False

    def report(self, report: Any) -> None:
        self.counts = dataclasses.asdict(report)
        self.dry_run = bool(self.counts.get("dry_run", False))


@contextlib.contextmanager
def pushed(
    settings: Settings,
    job: str,
    command: str,
    warn: Callable[[str], None],
    grouping: Mapping[str, str] | None = None,
) -> Iterator[RunRecorder]:
    """Around a command run by hand: push its metrics when it ends, if a Pushgateway is
    configured. A dry run pushes nothing; a failure pushes its exit code. `grouping` labels
    tell apart runs of one job on one host (each fan-out shard: `shard="i/N"`)."""
    recorder = RunRecorder()
    started = time.monotonic()
    exit_code = EXIT_OK
    try:
        yield recorder
    except BaseException as exc:
        error = as_feedctl_error(exc) if isinstance(exc, Exception) else None
        exit_code = error.exit_code if error is not None else EXIT_FAILED
        raise
    finally:
        if settings.pushgateway_url and not recorder.dry_run:
            partial = ("redis_failures", "mismatches_found")
            if exit_code == EXIT_OK and any(recorder.counts.get(n) for n in partial):
                exit_code = EXIT_PARTIAL
            run = RunMetrics(
                job=job,
                command=command,
                exit_code=exit_code,
                seconds=time.monotonic() - started,
                finished_at=time.time(),
                counts=recorder.counts,
                grouping=dict(grouping or {}),
            )
            warning = deliver(run, pushgateway_url=settings.pushgateway_url)
            if warning:
                warn(f"warning: {warning}")
