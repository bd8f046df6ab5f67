"""`feedctl serve` options through the runner: --check against live and unreachable servers,
and bad options refused in one line (the server itself runs in tests/integration)."""

from __future__ import annotations

import json

from cli_runner import assert_clean_error, invoke

from ops_tools import free_port


def test_check_reports_both_servers_and_whether_rebuilds_are_enabled(
    base_args: list[str],
) -> None:
    result = invoke([*base_args, "--json", "serve", "--check", "--port", "8123"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "url": "http://127.0.0.1:8123",
        "workers": 1,
        "rebuilds": "refused: no api_token is configured",
        "postgres": True,
        "redis": True,
    }


def test_check_exits_1_when_a_server_does_not_answer() -> None:
    down = [
        "--database-url",
        f"postgresql://postgres@127.0.0.1:{free_port()}/none",
        "--redis-url",
        f"redis://127.0.0.1:{free_port()}/0",
    ]
    result = invoke([*down, "--json", "serve", "--check"])
    assert result.exit_code == 1
    found = json.loads(result.stdout)
    assert found["postgres"] is False and found["redis"] is False
    assert "Traceback" not in result.output


def test_bad_options_are_one_line() -> None:
    urls = ["--database-url", "postgresql://127.0.0.1:1/x", "--redis-url", "redis://127.0.0.1:1"]
    assert_clean_error(invoke([*urls, "serve", "--workers", "0"]), 2, "--workers must be")
    assert_clean_error(invoke([*urls, "serve", "--port", "70000"]), 2, "--port must be")
