"""`feedctl rank` and `feedctl rank explain`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer
from rich.table import Table

from feedctl import metrics
from feedctl.cli.reports import render_counts
from feedctl.cli.state import handle_errors, state_of, stdout
from feedctl.errors import EXIT_PARTIAL
from feedctl.pipelines.explain import explain_post
from feedctl.pipelines.rank import RankReport, run_rank
from feedctl.rank.heuristic import load_heuristic

app = typer.Typer(help="Recompute rank keys of posts and feeds.")


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
    """Rescore posts whose reactions, comments, author reputation or heuristic version changed.

    New scores go to post_score and feed_entry in PostgreSQL, then to cached feeds in Redis.
    Exit 3 when some Redis writes failed (those feeds are marked for repair).
    """
    if ctx.invoked_subcommand is not None:
        return
    state = state_of(ctx)
    chosen = load_heuristic(heuristic or state.settings.heuristic)
    measured = metrics.pushed(state.settings, "rank", "rank", state.notice)
    with measured as record, state.context() as context, state.progress("rank (posts)") as advance:
        context.heuristic = chosen
        seen = [0]

        def on_chunk(report: RankReport) -> None:
            advance(report.posts_rescored - seen[0])
            seen[0] = report.posts_rescored

        report = run_rank(context, everything=everything, progress=on_chunk)
        record.report(report)
    state.emit(dataclasses.asdict(report), lambda: render_counts("rank", report))
    if report.redis_failures:
        raise typer.Exit(EXIT_PARTIAL)


@app.command("explain")
@handle_errors
def explain(
    ctx: typer.Context,
    post_id: int = typer.Argument(..., help="The post to explain."),
    heuristic: Path | None = typer.Option(None, "--heuristic", help="Heuristic TOML file."),
) -> None:
    """Print each component of a post's rank key under a heuristic."""
    state = state_of(ctx)
    chosen = load_heuristic(heuristic or state.settings.heuristic)
    with state.context() as context:
        result = explain_post(context.conn, post_id, chosen)

    def human() -> None:
        table = Table(title=f"post {post_id} under heuristic {chosen.version}", show_header=False)
        for key, value in result.items():
            table.add_row(key, str(value))
        stdout.print(table)

    state.emit(result, human)
