"""`feedctl cache warm|repair`."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path

import typer

from feedctl import metrics
from feedctl.cli.reports import render_counts
from feedctl.cli.state import handle_errors, state_of
from feedctl.context import Context
from feedctl.durations import parse_duration
from feedctl.errors import EXIT_PARTIAL, BadInputError
from feedctl.pipelines import cache_ops
from feedctl.pipelines.id_files import read_ids

app = typer.Typer(help="Fill, repair and inspect cached feeds in Redis.", no_args_is_help=True)


def _warm_targets(
    context: Context, active_since: str | None, users: Path | None, community: int | None
) -> Iterable[int]:
    chosen = [active_since is not None, users is not None, community is not None]
    if sum(chosen) > 1:
        raise BadInputError("give only one of --active-since, --users and --community")
    if users is not None:
        return cache_ops.existing_users(context.conn, read_ids(users))
    if community is not None:
        return cache_ops.community_member_ids(context, community)
    window = active_since or f"{context.settings.active_window_days}d"
    return cache_ops.active_user_ids(context, parse_duration(window))


@app.command("warm")
@handle_errors
def warm(
    ctx: typer.Context,
    active_since: str | None = typer.Option(
        None, "--active-since", help="Users active within this long, e.g. 7d (the default)."
    ),
    users: Path | None = typer.Option(None, "--users", help="File of user ids, one a line."),
    community: int | None = typer.Option(None, "--community", help="Every member of a community."),
    force: bool = typer.Option(False, "--force", help="Rewrite feeds that are already cached."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what would be warmed."),
) -> None:
    """Fill users' cached feeds from PostgreSQL (top `cap` entries each, pipelined).

    Exit 3 when some Redis writes failed (those feeds are marked for repair).
    """
    state = state_of(ctx)
    measured = metrics.pushed(state.settings, "warm", "cache warm", state.notice)
    with (
        measured as record,
        state.context() as context,
        state.progress("warming (feeds)") as advance,
    ):
        targets = _warm_targets(context, active_since, users, community)
        report = cache_ops.warm(
            context, "user", targets, force=force, dry_run=dry_run, progress=advance
        )
        record.report(report)
    title = "cache warm" + (" (DRY RUN)" if dry_run else "")
    state.emit(dataclasses.asdict(report), lambda: render_counts(title, report))
    if report.redis_failures:
        raise typer.Exit(EXIT_PARTIAL)


@app.command("repair")
@handle_errors
def repair(ctx: typer.Context) -> None:
    """Rewrite every feed marked for repair (after Redis missed writes) from PostgreSQL.

    Exit 3 when Redis failed again (the marks stay for the next run).
    """
    state = state_of(ctx)
    measured = metrics.pushed(state.settings, "repair", "cache repair", state.notice)
    with (
        measured as record,
        state.context() as context,
        state.progress("repairing (feeds)") as advance,
    ):
        report = cache_ops.repair(context, progress=advance)
        record.report(report)
    state.emit(dataclasses.asdict(report), lambda: render_counts("cache repair", report))
    if report.redis_failures:
        raise typer.Exit(EXIT_PARTIAL)
