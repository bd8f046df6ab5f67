"""`feedctl status`: what an operator checks first."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from feedctl.cli.state import handle_errors, state_of, stdout
from feedctl.durations import parse_duration

if TYPE_CHECKING:
    from feedctl.jobs.status import SystemStatus


@handle_errors
def status(
    ctx: typer.Context,
    max_lag: str = typer.Option(
        "5m", "--max-lag", help="Fan-out lag that needs attention, e.g. 5m."
    ),
    max_repair_age: str = typer.Option(
        "15m", "--max-repair-age", help="Age of a repair mark that needs attention, e.g. 15m."
    ),
) -> None:
    """Migrations, each consumer's lag, feeds marked for repair, each job's last run and
    the share of active users with a cached feed. Exit 1 when something needs attention."""
    from feedctl.jobs.status import Thresholds, system_status

    state = state_of(ctx)
    thresholds = Thresholds(parse_duration(max_lag), parse_duration(max_repair_age))
    with state.context() as context:
        report = system_status(context, thresholds)
    state.emit(report.as_dict(), lambda: _render(report))
    if report.attention:
        raise typer.Exit(1)


def _when(moment: object) -> str:
    return "" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S}"


def _render(report: SystemStatus) -> None:
    stdout.print(f"config: {report.config_file or 'none: defaults and environment'}", markup=False)
    pending = len(report.migrations_pending)
    stdout.print(f"migrations: {report.migrations_applied} applied, {pending} pending")
    for lag in report.consumers:
        stdout.print(
            f"consumer {lag.consumer}: {lag.lag_events} events behind "
            f"(oldest {lag.lag_seconds:.0f} s), position moved {_when(lag.position_moved_at)}"
        )
    stdout.print(f"feeds marked for repair: {report.feeds_marked_for_repair}")
    if report.jobs:
        from rich.table import Table

        table = Table("job", "last run", "started", "outcome", "last success")
        for job in report.jobs:
            table.add_row(
                job.job,
                "" if job.last_run_id is None else str(job.last_run_id),
                _when(job.started_at),
                job.outcome or "never ran",
                _when(job.last_success_at),
            )
        stdout.print(table)
    cache = report.cache
    if cache is not None and cache.share is not None:
        how = f"a sample of {cache.checked}" if cache.sampled else f"{cache.checked}"
        stdout.print(
            f"cached feeds: {cache.share:.1%} of {cache.active_users} active users "
            f"({cache.cached} of {how})"
        )
    elif cache is not None:
        stdout.print("cached feeds: no active users")
    paused = report.redis_alone_paused
    if paused is not None:
        shown = "; ".join(paused) if paused else "yes (feeds marked for repair aside)"
        stdout.print(f"cached pages from Redis alone: {shown}", markup=False)
    if report.attention:
        for line in report.attention:
            stdout.print(f"[red]needs attention:[/red] {line}", highlight=False)
    else:
        stdout.print("[green]all well[/green]")
