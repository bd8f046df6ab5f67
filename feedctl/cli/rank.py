"""`feedctl rank`, `feedctl rank backfill` and `feedctl rank explain`."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from feedctl.cli.reports import render_counts
from feedctl.cli.state import CliState, handle_errors, state_of, stdout, stop_on_signals
from feedctl.errors import EXIT_LOCKED, EXIT_PARTIAL, BadInputError
from feedctl.rank.heuristic import Heuristic, load_heuristic

if TYPE_CHECKING:
    from feedctl.pipelines.ranking.backfill.preview import PreviewOptions

app = typer.Typer(
    help="Recompute rank keys of posts and feeds: nightly, or all of them (backfill)."
)


@app.callback(invoke_without_command=True)
@handle_errors
def rank(
    ctx: typer.Context,
    heuristic: Path | None = typer.Option(
        None, "--heuristic", help="Heuristic TOML file (default: config `heuristic`, built-in)."
    ),
    everything: bool = typer.Option(
        False, "--all", help="Rescore every post, not only those whose inputs changed."
    ),
) -> None:
    """Rescore posts whose reactions, comments or author reputation changed (the nightly job).

    New scores go to post_score and feed_entry in PostgreSQL, then to cached feeds in Redis.
    The heuristic must be the version the stored scores follow: a new version is a
    `feedctl rank backfill`. SIGTERM or Ctrl-C stops after the current chunk (exit 75).
    Exit 3 when some Redis writes failed (those feeds are marked for repair), 75 when a
    backfill shard or another rank run holds the lock.
    """
    if ctx.invoked_subcommand is not None:
        return
    from feedctl import metrics
    from feedctl.pipelines.ranking.nightly import run_rank

    state = state_of(ctx)
    chosen = load_heuristic(heuristic or state.settings.heuristic)
    stop = threading.Event()
    with (
        metrics.pushed(state.settings, "rank", "rank", state.notice) as record,
        state.context() as context,
        stop_on_signals(stop),
        state.progress() as progress,
    ):
        context.heuristic = chosen
        report = run_rank(context, everything=everything, progress=progress, stop=stop)
        record.report(report)
    state.emit(dataclasses.asdict(report), lambda: render_counts("rank", report))
    if report.stopped:
        state.notice("stopped before every changed post was rescored: run it again")
        raise typer.Exit(EXIT_LOCKED)
    if report.redis_failures:
        raise typer.Exit(EXIT_PARTIAL)


@app.command("backfill")
@handle_errors
def backfill(
    ctx: typer.Context,
    heuristic: Path | None = typer.Option(
        None, "--heuristic", help="The new heuristic TOML file (optional with --resume)."
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue the unfinished backfill where it stopped."
    ),
    replace: bool = typer.Option(
        False, "--replace", help="Abandon an unfinished backfill and start this one instead."
    ),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Report how many scores and entries would change and how far feeds' tops "
        "would move; write nothing.",
    ),
    shard: str = typer.Option(
        "0/1",
        "--shard",
        help="Do shard i of N (e.g. 2/8): in place, the users with user_id mod N = i; by swap, "
        "the feed_entry partitions with remainder mod N = i.",
    ),
    method: str = typer.Option(
        "auto",
        "--method",
        help="How feed entries are rewritten: swap (each partition rewritten and swapped in), "
        "in-place (changed rows updated), or auto: swap when at least 10% of posts change "
        "score. Taken when the backfill starts.",
    ),
    rate_limit: float | None = typer.Option(
        None,
        "--rate-limit",
        help="Write at most this many rows per second (read, with --dry-run).",
    ),
    chunk_rows: int = typer.Option(
        20_000, "--chunk-rows", help="Feed entries per transaction, about (sets peak memory)."
    ),
    sample_feeds: int = typer.Option(
        200, "--sample-feeds", help="With --dry-run: feeds whose top items are compared."
    ),
    top: int = typer.Option(20, "--top", help="With --dry-run: how many top items to compare."),
) -> None:
    """Recompute every score under a new heuristic version, in checkpointed chunks.

    Rescores post_score once, rewrites cached community feeds, then gives this shard's feed
    entries their new scores (by partition swap, or in place chunk by chunk) and rewrites
    their cached feeds. --dry-run says which method auto would choose. Stop it at any
    point (SIGTERM, Ctrl-C, even SIGKILL) and run it again with --resume. Exit 0 when this
    shard is done, 3 when some Redis writes failed (marked for repair), 75 when stopped
    early (resume it) or when the nightly rank or the same shard is running.
    """
    from feedctl.pipelines.ranking.backfill.preview import PreviewOptions
    from feedctl.pipelines.ranking.backfill.run import BackfillOptions, run_backfill
    from feedctl.pipelines.ranking.backfill.shards import parse_shard

    state = state_of(ctx)
    chosen = load_heuristic(heuristic) if heuristic else None
    target = parse_shard(shard)
    if dry_run:
        if chosen is None or resume or replace:
            raise BadInputError(
                "--dry-run needs --heuristic FILE (and neither --resume nor --replace)"
            )
        options = PreviewOptions(target, sample_feeds, top, rate_limit, chunk_rows, method)
        _preview(state, chosen, options)
        return
    run_options = BackfillOptions(target, resume, replace, rate_limit, chunk_rows, method)
    stop = threading.Event()
    with state.context() as context, stop_on_signals(stop), state.progress() as progress:
        report = run_backfill(context, chosen, run_options, stop=stop, progress=progress)
    state.emit(dataclasses.asdict(report), lambda: render_counts("rank backfill", report))
    if report.stopped:
        state.notice(
            f"stopped before shard {report.shard} was done: run `feedctl rank backfill "
            f"--resume --shard {report.shard}` to continue"
        )
        raise typer.Exit(EXIT_LOCKED)
    if not report.backfill_done:
        state.notice(
            f"shard {report.shard} is done; {report.shards_done} of {report.shard_count} "
            "shards are: run the others to finish the backfill"
        )
    if report.redis_failures:
        raise typer.Exit(EXIT_PARTIAL)


def _preview(state: CliState, heuristic: Heuristic, options: PreviewOptions) -> None:
    from feedctl.pipelines.ranking.backfill.preview import preview_backfill

    stop = threading.Event()
    with state.context() as context, stop_on_signals(stop), state.progress() as progress:
        preview = preview_backfill(context, heuristic, options, stop=stop, progress=progress)
    state.emit(
        dataclasses.asdict(preview), lambda: render_counts("rank backfill (DRY RUN)", preview)
    )
    if preview.stopped:
        raise typer.Exit(EXIT_LOCKED)


@app.command("explain")
@handle_errors
def explain(
    ctx: typer.Context,
    post_id: int = typer.Argument(..., help="The post to explain."),
    heuristic: Path | None = typer.Option(None, "--heuristic", help="Heuristic TOML file."),
) -> None:
    """Print each component of a post's rank key under a heuristic."""
    from feedctl.pipelines.ranking.explain import explain_post

    state = state_of(ctx)
    chosen = load_heuristic(heuristic or state.settings.heuristic)
    with state.context() as context:
        result = explain_post(context.conn, post_id, chosen)

    def human() -> None:
        from rich.table import Table

        table = Table(title=f"post {post_id} under heuristic {chosen.version}", show_header=False)
        for key, value in result.items():
            table.add_row(key, str(value))
        stdout.print(table)

    state.emit(result, human)
