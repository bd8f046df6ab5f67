"""`feedctl seed`."""

from __future__ import annotations

import dataclasses

import typer

from feedctl.cli.reports import render_counts
from feedctl.cli.state import handle_errors, state_of
from feedctl.context import open_database
from feedctl.synth import SeedSpec
from feedctl.synth import seed as write_seed


@handle_errors
def seed(
    ctx: typer.Context,
    users: int = typer.Option(SeedSpec.users, "--users", min=1, help="Users to create."),
    communities: int = typer.Option(
        SeedSpec.communities, "--communities", min=1, help="Communities to create."
    ),
    posts: int = typer.Option(SeedSpec.posts, "--posts", min=1, help="Posts to create."),
    days: int = typer.Option(
        SeedSpec.days, "--days", min=1, help="Spread posts over this many days."
    ),
    random_seed: int = typer.Option(SeedSpec.seed, "--seed", min=0, help="Random seed."),
    join_events: bool = typer.Option(
        True, "--join-events/--no-join-events", help="Append member_joined events too."
    ),
) -> None:
    """Append a deterministic synthetic community to the database (users, communities,
    memberships, posts and their feed_events), written with COPY."""
    state = state_of(ctx)
    spec = SeedSpec(
        users=users,
        communities=communities,
        posts=posts,
        days=days,
        seed=random_seed,
        join_events=join_events,
    )
    with open_database(state.settings, state.notice, autocommit=True) as conn:
        report = write_seed(conn, spec)
    state.emit(dataclasses.asdict(report), lambda: render_counts("seed", report))
