"""`feedctl fanout` and `feedctl fanout reshard`."""

from __future__ import annotations

import dataclasses
import threading

import typer

from feedctl.cli.reports import render_counts
from feedctl.cli.state import handle_errors, state_of, stop_on_signals
from feedctl.errors import EXIT_LOCKED, EXIT_PARTIAL

DEFAULT_CONSUMER = "default"  # pipelines.fanout's, kept here so --help loads no pipeline

app = typer.Typer(
    help="Write new posts into their community members' feeds; change the number of shards."
)


@app.callback(invoke_without_command=True)
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
    shard: str = typer.Option(
        "0/1",
        "--shard",
        help="Be shard i of N: write the feeds of users with user_id mod N = i (e.g. 2/3). "
        "N must be the consumer's shard count (see `fanout reshard`).",
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
    With --shard i/N, N processes (on as many hosts) share the work: each reads every event
    under its own position and writes only its users' feeds.
    Exit 3 when some Redis writes failed (those feeds are marked for `feedctl cache repair`),
    2 when --shard does not match the consumer's shard count, 75 when the same shard or a
    reshard is running.
    """
    if ctx.invoked_subcommand is not None:
        return
    from feedctl import metrics
    from feedctl.pipelines.fanout.run import run_fanout
    from feedctl.pipelines.fanout.shards import parse_shard

    state = state_of(ctx)
    target = parse_shard(shard)
    stop = threading.Event()
    grouping = {"shard": str(target)} if target.count > 1 else None
    measured = metrics.pushed(state.settings, "fanout", "fanout", state.notice, grouping)
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
            shard=target,
        )
        record.report(report)
    title = "fan-out" + (f" shard {report.shard}" if target.count > 1 else "")
    title += " (DRY RUN)" if dry_run else ""
    state.emit(dataclasses.asdict(report), lambda: render_counts(title, report))
    if report.redis_failures:
        raise typer.Exit(EXIT_PARTIAL)


@app.command("reshard")
@handle_errors
def reshard(
    ctx: typer.Context,
    shards: int = typer.Argument(..., min=1, max=4096, help="The new number of shards, N."),
    consumer: str = typer.Option(
        DEFAULT_CONSUMER, "--consumer", help="Name of the position in feed_offset_state."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Report the common position it would use; change nothing."
    ),
) -> None:
    """Change how many shards fan-out runs as (N = 1: unsharded).

    Stop every shard of the consumer first. The old shards are brought to one common
    position (the furthest of them; the others fan out up to it), then their positions are
    replaced by N new ones there, in one transaction. Start `feedctl fanout --shard i/N`
    for i = 0..N-1 afterwards. Exit 75 while any shard still runs, or when stopped
    (SIGTERM, Ctrl-C) before the change: run it again.
    """
    from feedctl.pipelines.fanout.shards import reshard as change_shards

    state = state_of(ctx)
    stop = threading.Event()
    with state.context() as context, stop_on_signals(stop), state.progress() as progress:
        report = change_shards(
            context, shards, consumer=consumer, dry_run=dry_run, progress=progress, stop=stop
        )
    title = "fan-out reshard" + (" (DRY RUN)" if dry_run else "")
    state.emit(dataclasses.asdict(report), lambda: render_counts(title, report))
    if report.stopped:
        state.notice("stopped before the change: run `feedctl fanout reshard` again")
        raise typer.Exit(EXIT_LOCKED)
    if report.redis_failures:
        raise typer.Exit(EXIT_PARTIAL)
