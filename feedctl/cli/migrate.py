"""`feedctl migrate up|status`."""

from __future__ import annotations

import typer

from feedctl.cli.state import handle_errors, state_of, stdout

app = typer.Typer(help="Apply and inspect the SQL migrations in sql/.", no_args_is_help=True)


@app.command("up")
@handle_errors
def up(ctx: typer.Context) -> None:
    """Apply pending migrations in name order, each in its own transaction, under a lock.

    A file changed after it was applied is refused: write a new migration instead.
    """
    from feedctl.context import open_database
    from feedctl.db import migrations

    state = state_of(ctx)
    with open_database(state.settings, state.notice, autocommit=True) as conn:
        applied = migrations.upgrade(
            conn,
            on_applied=lambda name: state.notice(f"applied {name}"),
            feed_partitions=state.settings.feed_partitions,
        )
    state.emit(
        {"applied": applied},
        lambda: stdout.print(
            f"applied {len(applied)} migration(s)" if applied else "schema is up to date"
        ),
    )


@app.command("status")
@handle_errors
def status(ctx: typer.Context) -> None:
    """List every migration file and whether it is applied. Exit 1 if any is pending or changed."""
    from feedctl.context import open_database
    from feedctl.db import migrations

    state = state_of(ctx)
    with open_database(state.settings, state.notice, autocommit=True) as conn:
        states = migrations.status(conn)
    payload = {
        "migrations": [
            {"name": s.name, "applied_at": s.applied_at, "changed": s.changed} for s in states
        ],
        "pending": sum(s.applied_at is None for s in states),
        "changed": sum(s.changed for s in states),
    }

    def human() -> None:
        from rich.table import Table

        table = Table("migration", "applied at", "state")
        for s in states:
            label = "changed!" if s.changed else ("applied" if s.applied_at else "pending")
            table.add_row(s.name, str(s.applied_at or ""), label)
        stdout.print(table)

    state.emit(payload, human)
    if payload["pending"] or payload["changed"]:
        raise typer.Exit(1)
