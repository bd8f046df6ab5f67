"""`feedctl seed`."""

from __future__ import annotations

import dataclasses

import typer

from feedctl.cli.reports import render_counts
from feedctl.cli.state import handle_errors, state_of

# SeedSpec's defaults, kept here so that --help loads neither feedctl.synth nor NumPy.
USERS, COMMUNITIES, POSTS, DAYS, SEED = 2_000, 40, 4_000, 28, 42


@handle_errors
def seed(
    ctx: typer.Context,
    users: int = typer.Option(USERS, "--users", min=1, help="Users to create."),
    communities: int = typer.Option(
        COMMUNITIES, "--communities", min=1, help="Communities to create."
    ),
    posts: int = typer.Option(POSTS, "--posts", min=1, help="Posts to create."),
    days: int = typer.Option(DAYS, "--days", min=1, help="Spread posts over this many days."),
    random_seed: int = typer.Option(SEED, "--seed", min=0, help="Random seed."),
    join_events: bool = typer.Option(
        True, "--join-events/--no-join-events", help="Append member_joined events too."
    ),
    engagement: bool = typer.Option(
        True,
        "--engagement/--no-engagement",
        help="Append post_engagements (views, reactions, comments) drawn from a hidden "
        "preference, for `rank evaluate` and `rank tune`.",
    ),
) -> None:
    """Append a deterministic synthetic community to the database (users, communities,
    memberships, posts and their feed_events, and post_engagements), written with COPY."""
    from feedctl.context import open_database
    from feedctl.synth import SeedSpec
    from feedctl.synth import seed as write_seed

    state = state_of(ctx)
    spec = SeedSpec(
        users=users,
        communities=communities,
        posts=posts,
        days=days,
        seed=random_seed,
        join_events=join_events,
        engagement=engagement,
    )
    with (
        open_database(state.settings, state.notice, autocommit=True) as conn,
        state.progress() as progress,
    ):
        report = write_seed(conn, spec, progress)
    state.emit(dataclasses.asdict(report), lambda: render_counts("seed", report))
