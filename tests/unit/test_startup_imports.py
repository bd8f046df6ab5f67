"""Start-up stays light: what a command imports before it runs, checked in a fresh interpreter.

`feedctl --version` and `--help` load neither the server clients nor Polars, NumPy, the
Prometheus client or any pipeline; `feedctl feed user ID` needs the server clients but not
Polars, NumPy or the Prometheus client. Commands import the rest when they run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import psycopg
import pytest
import redis
from typer.main import get_command

from feedctl.cli.app import app
from feedctl.errors import FeedctlError, ServiceUnavailableError
from feedctl.server_errors import as_feedctl_error

HEAVY = (
    "polars",
    "numpy",
    "psycopg",
    "redis",
    "prometheus_client",
    "matplotlib",
    "fastapi",
    "uvicorn",
)
HEAVY_FEEDCTL = ("feedctl.pipelines", "feedctl.synth", "feedctl.metrics")
MARKER = "modules:"


def imported_by(code: str) -> tuple[list[str], str]:
    """Run `code` in a fresh interpreter; the modules it left imported, and its output."""
    report = f"import json, sys\nprint({MARKER!r} + json.dumps(sorted(sys.modules)))\n"
    script = textwrap.dedent(code) + "\n" + report
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    output, _, modules = done.stdout.rpartition(MARKER)
    return json.loads(modules), output


def heavy(modules: list[str], roots: tuple[str, ...]) -> list[str]:
    return [m for m in modules if any(m == r or m.startswith(f"{r}.") for r in roots)]


@pytest.mark.parametrize(
    "args",
    [
        ["--version"],
        ["--help"],
        ["seed", "--help"],
        ["fanout", "--help"],
        ["rank", "backfill", "--help"],
        ["cache", "verify", "--help"],
        ["feed", "user", "--help"],
        ["serve", "--help"],
    ],
    ids=" ".join,
)
def test_version_and_help_import_no_server_client_polars_or_pipeline(args: list[str]) -> None:
    modules, output = imported_by(
        f"""
        from typer.main import get_command
        from feedctl.cli.app import app
        try:
            get_command(app).main({args!r}, prog_name="feedctl")
        except SystemExit as exit:
            assert not exit.code, exit.code
        """
    )
    assert "feedctl" in output
    assert heavy(modules, HEAVY + HEAVY_FEEDCTL) == []


def test_python_m_feedctl_version_imports_none_of_them() -> None:
    modules, output = imported_by(
        """
        import runpy, sys
        sys.argv = ["feedctl", "--version"]
        try:
            runpy.run_module("feedctl", run_name="__main__")
        except SystemExit as exit:
            assert not exit.code, exit.code
        """
    )
    assert output.strip() == "feedctl 0.1.0"
    assert heavy(modules, HEAVY + HEAVY_FEEDCTL) == []
    assert heavy(modules, ("rich",)) == []  # the consoles are made at their first use


def test_import_feedctl_loads_no_client_until_asked() -> None:
    """`feedctl.Client` is exported by a module __getattr__: importing the package loads
    neither the client nor its server libraries."""
    modules, _ = imported_by("import feedctl")
    assert heavy(modules, (*HEAVY, "psycopg_pool", "feedctl.client")) == []
    modules, _ = imported_by("import feedctl\nfeedctl.Client")
    assert "feedctl.client" in modules and "psycopg_pool" in modules


def test_feed_user_path_imports_no_polars_numpy_or_prometheus() -> None:
    """What `feedctl feed user ID` loads: the CLI, the connections and the reader."""
    modules, _ = imported_by(
        """
        import feedctl.cli.app, feedctl.cli.feed, feedctl.cli.reports
        import feedctl.context, feedctl.read.pages
        """
    )
    assert "psycopg" in modules
    assert "redis" in modules
    assert heavy(modules, ("polars", "numpy", "prometheus_client", "feedctl.synth")) == []
    assert "feedctl.metrics" not in modules


def test_mapping_an_error_imports_no_server_client() -> None:
    modules, output = imported_by(
        """
        from feedctl.server_errors import as_feedctl_error
        print(as_feedctl_error(ValueError("a bug")))
        """
    )
    assert output.strip() == "None"
    assert heavy(modules, HEAVY) == []


def test_server_failures_still_map_to_feedctl_errors() -> None:
    assert isinstance(as_feedctl_error(psycopg.OperationalError("down")), ServiceUnavailableError)
    refused = as_feedctl_error(psycopg.errors.UniqueViolation("taken"))
    assert type(refused) is FeedctlError
    assert "PostgreSQL refused a statement: taken" in refused.message
    assert isinstance(as_feedctl_error(redis.ConnectionError("gone")), ServiceUnavailableError)
    assert "Redis refused a command" in str(as_feedctl_error(redis.ResponseError("WRONGTYPE")))
    mine = FeedctlError("mine")
    assert as_feedctl_error(mine) is mine
    assert as_feedctl_error(ValueError("a bug")) is None


def _default(path: list[str], option: str) -> object:
    command = get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    (param,) = [p for p in command.params if option in p.opts]
    return param.default


def test_cli_defaults_are_the_library_defaults() -> None:
    """Defaults written out in the CLI (so --help loads no pipeline) equal the library's."""
    from feedctl.pipelines.cache.rebuild import USERS_PER_CHUNK
    from feedctl.pipelines.cache.verify import DEFAULT_SAMPLE
    from feedctl.pipelines.fanout.run import DEFAULT_CONSUMER
    from feedctl.synth import SeedSpec

    assert _default(["fanout"], "--consumer") == DEFAULT_CONSUMER
    assert _default(["rebuild"], "--chunk-size") == USERS_PER_CHUNK
    assert _default(["cache", "verify"], "--sample") == DEFAULT_SAMPLE
    spec = SeedSpec()
    for option, value in {
        "--users": spec.users,
        "--communities": spec.communities,
        "--posts": spec.posts,
        "--days": spec.days,
        "--seed": spec.seed,
    }.items():
        assert _default(["seed"], option) == value, option
