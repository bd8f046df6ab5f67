"""`feedctl jobs run NAME`: one job, single-instance, bounded in time, recorded, measured.

1. Take the job's session advisory lock on a bookkeeping connection, or raise LockedError
   (exit 75) naming the run that holds it. A refused run is neither recorded nor measured.
2. Record the run in job_run; close runs of this job that died without an outcome.
3. Run the command in-process on a second connection. Its timeout stops it between
   batches (see job_commands); a run still busy at the hard limit (timeout plus a grace)
   has the statement in progress cancelled, so its transaction rolls back.
4. Record the outcome and counts, deliver the metrics (Pushgateway or textfile) whatever
   happened, log one line, release the lock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import psycopg.errors

from feedctl import metrics
from feedctl.config import Settings
from feedctl.context import database_url, open_context
from feedctl.db.connection import connect
from feedctl.errors import (
    EXIT_FAILED,
    EXIT_LOCKED,
    EXIT_OK,
    EXIT_PARTIAL,
    FeedctlError,
    LockedError,
)
from feedctl.jobs import runs as job_runs
from feedctl.jobs.commands import COMMANDS, RunGuard
from feedctl.jobs.definitions import JobDefinition
from feedctl.pipelines.cache import repair_marks
from feedctl.server_errors import as_feedctl_error

log = logging.getLogger("feedctl.jobs")
CANCEL_EVERY_SECONDS = 1.0


@dataclasses.dataclass
class JobResult:
    """How one run of a job went."""

    job: str
    command: str
    run_id: int | None
    outcome: str
    exit_code: int
    started_at: datetime
    seconds: float = 0.0
    counts: dict[str, Any] = dataclasses.field(default_factory=dict)
    message: str | None = None
    failures_in_a_row: int | None = None
    metrics_warning: str | None = None


@dataclasses.dataclass
class _Ending:
    outcome: str
    exit_code: int
    counts: dict[str, Any]
    message: str | None = None
    bug: BaseException | None = None  # an unexpected exception, raised again once recorded


def run_job(
    settings: Settings,
    job: JobDefinition,
    *,
    stop: threading.Event | None = None,
    metrics_textfile: Path | None = None,
    notice: Callable[[str], None] | None = None,
) -> JobResult:
    """Run `job` once; see the module docstring. Raises LockedError when another run holds
    the job's lock, and FeedctlError when the job's command is not available."""
    command = COMMANDS[job.command]
    if command.run is None:
        raise FeedctlError(f"job {job.name} cannot run: {command.missing_reason}")
    stop = stop or threading.Event()
    started = time.monotonic()
    result = JobResult(
        job.name, job.command, None, job_runs.RUNNING, EXIT_FAILED, datetime.now(UTC)
    )
    ending, awaiting = _held_run(settings, job, stop, notice, result)
    result.outcome, result.exit_code = ending.outcome, ending.exit_code
    result.counts, result.message = ending.counts, ending.message
    result.seconds = time.monotonic() - started
    run = metrics.RunMetrics(
        job=job.name,
        command=job.command,
        exit_code=result.exit_code,
        seconds=result.seconds,
        finished_at=time.time(),
        counts=result.counts,
        failures_in_a_row=result.failures_in_a_row,
        feeds_awaiting_repair=awaiting,
    )
    result.metrics_warning = metrics.deliver(
        run, pushgateway_url=settings.pushgateway_url, textfile=metrics_textfile
    )
    _log_end(result)
    if ending.bug is not None:
        raise ending.bug
    return result


def _held_run(
    settings: Settings,
    job: JobDefinition,
    stop: threading.Event,
    notice: Callable[[str], None] | None,
    result: JobResult,
) -> tuple[_Ending, int | None]:
    """Connect, lock, record and run. Returns how it ended and the feeds awaiting repair;
    raises LockedError when another run holds the lock."""
    try:
        bookkeeping = connect(database_url(settings, notice), autocommit=True)
    except Exception as exc:
        return _failure(exc), None
    try:
        try:
            _lock(bookkeeping, job)
        except LockedError:
            raise
        except Exception as exc:
            return _failure(exc), None
        try:
            ending = _recorded_run(settings, job, bookkeeping, stop, result)
            awaiting, result.failures_in_a_row = _aftermath(bookkeeping, job, result, ending)
            return ending, awaiting
        finally:
            with contextlib.suppress(psycopg.Error):
                job_runs.unlock(bookkeeping, job.lock)
    finally:
        bookkeeping.close()


def _lock(bookkeeping: psycopg.Connection[Any], job: JobDefinition) -> None:
    if job_runs.try_lock(bookkeeping, job.lock):
        return
    holder = job_runs.lock_holder(bookkeeping, job.lock)
    by = holder.describe(datetime.now(UTC)) if holder else "a run that has just ended"
    raise LockedError(f"job {job.name} is already running: {by} holds the lock {job.lock!r}")


def _recorded_run(
    settings: Settings,
    job: JobDefinition,
    bookkeeping: psycopg.Connection[Any],
    stop: threading.Event,
    result: JobResult,
) -> _Ending:
    try:
        run = job_runs.start(
            bookkeeping, job.name, job.command, job.lock, metrics.instance_name(), os.getpid()
        )
        job_runs.name_session(bookkeeping, f"feedctl job {job.name} run {run.id}")
    except Exception as exc:
        return _failure(exc)
    result.run_id, result.started_at = run.id, run.started_at
    log.info("started", extra={"job": job.name, "run_id": run.id, "command": job.command_line})
    return _execute(settings, job, run.id, stop)


def _execute(settings: Settings, job: JobDefinition, run_id: int, stop: threading.Event) -> _Ending:
    """Open the work connection and Redis, run the command, and say how it ended."""
    command = COMMANDS[job.command]
    assert command.run is not None
    guard = RunGuard(job.timeout_seconds, stop)
    limit = _HardLimit(job.hard_limit_seconds)
    try:
        with open_context(settings) as ctx:
            job_runs.name_session(ctx.conn, f"feedctl job {job.name} run {run_id} (work)")
            with limit.watch(ctx.conn):
                report = command.run(ctx, job.options, guard)
    except psycopg.errors.QueryCanceled as exc:
        if limit.fired:
            return _Ending(
                job_runs.TIMED_OUT,
                EXIT_FAILED,
                {},
                f"still running at its hard limit of {job.hard_limit_seconds:g} s "
                f"(timeout {job.timeout_seconds:g} s): the statement in progress was "
                "cancelled and its transaction rolled back",
            )
        return _failure(exc)
    except Exception as exc:
        return _failure(exc)
    counts = dataclasses.asdict(report)
    if counts.get("stopped") or guard.stop.is_set():
        return _interrupted(job, guard, counts)
    if counts.get("redis_failures"):
        return _Ending(
            job_runs.PARTIAL,
            EXIT_PARTIAL,
            counts,
            f"{counts['redis_failures']} Redis writes failed; their feeds are marked for repair",
        )
    if counts.get("mismatches_found"):  # cache verify
        return _Ending(
            job_runs.PARTIAL,
            EXIT_PARTIAL,
            counts,
            f"{counts['mismatches_found']} mismatches in {counts['feeds_mismatched']} cached "
            "feeds (see the run's counts or `feedctl cache verify --json`)",
        )
    return _Ending(job_runs.SUCCEEDED, EXIT_OK, counts)


def _interrupted(job: JobDefinition, guard: RunGuard, counts: dict[str, Any]) -> _Ending:
    if guard.timed_out:
        message = (
            f"stopped between batches after its timeout of {job.timeout_seconds:g} s; "
            "what it did so far is committed"
        )
        return _Ending(job_runs.TIMED_OUT, EXIT_FAILED, counts, message)
    message = "stopped between batches by a signal; what it did so far is committed"
    return _Ending(job_runs.STOPPED, EXIT_FAILED, counts, message)


def _failure(exc: Exception) -> _Ending:
    error = as_feedctl_error(exc)
    if error is None:
        message = f"unexpected {type(exc).__name__}: {exc}"
        return _Ending(job_runs.FAILED, EXIT_FAILED, {}, message, bug=exc)
    if isinstance(error, LockedError):
        return _Ending(job_runs.LOCKED, EXIT_LOCKED, {}, error.message)
    return _Ending(job_runs.FAILED, error.exit_code, {}, error.message)


def _aftermath(
    bookkeeping: psycopg.Connection[Any], job: JobDefinition, result: JobResult, ending: _Ending
) -> tuple[int | None, int | None]:
    """Record the outcome; return feeds awaiting repair and failures in a row."""
    if result.run_id is None:
        return None, None
    try:
        job_runs.finish(
            bookkeeping,
            result.run_id,
            ending.outcome,
            ending.exit_code,
            ending.counts,
            ending.message,
        )
        failures = job_runs.failures_in_a_row(bookkeeping, job.name)
        awaiting = repair_marks.count(bookkeeping)
        job_runs.prune(bookkeeping, job.name)
    except psycopg.Error as exc:
        note = f"could not record the outcome: {as_feedctl_error(exc) or exc}"
        ending.message = f"{ending.message}; {note}" if ending.message else note
        if ending.exit_code == EXIT_OK:
            ending.outcome, ending.exit_code = job_runs.FAILED, EXIT_FAILED
        return None, None
    return awaiting, failures


class _HardLimit:
    """Cancels the work connection's statement once the run passes its hard limit, and
    again every second until the run ends (a cancel reaching an idle session does nothing)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.fired = False

    @contextlib.contextmanager
    def watch(self, conn: psycopg.Connection[Any]) -> Iterator[None]:
        done = threading.Event()

        def cancel_when_due() -> None:
            if done.wait(self.seconds):
                return
            self.fired = True
            while not done.is_set():
                with contextlib.suppress(psycopg.Error):
                    conn.cancel_safe(timeout=CANCEL_EVERY_SECONDS)
                done.wait(CANCEL_EVERY_SECONDS)

        watcher = threading.Thread(target=cancel_when_due, name="feedctl-hard-limit", daemon=True)
        watcher.start()
        try:
            yield
        finally:
            done.set()
            watcher.join()


def _log_end(result: JobResult) -> None:
    fields = {
        "job": result.job,
        "run_id": result.run_id,
        "outcome": result.outcome,
        "exit_code": result.exit_code,
        "seconds": round(result.seconds, 3),
        "counts": result.counts,
    }
    if result.failures_in_a_row:
        fields["failures_in_a_row"] = result.failures_in_a_row
    if result.metrics_warning:
        log.warning(result.metrics_warning, extra={"job": result.job, "run_id": result.run_id})
    text = f"finished: {result.outcome}" + (f": {result.message}" if result.message else "")
    level = {EXIT_OK: logging.INFO, EXIT_PARTIAL: logging.WARNING}.get(
        result.exit_code, logging.ERROR
    )
    log.log(level, text, extra=fields)
