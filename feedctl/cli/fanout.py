"""`feedctl fanout`."""

from __future__ import annotations

import dataclasses

import typer

from feedctl.cli.reports import render_counts
from feedctl.cli.state import handle_errors, state_of
from feedctl.errors import EXIT_PARTIAL
from feedctl.pipelines.fanout import DEFAULT_CONSUMER, FanoutReport, run_fanout


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
) -> None:
    """Write new posts into their community members' feeds.

    Reads feed_events past the consumer's committed position, writes feed_entry rows and
    advances the position in one transaction per batch, then updates cached feeds in Redis.
    Exit 3 when some Redis writes failed (those feeds are marked for `feedctl cache repair`).
    """
    state = state_of(ctx)
    with state.context() as context, state.progress("fan-out (events)") as advance:
        seen = [0]

        def on_batch(report: FanoutReport) -> None:
            advance(report.events - seen[0])
            seen[0] = report.events

        report = run_fanout(
            context,
            consumer=consumer,
            max_events=max_events,
            batch_size=batch_size,
            dry_run=dry_run,
            progress=on_batch,
        )
    state.emit(
        dataclasses.asdict(report),
        lambda: render_counts("fan-out" + (" (DRY RUN)" if dry_run else ""), report),
    )
    if report.redis_failures:
        raise typer.Exit(EXIT_PARTIAL)
