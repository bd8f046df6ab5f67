"""`feedctl feed user|community`."""

from __future__ import annotations

from typing import Literal

import typer

from feedctl.cli.reports import render_page
from feedctl.cli.state import handle_errors, state_of

app = typer.Typer(help="Read a feed page by page (cache first).", no_args_is_help=True)

LIMIT = typer.Option(20, "--limit", help="Items per page (1-500).")
CURSOR = typer.Option(None, "--cursor", help="The next_cursor of the previous page.")


@app.command("user")
@handle_errors
def user(
    ctx: typer.Context,
    user_id: int = typer.Argument(..., help="The user whose home feed to read."),
    limit: int = LIMIT,
    cursor: str | None = CURSOR,
) -> None:
    """One page of a user's feed: posts of the communities they belong to, best first."""
    _print_page(ctx, "user", user_id, limit, cursor)


@app.command("community")
@handle_errors
def community(
    ctx: typer.Context,
    community_id: int = typer.Argument(..., help="The community whose feed to read."),
    limit: int = LIMIT,
    cursor: str | None = CURSOR,
) -> None:
    """One page of a community's feed: its live posts, best first."""
    _print_page(ctx, "community", community_id, limit, cursor)


def _print_page(
    ctx: typer.Context,
    kind: Literal["user", "community"],
    feed_id: int,
    limit: int,
    cursor: str | None,
) -> None:
    from feedctl.cache.keys import FeedRef
    from feedctl.read.pages import FeedReader

    state = state_of(ctx)
    with state.context() as context:
        reader = FeedReader.for_settings(context.conn, context.cache, context.settings)
        page = reader.page(FeedRef(kind, feed_id), limit, cursor)
    state.emit(page.as_json(), lambda: render_page(f"feed of {kind} {feed_id}", page))
