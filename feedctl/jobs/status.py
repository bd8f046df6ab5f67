"""`feedctl status`: is everything well, and if not, what needs attention.

Reads only: migrations, each consumer's lag, feeds marked for repair, each job's last run,
and the share of active users whose feed is cached (counted exactly up to a sample size,
estimated from a uniform sample above it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from feedctl.cache.client import REDIS_ERRORS
from feedctl.cache.keys import user_feed
from feedctl.context import Context
from feedctl.db import migrations
from feedctl.db.sql_blocks import query
from feedctl.errors import ConfigError
from feedctl.jobs import runs as job_runs
from feedctl.jobs.definitions import JobDefinition, configured_jobs
from feedctl.pipelines.cache.warm import active_users
from feedctl.pipelines.cache.writes import chunked
from feedctl.pipelines.fanout.run import DEFAULT_CONSUMER
from feedctl.read import cache_state

CACHE_SAMPLE = 20_000
EXISTS_CHUNK = 1_000


@dataclasses.dataclass
class ConsumerLag:
    consumer: str
    lag_events: int
    lag_seconds: float
    position_moved_at: datetime | None


@dataclasses.dataclass
class JobState:
    job: str
    last_run_id: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    outcome: str | None = None  # None: never ran
    exit_code: int | None = None
    message: str | None = None
    host: str | None = None
    last_success_at: datetime | None = None


@dataclasses.dataclass
class CacheCoverage:
    active_users: int
    checked: int
    cached: int
    sampled: bool

    @property
    def share(self) -> float | None:
        return self.cached / self.checked if self.checked else None


@dataclasses.dataclass
class SystemStatus:
    config_file: str | None = None  # None: defaults and environment only
    migrations_applied: int = 0
    migrations_pending: list[str] = dataclasses.field(default_factory=list)
    migrations_changed: list[str] = dataclasses.field(default_factory=list)
    consumers: list[ConsumerLag] = dataclasses.field(default_factory=list)
    feeds_marked_for_repair: int = 0
    oldest_repair_mark_seconds: float | None = None
    jobs: list[JobState] = dataclasses.field(default_factory=list)
    cache: CacheCoverage | None = None
    # Why cached pages are not served from Redis alone now (docs/decisions/0029); empty:
    # they are (feeds marked for repair aside). None when it was not asked.
    redis_alone_paused: list[str] | None = None
    attention: list[str] = dataclasses.field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        payload = dataclasses.asdict(self)
        payload["cache"] = (
            None if self.cache is None else {**payload["cache"], "share": self.cache.share}
        )
        return payload


@dataclasses.dataclass(frozen=True)
class Thresholds:
    max_lag: timedelta = timedelta(minutes=5)
    max_repair_age: timedelta = timedelta(minutes=15)


def system_status(ctx: Context, thresholds: Thresholds | None = None) -> SystemStatus:
    """Everything `feedctl status` shows; `attention` lists what an operator should look at."""
    limits = thresholds or Thresholds()
    config_file = ctx.settings.config_file
    status = SystemStatus(config_file=None if config_file is None else str(config_file))
    _migrations(ctx, status)
    if status.migrations_pending or status.migrations_changed:
        return status  # the other tables may not exist yet
    _consumers(ctx, status, limits)
    _repairs(ctx, status, limits)
    try:
        jobs = configured_jobs(ctx.settings)
    except ConfigError as exc:
        status.attention.append(f"job definitions: {exc.message}")
        jobs = []
    _jobs(ctx, status, jobs)
    _cache(ctx, status)
    status.redis_alone_paused = (
        cache_state.ask(ctx.conn).pauses()
        if ctx.settings.cache_state_ms > 0
        else ["cache_state_ms is 0: every cached page is checked against PostgreSQL"]
    )
    return status


def _migrations(ctx: Context, status: SystemStatus) -> None:
    states = migrations.status(ctx.conn)
    status.migrations_applied = sum(s.applied_at is not None for s in states)
    status.migrations_pending = [s.name for s in states if s.applied_at is None]
    status.migrations_changed = [s.name for s in states if s.changed]
    if status.migrations_pending:
        status.attention.append(
            f"{len(status.migrations_pending)} migration(s) pending: run `feedctl migrate up`"
        )
    if status.migrations_changed:
        names = ", ".join(status.migrations_changed)
        status.attention.append(f"migration file(s) changed after they were applied: {names}")


def _consumers(ctx: Context, status: SystemStatus, limits: Thresholds) -> None:
    rows = ctx.conn.execute(query("consumer_lags"), {"default": DEFAULT_CONSUMER}).fetchall()
    for consumer, events, seconds, moved_at in rows:
        lag = ConsumerLag(consumer, int(events), float(seconds or 0.0), moved_at)
        status.consumers.append(lag)
        if lag.lag_events and lag.lag_seconds > limits.max_lag.total_seconds():
            status.attention.append(
                f"consumer {consumer} is {_minutes(lag.lag_seconds)} behind "
                f"({lag.lag_events} events): is `feedctl jobs run fanout` running?"
            )


def _repairs(ctx: Context, status: SystemStatus, limits: Thresholds) -> None:
    row = ctx.conn.execute(query("repair_backlog")).fetchone()
    assert row is not None
    status.feeds_marked_for_repair = int(row[0])
    status.oldest_repair_mark_seconds = None if row[1] is None else float(row[1])
    oldest = status.oldest_repair_mark_seconds
    if oldest is not None and oldest > limits.max_repair_age.total_seconds():
        status.attention.append(
            f"{status.feeds_marked_for_repair} feed(s) marked for repair, the oldest "
            f"{_minutes(oldest)} ago: is `feedctl jobs run repair` running, and Redis up?"
        )


def _jobs(ctx: Context, status: SystemStatus, jobs: Sequence[JobDefinition]) -> None:
    names = [job.name for job in jobs]
    limits = {job.name: job.hard_limit_seconds for job in jobs}
    rows = ctx.conn.execute(query("latest_job_runs"), {"names": names}).fetchall()
    now = datetime.now(UTC)
    for name, run_id, started, finished, outcome, code, message, host, _pid, alive, ok in rows:
        if outcome == job_runs.RUNNING and not alive:
            outcome, message = job_runs.ABANDONED, "its process died without recording an outcome"
        state = JobState(name, run_id, started, finished, outcome, code, message, host, ok)
        status.jobs.append(state)
        if outcome in job_runs.FAILURES:
            status.attention.append(f"job {name}: run {run_id} {outcome}: {message}")
        elif outcome == job_runs.RUNNING and started is not None:
            running = (now - started).total_seconds()
            if running > limits[name] + 60:
                status.attention.append(
                    f"job {name}: run {run_id} has been running for {_minutes(running)}, "
                    "past its time limit"
                )


def _cache(ctx: Context, status: SystemStatus) -> None:
    since = datetime.now(UTC) - timedelta(days=ctx.settings.active_window_days)
    row = ctx.conn.execute(query("count_active_users"), {"since": since}).fetchone()
    active = int(row[0]) if row else 0
    sampled = active > CACHE_SAMPLE
    if sampled:
        params = {"since": since, "limit": CACHE_SAMPLE}
        ids: Iterable[int] = [r[0] for r in ctx.conn.execute(query("sample_active_users"), params)]
    else:
        ids = active_users(ctx, timedelta(days=ctx.settings.active_window_days)).ids
    checked = cached = 0
    try:
        for chunk in chunked(ids, EXISTS_CHUNK):
            present = ctx.cache.exists([user_feed(u).key(ctx.prefix) for u in chunk])
            checked += len(chunk)
            cached += sum(present)
    except REDIS_ERRORS as exc:
        status.attention.append(f"Redis did not answer, cached feeds unknown: {exc}")
        return
    status.cache = CacheCoverage(active, checked, cached, sampled)


def _minutes(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
