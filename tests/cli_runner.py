"""Driving the CLI in-process with Typer's runner, and what every CLI test checks."""

from __future__ import annotations

from typer.testing import CliRunner, Result

from feedctl.cli.app import app

runner = CliRunner()


def invoke(args: list[str]) -> Result:
    return runner.invoke(app, args, catch_exceptions=False)


def assert_clean_error(result: Result, code: int, fragment: str) -> None:
    """The exit code, no traceback, and exactly one line on stderr that says `fragment`."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0], lines[0]
