"""`feedctl jobs list|run`: the scheduled jobs that cron.d/feedctl runs."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from feedctl import logs
from feedctl.cli.job_flags import parse_job_flags
from feedctl.cli.state import handle_errors, state_of, stdout, stop_on_signals

if TYPE_CHECKING:
    from feedctl.jobs.runner import JobResult

app = typer.Typer(
    help="Scheduled jobs: list them, or run one (what cron.d/feedctl calls).",
    no_args_is_help=True,
)


@app.command("list")
@handle_errors
def list_jobs(ctx: typer.Context) -> None:
    """List the job definitions (jobs/*.toml): command line, timeout and lock of each."""
    from feedctl.jobs import definitions as job_definitions

    state = state_of(ctx)
    jobs = job_definitions.configured_jobs(state.settings, parse_job_flags)
    payload = {
        "jobs": [
            {
                "name": job.name,
                "description": job.description,
                "command": job.command,
                "flags": list(job.flags),
                "command_line": job.command_line,
                "timeout_seconds": job.timeout_seconds,
                "hard_limit_seconds": job.hard_limit_seconds,
                "lock": job.lock,
            }
            for job in jobs
        ]
    }

    def human() -> None:
        from rich.table import Table

        table = Table("job", "runs", "timeout", "lock", "what")
        for job in jobs:
            table.add_row(
                job.name, job.command_line, f"{job.timeout_seconds:g} s", job.lock, job.description
            )
        stdout.print(table)

    state.emit(payload, human)


@app.command("run")
@handle_errors
def run(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The job: the name of its file in the jobs folder."),
    metrics_textfile: Path | None = typer.Option(
        None,
        "--metrics-textfile",
        help="Write the run's metrics to this file (for node_exporter's textfile collector, "
        "name it *.prom) instead of pushing them to the Pushgateway.",
    ),
) -> None:
    """Run one job: single-instance, bounded in time, recorded in job_run, measured.

    Holds the job's PostgreSQL advisory lock (a second run exits 75 and says which run
    holds it), stops between batches at the job's timeout, records start, end, outcome and
    counts, and pushes metrics to FEEDCTL_PUSHGATEWAY_URL whatever happened. Logs one JSON
    object a line on stderr (human lines on a terminal). Exit 0 done, 1 failed or timed
    out, 2 bad input, 3 some Redis writes failed, 75 another run holds the lock.
    """
    from feedctl.jobs import definitions as job_definitions
    from feedctl.jobs.runner import run_job

    state = state_of(ctx)
    folder = job_definitions.jobs_dir(state.settings)
    job = job_definitions.find_job(folder, name, parse_job_flags)
    logs.configure()
    stop = threading.Event()
    with stop_on_signals(stop):
        result = run_job(
            state.settings, job, stop=stop, metrics_textfile=metrics_textfile, notice=state.notice
        )
    state.emit(dataclasses.asdict(result), lambda: _render(result))
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def _render(result: JobResult) -> None:
    from rich.table import Table

    table = Table(title=f"job {result.job} (run {result.run_id})", show_header=False)
    table.add_row("outcome", result.outcome)
    table.add_row("seconds", f"{result.seconds:.2f}")
    if result.message:
        table.add_row("message", result.message)
    for key, value in result.counts.items():
        table.add_row(key.replace("_", " "), str(value))
    stdout.print(table)
