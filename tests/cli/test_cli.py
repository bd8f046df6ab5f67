"""The CLI through Typer's runner: exit codes first, then the stored state."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import psycopg
import pytest
import typer
from cli_runner import assert_clean_error, invoke

from feedctl.cli.app import app


def walk(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    found = [(path, command)]
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            found.extend(walk(sub, (*path, name)))
    return found


def test_every_command_has_help_text() -> None:
    root = typer.main.get_command(app)
    commands = walk(root)
    assert len(commands) > 12
    for path, command in commands:
        assert (command.help or "").strip(), f"{' '.join(path)} has no help text"
        result = invoke([*path, "--help"])
        assert result.exit_code == 0, path


def test_pipeline_through_the_cli(base_args: list[str], database_url: str) -> None:
    assert (
        invoke(
            [*base_args, "seed", "--users", "200", "--communities", "5", "--posts", "100"]
        ).exit_code
        == 0
    )
    fanned = invoke([*base_args, "--json", "fanout"])
    assert fanned.exit_code == 0, fanned.output
    summary = json.loads(fanned.stdout)
    assert (
        summary["events"] > 0 and summary["entries_written"] > 0 and summary["redis_failures"] == 0
    )
    with psycopg.connect(database_url) as conn:
        stored = conn.execute("SELECT count(*) FROM feed_entry").fetchone()[0]
        user_id, count = conn.execute(
            "SELECT user_id, count(*) FROM feed_entry GROUP BY 1 ORDER BY 2 DESC LIMIT 1"
        ).fetchone()
    assert stored == summary["entries_written"]
    assert invoke([*base_args, "rank"]).exit_code == 0
    assert invoke([*base_args, "cache", "warm"]).exit_code == 0
    seen: list[int] = []
    cursor: str | None = None
    while True:
        args = [*base_args, "--json", "feed", "user", str(user_id), "--limit", "30"]
        result = invoke(args + (["--cursor", cursor] if cursor else []))
        assert result.exit_code == 0, result.output
        page = json.loads(result.stdout)
        for item in page["items"]:
            assert set(item) == {"post_id", "community_id", "author_id", "created_at", "score"}
        seen.extend(item["post_id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == count == len(set(seen))
    explained = invoke([*base_args, "--json", "rank", "explain", str(seen[0])])
    assert explained.exit_code == 0
    parts = json.loads(explained.stdout)
    assert parts["score"] == pytest.approx(parts["stored_score"])
    assert parts["score"] == pytest.approx(
        parts["engagement"] + parts["reputation_term"] + parts["freshness"]
    )
    rebuilt = invoke([*base_args, "--json", "rebuild", "--user", str(user_id), "--dry-run"])
    assert rebuilt.exit_code == 0 and json.loads(rebuilt.stdout)["dry_run"] is True


def test_unknown_user_is_a_clean_error(base_args: list[str]) -> None:
    assert_clean_error(
        invoke([*base_args, "feed", "user", "987654"]), 2, "user 987654 does not exist"
    )
    assert_clean_error(invoke([*base_args, "rebuild", "--user", "987654"]), 2, "does not exist")
    assert_clean_error(invoke([*base_args, "rank", "explain", "987654"]), 2, "post 987654")


def test_bad_cursor_is_a_clean_error(base_args: list[str]) -> None:
    invoke([*base_args, "seed", "--users", "20", "--communities", "2", "--posts", "10"])
    result = invoke([*base_args, "feed", "user", "1", "--cursor", "not-a-cursor"])
    assert_clean_error(result, 2, "cursor")


def test_malformed_config_is_a_clean_error(tmp_path: Path) -> None:
    config = tmp_path / "feedctl.toml"
    config.write_text("database_url = [unterminated\n")
    assert_clean_error(invoke(["--config", str(config), "migrate", "status"]), 2, "not valid TOML")
    config.write_text('feed_cap = "many"\n')
    assert_clean_error(invoke(["--config", str(config), "migrate", "status"]), 2, "feed_cap")
    config.write_text('colour = "blue"\n')
    assert_clean_error(invoke(["--config", str(config), "migrate", "status"]), 2, "colour")


def test_malformed_heuristic_is_a_clean_error(base_args: list[str], tmp_path: Path) -> None:
    heuristic = tmp_path / "h.toml"
    heuristic.write_text(
        'version = "x"\nhalf_life_hours = 0\nreactions_weight = 1\ncomments_weight = 1\n'
        "reputation_weight = 1\n"
    )
    assert_clean_error(
        invoke([*base_args, "rank", "--heuristic", str(heuristic)]), 2, "half_life_hours"
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_database_is_a_clean_error(redis_server_url: str) -> None:
    url = f"postgresql://postgres@127.0.0.1:{closed_port()}/nowhere"
    result = invoke(["--database-url", url, "--redis-url", redis_server_url, "fanout"])
    assert_clean_error(result, 1, "cannot reach PostgreSQL")


def test_unmigrated_database_says_what_to_do(
    empty_database_url: str, redis_server_url: str
) -> None:
    result = invoke(
        ["--database-url", empty_database_url, "--redis-url", redis_server_url, "fanout"]
    )
    assert_clean_error(result, 1, "feedctl migrate up")


def test_migrate_up_and_status(empty_database_url: str) -> None:
    args = ["--database-url", empty_database_url]
    assert invoke([*args, "migrate", "status"]).exit_code == 1  # everything pending
    up = invoke([*args, "--json", "migrate", "up"])
    assert up.exit_code == 0
    assert "0013_communities_feed_entry.sql" in json.loads(up.stdout)["applied"]
    status = invoke([*args, "--json", "migrate", "status"])
    assert status.exit_code == 0
    assert json.loads(status.stdout)["pending"] == 0


def test_rebuild_needs_exactly_one_target(base_args: list[str]) -> None:
    assert_clean_error(invoke([*base_args, "rebuild"]), 2, "exactly one")
    assert_clean_error(invoke([*base_args, "rebuild", "--user", "1", "--all"]), 2, "exactly one")
