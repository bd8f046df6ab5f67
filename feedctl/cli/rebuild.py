"""`feedctl rebuild`."""

from __future__ import annotations

import dataclasses
import threading
from typing import TYPE_CHECKING, Any

import typer

from feedctl.cli.reports import render_counts
from feedctl.cli.state import handle_errors, state_of, stderr, stdout, stop_on_signals
from feedctl.errors import EXIT_FAILED, EXIT_PARTIAL, BadInputError
from feedctl.progress import Progress

if TYPE_CHECKING:
    from feedctl.context import Context
    from feedctl.pipelines.cache.rebuild import RebuildReport

USERS_PER_CHUNK = 200  # pipelines.rebuild's, kept here so --help loads no pipeline


@handle_errors
def rebuild(
    ctx: typer.Context,
    user: int | None = typer.Option(None, "--user", help="Rebuild one user's feed."),
    community: int | None = typer.Option(
        None, "--community", help="Rebuild every member's feed and the community's cached feed."
    ),
    everything: bool = typer.Option(
        False, "--all", help="Rebuild every user's feed, in chunks, recording progress."
    ),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="With --all: continue after the last chunk an interrupted run finished.",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the counts and a sample of the changes; change nothing."
    ),
    chunk_size: int = typer.Option(USERS_PER_CHUNK, "--chunk-size", help="Users per transaction."),
) -> None:
    """Recompute feeds from memberships and scored live posts younger than feed_retention:
    the whole retained feed in PostgreSQL, its top feed_cap in Redis.

    Each chunk of users is rewritten in PostgreSQL in one transaction (readers see the old
    feed or the new one), then their cached copies are swapped in atomically; feeds that are
    not cached stay uncached. Running it twice changes nothing the second time. SIGTERM or
    Ctrl-C stops after the current chunk (exit 1; continue with --all --resume).
    Exit 3 when some Redis writes failed (those feeds are marked for repair).
    """
    if sum([user is not None, community is not None, everything]) != 1:
        raise BadInputError("give exactly one of --user ID, --community ID and --all")
    if resume and not everything:
        raise BadInputError("--resume goes with --all")
    state = state_of(ctx)
    stop = threading.Event()
    with (
        state.context() as context,
        stop_on_signals(stop),
        state.progress() as progress,
    ):
        report = _run(
            context,
            progress,
            stop,
            user,
            community,
            resume=resume,
            dry_run=dry_run,
            size=chunk_size,
        )
    state.emit(_payload(report), lambda: _render(report))
    if report.stopped:
        stderr.print(
            f"stopped after {report.users} users: run `feedctl rebuild --all --resume` to continue",
            highlight=False,
        )
        raise typer.Exit(EXIT_FAILED)
    if report.redis_failures:
        raise typer.Exit(EXIT_PARTIAL)


def _run(
    context: Context,
    progress: Progress,
    stop: threading.Event,
    user: int | None,
    community: int | None,
    *,
    resume: bool,
    dry_run: bool,
    size: int,
) -> RebuildReport:
    from feedctl.pipelines.cache import rebuild as rebuilding

    if user is not None:
        return rebuilding.rebuild_user(context, user, dry_run=dry_run)
    if community is not None:
        return rebuilding.rebuild_community(
            context,
            community,
            dry_run=dry_run,
            progress=progress,
            stop=stop,
            chunk_size=size,
        )
    return rebuilding.rebuild_all(
        context,
        dry_run=dry_run,
        resume=resume,
        progress=progress,
        stop=stop,
        chunk_size=size,
    )


def _payload(report: RebuildReport) -> dict[str, Any]:
    payload = dataclasses.asdict(report)
    payload["sample"] = [
        {**dataclasses.asdict(change), "change": change.change} for change in report.sample
    ]
    return payload


def _render(report: RebuildReport) -> None:
    render_counts("rebuild" + (" (DRY RUN)" if report.dry_run else ""), report)
    if report.dry_run:
        from rich.table import Table

        sample = Table("user", "post", "change", "score before", "score after")
        sample.title = "sample of the changes" if report.sample else "nothing would change"
        for change in report.sample:
            sample.add_row(
                str(change.user_id),
                str(change.post_id),
                change.change,
                _score(change.score_before),
                _score(change.score_after),
            )
        stdout.print(sample)


def _score(score: float | None) -> str:
    return "-" if score is None else f"{score:.4f}"
