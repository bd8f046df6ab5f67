"""`feedctl expire`: remove posts older than `feed_retention` from every feed."""

from __future__ import annotations

import dataclasses
import threading

import typer

from feedctl.cli.reports import render_counts
from feedctl.cli.state import handle_errors, state_of, stop_on_signals
from feedctl.errors import EXIT_LOCKED, EXIT_PARTIAL


@handle_errors
def expire(
    ctx: typer.Context,
    chunk_posts: int = typer.Option(
        1_000, "--chunk-posts", min=1, help="Posts whose entries go in one transaction."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Count the posts and entries that would go; remove nothing."
    ),
) -> None:
    """Remove the posts older than feed_retention from every user's feed, in PostgreSQL and
    in cached feeds, a chunk of posts per transaction.

    Reads already leave such posts out, so this frees storage and changes no page. Resumable:
    a run that stops (SIGTERM, Ctrl-C: exit 75) or dies continues after its last chunk.
    Nothing to do when feed_retention is 0. Exit 3 when some cached feeds could not be
    updated (they are marked for `feedctl cache repair`).
    """
    from feedctl import metrics
    from feedctl.pipelines.expire import expire as run_expire

    state = state_of(ctx)
    stop = threading.Event()
    with (
        metrics.pushed(state.settings, "expire", "expire", state.notice) as record,
        state.context() as context,
        stop_on_signals(stop),
        state.progress() as progress,
    ):
        report = run_expire(
            context, chunk_posts=chunk_posts, dry_run=dry_run, progress=progress, stop=stop
        )
        record.report(report)
    title = "expire" + (" (DRY RUN)" if dry_run else "")
    state.emit(dataclasses.asdict(report), lambda: render_counts(title, report))
    if report.stopped:
        state.notice("stopped before every old post was removed: run it again to continue")
        raise typer.Exit(EXIT_LOCKED)
    if report.redis_failures:
        raise typer.Exit(EXIT_PARTIAL)
