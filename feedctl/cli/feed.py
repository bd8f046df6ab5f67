"""`feedctl feed user|community`."""

from __future__ import annotations

import typer
from rich.table import Table

from feedctl.cli.state import handle_errors, state_of, stdout
from feedctl.read.pages import FeedPage, FeedReader

app = typer.Typer(help="Read a feed page by page (cache first).", no_args_is_help=True)

LIMIT = typer.Option(20, "--limit", help="Items per page (1-500).")
CURSOR = typer.Option(None, "--cursor", help="The next_cursor of the previous page.")


def _render(title: str, page: FeedPage) -> None:
    table = Table("post", "community", "author", "created at", "score", title=title)
    for item in page.items:
        table.add_row(
            str(item.post_id),
            str(item.community_id),
            str(item.author_id),
            item.created_at.strftime("%Y-%m-%d %H:%M"),
            f"{item.score:.4f}",
        )
    stdout.print(table)
    stdout.print(f"next cursor: {page.next_cursor or '(end of feed)'}  [dim]({page.source})[/dim]")


@app.command("user")
@handle_errors
def user(
    ctx: typer.Context,
    user_id: int = typer.Argument(..., help="The user whose home feed to read."),
    limit: int = LIMIT,
    cursor: str | None = CURSOR,
) -> None:
    """One page of a user's feed: posts of the communities they belong to, best first."""
    state = state_of(ctx)
    with state.context() as context:
        reader = FeedReader(context.conn, context.cache, context.settings.cursor_secret)
        page = reader.user_feed(user_id, limit, cursor)
    state.emit(page.as_json(), lambda: _render(f"feed of user {user_id}", page))


@app.command("community")
@handle_errors
def community(
    ctx: typer.Context,
    community_id: int = typer.Argument(..., help="The community whose feed to read."),
    limit: int = LIMIT,
    cursor: str | None = CURSOR,
) -> None:
    """One page of a community's feed: its live posts, best first."""
    state = state_of(ctx)
    with state.context() as context:
        reader = FeedReader(context.conn, context.cache, context.settings.cursor_secret)
        page = reader.community_feed(community_id, limit, cursor)
    state.emit(page.as_json(), lambda: _render(f"feed of community {community_id}", page))
