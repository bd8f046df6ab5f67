"""`feedctl demo`: the whole pipeline on the configured (or embedded) servers."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import typer

from feedctl.cli.reports import render_page
from feedctl.cli.state import handle_errors, state_of, stdout

if TYPE_CHECKING:
    from feedctl.pipelines.demo import DemoReport


def _render(report: DemoReport) -> None:
    from rich.table import Table

    summary = Table(title="feedctl demo", show_header=False)
    if report.seeded:
        summary.add_row(
            "seeded",
            f"{report.seeded.users} users, {report.seeded.communities} "
            f"communities, {report.seeded.posts} posts",
        )
    fanned = report.fanout
    summary.add_row(
        "fan-out",
        f"{fanned.events} events, {fanned.entries_written} entries written, "
        f"{fanned.feeds_warmed} active users' feeds cached",
    )
    summary.add_row("rank", f"{report.rank.posts_rescored} posts rescored")
    summary.add_row(
        "cache warm", f"{report.warm.feeds_written} feeds, {report.warm.entries_written} entries"
    )
    stdout.print(summary)
    if report.page is None:
        stdout.print("no active user has a feed yet")
        return
    render_page(f"feed of user {report.user_id}", report.page)


@handle_errors
def demo(
    ctx: typer.Context,
    users: int = typer.Option(2_000, "--users", min=1, help="Users to seed on a fresh database."),
    communities: int = typer.Option(40, "--communities", min=1, help="Communities to seed."),
    posts: int = typer.Option(4_000, "--posts", min=1, help="Posts to seed."),
) -> None:
    """Migrate, seed a synthetic community, fan out, rank, warm and print a user's feed.

    With no URLs configured this runs on embedded servers that feedctl starts itself.
    """
    from feedctl.pipelines.demo import run_demo
    from feedctl.synth import SeedSpec

    state = state_of(ctx)
    spec = SeedSpec(users=users, communities=communities, posts=posts)
    with state.context() as context:
        report = run_demo(context, spec, state.notice)
    payload = dataclasses.asdict(report)
    payload["page"] = report.page.as_json() if report.page else None
    state.emit(payload, lambda: _render(report))
