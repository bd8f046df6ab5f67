"""`feedctl rank`, `feedctl rank backfill` and `feedctl rank explain`."""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from feedctl.cli.reports import render_counts
from feedctl.cli.state import CliState, handle_errors, state_of, stdout, stop_on_signals
from feedctl.errors import EXIT_LOCKED, EXIT_PARTIAL, BadInputError
from feedctl.rank.heuristic import Heuristic, load_heuristic

if TYPE_CHECKING:
    from feedctl.pipelines.ranking.backfill.preview import PreviewOptions
    from feedctl.pipelines.ranking.evaluate import EvaluationOptions, EvaluationReport
    from feedctl.pipelines.ranking.tune import TuneReport

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


def _moment(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadInputError(
            f"{option} {text!r} is not a date or time: use e.g. 2026-11-01 or 2026-11-01T12:00Z"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _cutoffs(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise BadInputError(f"--k {text!r} must list whole numbers, e.g. 10,20,50") from None
    if not ks or ks[0] < 1:
        raise BadInputError(f"--k {text!r} must list positive cut-offs, e.g. 10,20,50")
    return ks


def evaluation_options(
    since: str | None,
    until: str | None,
    moments: int,
    sample_users: int,
    k: str,
    window: str,
    seed: int,
    resamples: int,
) -> EvaluationOptions:
    from feedctl.durations import parse_duration
    from feedctl.pipelines.ranking.evaluate import EvaluationOptions

    options = EvaluationOptions(
        since=_moment(since, "--since"),
        until=_moment(until, "--until"),
        moments=moments,
        sample_users=sample_users,
        ks=_cutoffs(k),
        window=parse_duration(window),
        seed=seed,
        resamples=resamples,
    )
    options.validate()
    return options


SINCE_HELP = (
    "First moment no earlier than this (ISO date or time, UTC if no zone; "
    "default: until - 14 days)."
)
UNTIL_HELP = "Last moment no later than this (default: the last engagement minus --window)."


@app.command("evaluate")
@handle_errors
def evaluate(
    ctx: typer.Context,
    heuristics: list[Path] = typer.Option(
        ...,
        "--heuristic",
        help="A heuristic TOML file; repeat to compare (the first is the baseline).",
    ),
    since: str | None = typer.Option(None, "--since", help=SINCE_HELP),
    until: str | None = typer.Option(None, "--until", help=UNTIL_HELP),
    moments: int = typer.Option(8, "--moments", help="Past moments, evenly spaced."),
    sample_users: int = typer.Option(
        200, "--sample-users", help="Users sampled at each moment (among those who engaged)."
    ),
    k: str = typer.Option("10,20,50", "--k", help="Cut-offs of the top-k metrics."),
    window: str = typer.Option(
        "24h", "--window", help="Engagement counted after each moment (e.g. 12h, 2d)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the user sample and the bootstrap."),
    resamples: int = typer.Option(1000, "--resamples", help="Bootstrap resamples."),
    html: Path | None = typer.Option(
        None,
        "--html",
        help="Also write a self-contained HTML report (figures inline) to this path.",
    ),
) -> None:
    """Replay past moments: rank sampled users' feeds as each heuristic would have, then
    score the rankings against the engagement that followed.

    Features are counted from post_engagements before each moment (never today's
    counters). Prints NDCG@k, recall@k, MRR and the share of distinct communities and
    authors in the top k, each with a 95% bootstrap interval and its paired difference
    from the first heuristic. Reads only; writes nothing to the database.
    """
    from feedctl.context import open_database
    from feedctl.pipelines.ranking.evaluate import run_evaluation

    state = state_of(ctx)
    chosen = [load_heuristic(path) for path in heuristics]
    options = evaluation_options(since, until, moments, sample_users, k, window, seed, resamples)
    retention = state.settings.retention
    stop = threading.Event()
    with (
        open_database(state.settings, state.notice, autocommit=True) as conn,
        stop_on_signals(stop),
        state.progress() as progress,
    ):
        evaluation = run_evaluation(conn, chosen, options, retention, progress=progress, stop=stop)
    if html is not None:
        from feedctl.pipelines.ranking.report import write_report

        try:
            write_report(evaluation, html)
        except OSError as exc:
            raise BadInputError(f"--html {html} cannot be written: {exc.strerror}") from None
    report = evaluation.report
    state.emit(dataclasses.asdict(report), lambda: render_evaluation(report))
    if html is not None:
        state.notice(f"report written to {html}")
    if report.stopped:
        state.notice("stopped early: only the moments read so far were evaluated")
        raise typer.Exit(EXIT_LOCKED)


def render_evaluation(report: EvaluationReport) -> None:
    """One row per metric, one column per heuristic: the mean with its 95% interval and,
    after the first, the paired difference from the first (* when it excludes zero)."""
    from rich.table import Table

    labels = [h["label"] for h in report.heuristics]
    title = (
        f"{report.queries} (moment, user) queries over {len(report.moments)} moments, "
        f"{report.window_hours:g} h windows"
    )
    table = Table("metric", *labels, title=title)
    metrics = list(dict.fromkeys(row.metric for row in report.metrics))
    for metric in metrics:
        cells = []
        for index, label in enumerate(labels):
            row = report.result(label, metric)
            cell = f"{row.mean:.3f} [{row.low:.3f}, {row.high:.3f}]"
            if index:
                mark = "*" if row.difference_low > 0 or row.difference_high < 0 else ""
                cell += (
                    f"\nΔ {row.difference:+.3f} "
                    f"[{row.difference_low:+.3f}, {row.difference_high:+.3f}]{mark}"
                )
            cells.append(cell)
        table.add_row(metric, *cells)
    stdout.print(table)
    stdout.print("Δ: paired difference from the first heuristic; * its 95% interval excludes 0")


@app.command("tune")
@handle_errors
def tune(
    ctx: typer.Context,
    space: Path = typer.Option(
        ..., "--space", help="Search space TOML: per coefficient min/max (log) or values."
    ),
    budget: int = typer.Option(30, "--budget", help="Coefficient sets to try."),
    baseline: Path | None = typer.Option(
        None, "--baseline", help="The heuristic to beat (default: config `heuristic`, built-in)."
    ),
    metric: str = typer.Option(
        "ndcg@10", "--metric", help="What to maximise: mrr, ndcg@K, recall@K."
    ),
    holdout: float = typer.Option(
        0.3, "--holdout", help="Share of the span, at its end, held out to confirm the best."
    ),
    output: Path | None = typer.Option(
        None, "--output", help="Where to write the winner (default: ./VERSION.toml)."
    ),
    version: str | None = typer.Option(
        None, "--version-name", help="The winner's version (default: tuned- and a hash)."
    ),
    since: str | None = typer.Option(None, "--since", help=SINCE_HELP),
    until: str | None = typer.Option(None, "--until", help=UNTIL_HELP),
    moments: int = typer.Option(8, "--moments", help="Past moments in each part."),
    sample_users: int = typer.Option(
        200, "--sample-users", help="Users sampled at each moment (among those who engaged)."
    ),
    window: str = typer.Option(
        "24h", "--window", help="Engagement counted after each moment (e.g. 12h, 2d)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the draws, the sample and the bootstrap."),
    resamples: int = typer.Option(1000, "--resamples", help="Bootstrap resamples."),
) -> None:
    """Search heuristic coefficients on a training window, confirm the best on a later
    held-out window, and write it as a new heuristic file with a new version.

    The file is written only when the best beats the baseline on the held-out window too;
    then the backfill that would apply it is printed (run its --dry-run first). Reads
    only; writes nothing to the database.
    """
    from feedctl.context import open_database
    from feedctl.pipelines.ranking.tune import TuneOptions, run_tune
    from feedctl.rank.evaluation.search import load_space

    state = state_of(ctx)
    chosen = load_heuristic(baseline or state.settings.heuristic)
    dimensions = load_space(space)
    evaluation = evaluation_options(
        since, until, moments, sample_users, "10", window, seed, resamples
    )
    options = TuneOptions(evaluation, budget, metric, holdout, version)
    options.validate()
    stop = threading.Event()
    with (
        open_database(state.settings, state.notice, autocommit=True) as conn,
        stop_on_signals(stop),
        state.progress() as progress,
    ):
        report = run_tune(
            conn,
            chosen,
            dimensions,
            options,
            state.settings.retention,
            output,
            progress=progress,
            stop=stop,
        )
    state.emit(dataclasses.asdict(report), lambda: render_tune(report))
    if report.stopped:
        state.notice("stopped before every trial ran: nothing was confirmed or written")
        raise typer.Exit(EXIT_LOCKED)
    if not report.confirmed:
        state.notice(
            f"no trial beat {report.baseline['version']} on the held-out window: "
            "no heuristic file written"
        )


def render_tune(report: TuneReport) -> None:
    from rich.table import Table

    table = Table(
        "",
        report.baseline["version"],
        f"best: {report.best['version']}",
        title=f"rank tune: {report.trials} trials on {report.metric}",
    )
    for name in ("half_life_hours", "reactions_weight", "comments_weight", "reputation_weight"):
        table.add_row(name, f"{report.baseline[name]:g}", f"{report.best[name]:g}")
    table.add_row(
        f"training ({report.training_queries} queries)",
        f"{report.training_baseline:.4f}",
        f"{report.training_best:.4f}",
    )
    table.add_row(
        f"held out ({report.holdout_queries} queries)",
        f"{report.holdout_baseline:.4f}",
        f"{report.holdout_best:.4f}  Δ {report.holdout_difference:+.4f} "
        f"[{report.holdout_difference_low:+.4f}, {report.holdout_difference_high:+.4f}]",
    )
    stdout.print(table)
    if report.heuristic_file:
        stdout.print(f"wrote {report.heuristic_file}; to apply it, preview then backfill:")
        for command in report.backfill_commands:
            stdout.print(f"  {command}", highlight=False)
