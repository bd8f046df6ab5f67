"""Rendering count reports as a small table."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from feedctl.cli.state import stdout

if TYPE_CHECKING:
    from feedctl.read.pages import FeedPage


def render_counts(title: str, report: Any) -> None:
    """One row per field of a report dataclass (lists, such as samples, are left out)."""
    from rich.table import Table

    table = Table(title=title, show_header=False)
    for field in dataclasses.fields(report):
        if isinstance(getattr(report, field.name), list):
            continue
        table.add_row(field.name.replace("_", " "), str(getattr(report, field.name)))
    stdout.print(table)


def render_page(title: str, page: FeedPage) -> None:
    """A feed page as a table, then where the next page starts."""
    from rich.table import Table

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
