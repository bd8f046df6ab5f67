"""`feedctl services status|stop`: the embedded PostgreSQL and Redis."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import typer

from feedctl.cli.state import handle_errors, state_of, stdout

if TYPE_CHECKING:
    from feedctl import services as embedded

app = typer.Typer(
    help="Manage the embedded PostgreSQL and Redis that feedctl starts when no URL is set.",
    no_args_is_help=True,
)


def _show(state_list: list[embedded.ServiceStatus]) -> None:
    from rich.table import Table

    table = Table("service", "state", "url", "pid", "data")
    for s in state_list:
        table.add_row(
            s.name,
            "running" if s.running else "stopped",
            s.url or "",
            str(s.pid or ""),
            str(s.data_dir),
        )
    stdout.print(table)


@app.command("status")
@handle_errors
def status(ctx: typer.Context) -> None:
    """Show whether the embedded servers run, where, and their data directories."""
    from feedctl import services as embedded

    state = state_of(ctx)
    found = embedded.status(state.settings.home)
    state.emit({"services": [dataclasses.asdict(s) for s in found]}, lambda: _show(found))


@app.command("stop")
@handle_errors
def stop(ctx: typer.Context) -> None:
    """Stop the embedded servers (their data is kept for the next start)."""
    from feedctl import services as embedded

    state = state_of(ctx)
    found = embedded.stop(state.settings.home)
    state.emit({"services": [dataclasses.asdict(s) for s in found]}, lambda: _show(found))
