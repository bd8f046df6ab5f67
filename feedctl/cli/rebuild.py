"""`feedctl rebuild`."""

from __future__ import annotations

import dataclasses

import typer

from feedctl.cli.reports import render_counts
from feedctl.cli.state import handle_errors, state_of
from feedctl.errors import EXIT_PARTIAL, BadInputError
from feedctl.pipelines import cache_ops


@handle_errors
def rebuild(
    ctx: typer.Context,
    user: int | None = typer.Option(None, "--user", help="Rebuild one user's feed."),
    community: int | None = typer.Option(
        None, "--community", help="Rebuild every member's feed and the community's feed."
    ),
    everything: bool = typer.Option(False, "--all", help="Rebuild every user's feed."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Count entries before and after; change nothing."
    ),
) -> None:
    """Recompute feeds from memberships and scored posts, truncated to the cap.

    PostgreSQL is rewritten one transaction per chunk of users (readers see the old feed
    or the new one) and the cached copies are swapped atomically. Exit 3 when some Redis
    writes failed (those feeds are marked for repair).
    """
    if sum([user is not None, community is not None, everything]) != 1:
        raise BadInputError("give exactly one of --user ID, --community ID and --all")
    state = state_of(ctx)
    with state.context() as context, state.progress("rebuilding (feeds)") as advance:
        if user is not None:
            cache_ops.require_user(context.conn, user)
            report = cache_ops.rebuild_users(context, [user], dry_run=dry_run)
        elif community is not None:
            report = cache_ops.rebuild_community(
                context, community, dry_run=dry_run, progress=advance
            )
        else:
            report = cache_ops.rebuild_users(
                context, cache_ops.all_user_ids(context.conn), dry_run=dry_run, progress=advance
            )
    title = "rebuild" + (" (DRY RUN)" if dry_run else "")
    state.emit(dataclasses.asdict(report), lambda: render_counts(title, report))
    if report.redis_failures:
        raise typer.Exit(EXIT_PARTIAL)
