"""The record of job runs in PostgreSQL (table job_run) and who holds a job's lock."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from feedctl.db.sql_blocks import query

# How a run ended. A run counts as failed when it did not finish its work; `partial`
# (some Redis writes failed and were marked for repair) finished it, and so succeeded.
SUCCEEDED = "succeeded"
PARTIAL = "partial"
FAILED = "failed"
TIMED_OUT = "timed_out"
STOPPED = "stopped"
LOCKED = "locked"
ABANDONED = "abandoned"
RUNNING = "running"
SUCCESSES = (SUCCEEDED, PARTIAL)
FAILURES = (FAILED, TIMED_OUT, STOPPED, ABANDONED)
KEEP_RUNS = timedelta(days=30)


@dataclasses.dataclass(frozen=True)
class StartedRun:
    id: int
    started_at: datetime


@dataclasses.dataclass(frozen=True)
class LockHolder:
    """The session holding a lock, and the job run it recorded (None: not a job run)."""

    backend_pid: int
    application_name: str
    client_addr: str | None
    backend_start: datetime | None
    run_id: int | None = None
    job: str | None = None
    host: str | None = None
    pid: int | None = None
    started_at: datetime | None = None

    def describe(self, now: datetime) -> str:
        if self.run_id is not None and self.started_at is not None:
            age = _age(now - self.started_at)
            return (
                f"run {self.run_id} on {self.host} (pid {self.pid}), "
                f"started {self.started_at:%Y-%m-%d %H:%M:%S %Z} ({age} ago)"
            )
        name = self.application_name or "no application name"
        since = ""
        if self.backend_start is not None:
            since = f", connected {self.backend_start:%Y-%m-%d %H:%M:%S %Z}"
        where = f" from {self.client_addr}" if self.client_addr else ""
        return f"PostgreSQL session {self.backend_pid} ({name}{where}{since})"


def _age(delta: timedelta) -> str:
    seconds = max(int(delta.total_seconds()), 0)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def try_lock(conn: psycopg.Connection[Any], name: str) -> bool:
    """Take the session-level advisory lock `name` without waiting."""
    row = conn.execute(query("try_named_lock"), {"name": name}).fetchone()
    return bool(row and row[0])


def unlock(conn: psycopg.Connection[Any], name: str) -> None:
    conn.execute(query("named_unlock"), {"name": name})


def lock_holder(conn: psycopg.Connection[Any], name: str) -> LockHolder | None:
    """Who holds the advisory lock `name` now (None when it was released meanwhile)."""
    row = conn.execute(query("advisory_lock_holder"), {"name": name}).fetchone()
    if row is None:
        return None
    return LockHolder(*row)


def start(
    conn: psycopg.Connection[Any], job: str, command: str, lock_name: str, host: str, pid: int
) -> StartedRun:
    """Record a run as running, held by this session; close runs of the job that died."""
    params = {"job": job, "command": command, "lock_name": lock_name, "host": host, "pid": pid}
    with conn.transaction():
        row = conn.execute(query("start_job_run"), params).fetchone()
        assert row is not None
        run = StartedRun(id=int(row[0]), started_at=row[1])
        conn.execute(query("abandon_job_runs"), {"job": job, "run_id": run.id})
    return run


def finish(
    conn: psycopg.Connection[Any],
    run_id: int,
    outcome: str,
    exit_code: int,
    counts: dict[str, Any],
    message: str | None,
) -> None:
    params = {
        "run_id": run_id,
        "outcome": outcome,
        "exit_code": exit_code,
        "counts": Jsonb(counts),
        "message": message,
    }
    conn.execute(query("finish_job_run"), params)


def failures_in_a_row(conn: psycopg.Connection[Any], job: str) -> int:
    """Finished runs of `job` that failed since its last success."""
    row = conn.execute(query("job_failures_in_a_row"), {"job": job}).fetchone()
    return int(row[0]) if row else 0


def prune(conn: psycopg.Connection[Any], job: str, keep: timedelta = KEEP_RUNS) -> None:
    conn.execute(query("prune_job_runs"), {"job": job, "keep": keep})


def name_session(conn: psycopg.Connection[Any], name: str) -> None:
    """Show `name` as this session's application_name in pg_stat_activity."""
    conn.execute(query("set_application_name"), {"name": name[:63]})
