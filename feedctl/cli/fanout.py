"""`feedctl fanout`."""

from __future__ import annotations

import dataclasses
import threading

import typer

from feedctl.cli.reports import render_counts
from feedctl.cli.state import handle_errors, state_of, stop_on_signals
from feedctl.errors import EXIT_PARTIAL

DEFAULT_CONSUMER = "default"  # pipelines.fanout's, kept here so --help loads no pipeline


@handle_errors
def fanout(
    ctx: typer.Context,
    max_events: int | None = typer.Option(
        None, "--max-events", min=1, help="Stop after this many events."
    ),
    batch_size: int | None = typer.Option(
        None, "--batch-size", min=1, help="Events per transaction (default: config batch_size)."
    ),
    consumer: str = typer.Option(
        DEFAULT_CONSUMER, "--consumer", help="Name of the position in feed_offset_state."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Report what would be written; write nothing."
    ),
    follow: bool = typer.Option(
        False, "--follow", help="Keep consuming; SIGTERM or Ctrl-C stops after the current batch."
    ),
    poll_interval: float = typer.Option(
        1.0, "--poll-interval", min=0.01, help="Seconds between polls with --follow."
    ),
) -> None:
    """Write new posts into their community members' feeds.

    Reads feed_events past the consumer's committed position, writes feed_entry rows and
    advances the position in one transaction per batch, then updates cached feeds in Redis.
    Exit 3 when some Redis writes failed (those feeds are marked for `feedctl cache repair`).
    """
    from feedctl import metrics
    from feedctl.pipelines.fanout.run import run_fanout

    state = state_of(ctx)
    stop = threading.Event()
    measured = metrics.pushed(state.settings, "fanout", "fanout", state.notice)
    with (
        measured as record,
        state.context() as context,
        stop_on_signals(stop),
        state.progress() as progress,
    ):
        report = run_fanout(
            context,
            consumer=consumer,
            max_events=max_events,
            batch_size=batch_size,
            dry_run=dry_run,
            progress=progress,
            follow=follow,
            poll_interval=poll_interval,
            stop=stop,
        )
        record.report(report)
    title = "fan-out" + (" (DRY RUN)" if dry_run else "")
    state.emit(dataclasses.asdict(report), lambda: render_counts(title, report))
    if report.redis_failures:
        raise typer.Exit(EXIT_PARTIAL)
