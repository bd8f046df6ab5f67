"""`feedctl cache warm|repair|verify|vacuum`."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from feedctl.cli.reports import render_counts
from feedctl.cli.state import handle_errors, state_of, stdout
from feedctl.durations import parse_duration
from feedctl.errors import EXIT_PARTIAL, BadInputError

if TYPE_CHECKING:
    from feedctl.context import Context
    from feedctl.pipelines.cache.verify import VerifyReport
    from feedctl.pipelines.cache.warm import Targets

app = typer.Typer(
    help="Fill, repair, verify and vacuum cached feeds in Redis.", no_args_is_help=True
)
SHOWN_MISMATCHES = 50
VERIFY_SAMPLE = 100  # cache_verify.DEFAULT_SAMPLE, kept here so --help loads no pipeline


def _warm_targets(context: Context, active_since: str | None, users: Path | None) -> Targets:
    from feedctl.cli.id_lists import read_ids
    from feedctl.db import owners
    from feedctl.pipelines.cache import warm as cache_warm
    from feedctl.pipelines.cache.warm import Targets

    if users is not None:
        ids = owners.existing_users(context.conn, read_ids(users))
        return Targets(ids, len(ids))
    window = active_since or f"{context.settings.active_window_days}d"
    return cache_warm.active_users(context, parse_duration(window))


@app.command("warm")
@handle_errors
def warm(
    ctx: typer.Context,
    active_since: str | None = typer.Option(
        None,
        "--active-since",
        help="Users active within this long, e.g. 7d (default: active_window_days).",
    ),
    users: Path | None = typer.Option(None, "--users", help="File of user ids, one a line."),
    community: int | None = typer.Option(
        None, "--community", help="Every member of a community, and the community's own feed."
    ),
    force: bool = typer.Option(False, "--force", help="Rewrite feeds that are already cached."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what would be warmed."),
) -> None:
    """Fill users' cached feeds from PostgreSQL (top `cap` entries each, pipelined).

    Feeds already cached are skipped unless --force. Memory stays bounded: feeds go in
    chunks of at most 250,000 entries. Exit 3 when some Redis writes failed (those feeds
    are marked for repair).
    """
    if sum([active_since is not None, users is not None, community is not None]) > 1:
        raise BadInputError("give only one of --active-since, --users and --community")
    from feedctl import metrics
    from feedctl.pipelines.cache import warm as cache_warm

    state = state_of(ctx)
    measured = metrics.pushed(state.settings, "warm", "cache warm", state.notice)
    with measured as record, state.context() as context:
        if community is not None:
            with state.progress() as progress:
                report = cache_warm.warm_community(
                    context, community, force=force, dry_run=dry_run, progress=progress
                )
        else:
            targets = _warm_targets(context, active_since, users)
            with state.progress() as progress:
                report = cache_warm.warm(
                    context,
                    "user",
                    targets.ids,
                    force=force,
                    dry_run=dry_run,
                    progress=progress,
                    total=targets.total,
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

    Each feed is swapped in atomically. Exit 3 when Redis failed again (the marks stay for
    the next run).
    """
    from feedctl import metrics
    from feedctl.pipelines.cache import repair as cache_repair

    state = state_of(ctx)
    measured = metrics.pushed(state.settings, "repair", "cache repair", state.notice)
    with (
        measured as record,
        state.context() as context,
        state.progress() as progress,
    ):
        report = cache_repair.repair(context, progress=progress)
        record.report(report)
    state.emit(dataclasses.asdict(report), lambda: render_counts("cache repair", report))
    if report.redis_failures:
        raise typer.Exit(EXIT_PARTIAL)


@app.command("verify")
@handle_errors
def verify(
    ctx: typer.Context,
    sample: int = typer.Option(
        VERIFY_SAMPLE, "--sample", help="How many random cached feeds to compare."
    ),
    mark: bool = typer.Option(
        False, "--mark", help="Mark the feeds that disagree for `feedctl cache repair`."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the random sample."),
) -> None:
    """Compare random cached feeds with PostgreSQL, member by member and score by score.

    Prints every mismatch (missing, extra, score, sentinel, over_cap, malformed, orphan).
    A feed that disagrees is compared again after half a second, so writes still in flight
    are not reported. Exit 3 when any mismatch remains.
    """
    from feedctl import metrics
    from feedctl.pipelines.cache import verify as cache_verify

    state = state_of(ctx)
    measured = metrics.pushed(state.settings, "verify", "cache verify", state.notice)
    with (
        measured as record,
        state.context() as context,
        state.progress() as progress,
    ):
        report = cache_verify.verify(context, sample, mark=mark, seed=seed, progress=progress)
        record.report(report)
    state.emit(dataclasses.asdict(report), lambda: _render_verify(report))
    if report.mismatches:
        raise typer.Exit(EXIT_PARTIAL)


def _render_verify(report: VerifyReport) -> None:
    render_counts("cache verify", report)
    if not report.mismatches:
        return
    from rich.table import Table

    table = Table("key", "mismatch", "post", "cached score", "database score", "detail")
    for m in report.mismatches[:SHOWN_MISMATCHES]:
        table.add_row(
            m.key,
            m.kind,
            "" if m.post_id is None else str(m.post_id),
            "" if m.cached_score is None else repr(m.cached_score),
            "" if m.database_score is None else repr(m.database_score),
            m.detail,
        )
    stdout.print(table)
    hidden = len(report.mismatches) - SHOWN_MISMATCHES
    if hidden > 0:
        stdout.print(f"... and {hidden} more (--json prints them all)")


@app.command("vacuum")
@handle_errors
def vacuum(
    ctx: typer.Context,
    inactive_for: str | None = typer.Option(
        None,
        "--inactive-for",
        help="Drop the feeds of users inactive for longer than this, e.g. 30d "
        "(default: active_window_days).",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what would be freed."),
) -> None:
    """Free cache memory nobody needs, walking keys with SCAN (never KEYS).

    Drops the feeds of inactive users, orphan keys (not a feed key, or the feed of a user
    or community that no longer exists) and malformed ones; trims feeds over the cap back
    to it; deletes score history older than any cursor. Reports keys, members and bytes
    freed.
    """
    from feedctl import metrics
    from feedctl.pipelines.cache import vacuum as cache_vacuum

    state = state_of(ctx)
    measured = metrics.pushed(state.settings, "vacuum", "cache vacuum", state.notice)
    with measured as record, state.context() as context:
        window = inactive_for or f"{context.settings.active_window_days}d"
        with state.progress() as progress:
            report = cache_vacuum.vacuum(
                context, parse_duration(window), dry_run=dry_run, progress=progress
            )
        record.report(report)
    title = "cache vacuum" + (" (DRY RUN)" if dry_run else "")
    state.emit(dataclasses.asdict(report), lambda: render_counts(title, report))
