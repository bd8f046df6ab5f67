"""`feedctl serve`."""

from __future__ import annotations

from typing import Any

import typer

from feedctl.cli.state import handle_errors, state_of, stdout
from feedctl.errors import EXIT_FAILED


@handle_errors
def serve(
    ctx: typer.Context,
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."
    ),
    port: int = typer.Option(8000, "--port", help="TCP port to listen on."),
    workers: int = typer.Option(
        1, "--workers", help="Worker processes, each with its own pools and metrics."
    ),
    check: bool = typer.Option(
        False,
        "--check",
        help="Open the pools, print where it would listen and whether PostgreSQL and Redis "
        "answer, and exit (1 when one does not) instead of serving.",
    ),
) -> None:
    """Serve feeds over HTTP (FastAPI under uvicorn; the `serve` extra).

    GET /v1/users/{id}/feed and /v1/communities/{id}/feed (limit, cursor) answer what
    `feedctl feed ... --json` prints; POST /v1/rebuilds and GET /v1/rebuilds/{id} need the
    api_token setting as a bearer token (refused when none is configured); GET /healthz,
    /readyz, /metrics (Prometheus) and /openapi.json. SIGTERM or Ctrl-C stops accepting,
    lets in-flight requests finish, closes the pools and exits 0.
    """
    from feedctl.api.server import preflight
    from feedctl.api.server import serve as run

    state = state_of(ctx)
    if not check:
        run(state.settings, host=host, port=port, workers=workers, notice=state.notice)
        return
    found = preflight(state.settings, host=host, port=port, workers=workers, notice=state.notice)
    state.emit(found, lambda: _render(found))
    if not (found["postgres"] and found["redis"]):
        raise typer.Exit(EXIT_FAILED)


def _render(found: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="serve --check", show_header=False)
    for key, value in found.items():
        shown = ("answers" if value else "does NOT answer") if isinstance(value, bool) else value
        table.add_row(key, str(shown))
    stdout.print(table)
