"""The `feedctl` command: global options and one sub-app per noun."""

from __future__ import annotations

from pathlib import Path

import typer

from feedctl import __version__
from feedctl.cli import (
    cache,
    demo,
    expire,
    fanout,
    feed,
    jobs,
    migrate,
    rank,
    rebuild,
    seed,
    serve,
    services,
    status,
)
from feedctl.cli.global_options import FeedctlGroup, apply_global_options
from feedctl.cli.state import CliState

app = typer.Typer(
    name="feedctl",
    help="Run the feed pipeline of a communities app: migrations, fan-out, ranking, "
    "cache warming and repair, and feed reads, over PostgreSQL and Redis.",
    cls=FeedctlGroup,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=True,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"feedctl {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None,
        "--config",
        help="Path of feedctl.toml (default: $FEEDCTL_CONFIG, else the first feedctl.toml in "
        "., $XDG_CONFIG_HOME/feedctl, /etc/feedctl).",
    ),
    database_url: str | None = typer.Option(
        None, "--database-url", help="PostgreSQL URL (default: $FEEDCTL_DATABASE_URL, embedded)."
    ),
    redis_url: str | None = typer.Option(
        None,
        "--redis-url",
        help="Redis URL: redis://host:port/0, or redis+cluster://host:port[,host:port...] "
        "for a Redis Cluster (default: $FEEDCTL_REDIS_URL, embedded).",
    ),
    cap: int | None = typer.Option(
        None, "--cap", help="Items kept per cached feed (default 5000)."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show tracebacks on errors."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Global options: they apply to every command, given before it or after it."""
    ctx.obj = CliState()
    values = {
        "config": config,
        "database_url": database_url,
        "redis_url": redis_url,
        "cap": cap,
        "json_output": json_output,
        "verbose": verbose,
    }
    apply_global_options(ctx, values)


app.add_typer(migrate.app, name="migrate")
app.add_typer(rank.app, name="rank")
app.add_typer(cache.app, name="cache")
app.add_typer(feed.app, name="feed")
app.add_typer(services.app, name="services")
app.add_typer(jobs.app, name="jobs")
app.add_typer(fanout.app, name="fanout")
app.command("rebuild")(rebuild.rebuild)
app.command("expire")(expire.expire)
app.command("seed")(seed.seed)
app.command("demo")(demo.demo)
app.command("status")(status.status)
app.command("serve")(serve.serve)


def main() -> None:
    app()
