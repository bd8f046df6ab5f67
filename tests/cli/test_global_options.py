"""Global options mean the same before the command and after it, for every command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
import typer
from cli_runner import invoke

from feedctl.cli.app import app
from feedctl.cli.global_options import PANEL

# How to run each command against a small seeded world. A new command fails
# test_every_command_has_a_recipe until it is added here.
RECIPES: dict[tuple[str, ...], list[str]] = {
    ("migrate", "up"): [],
    ("migrate", "status"): [],
    ("fanout",): [],
    ("fanout", "reshard"): ["1", "--dry-run"],
    ("rank",): [],
    ("rank", "backfill"): ["--dry-run", "--heuristic", "{heuristic}"],
    ("rank", "explain"): ["{post_id}"],
    ("rank", "evaluate"): ["--heuristic", "{heuristic}", "--moments", "3", "--resamples", "50"],
    ("rank", "tune"): ["--space", "{space}", "--budget", "2", "--output", "{tuned}"],
    ("cache", "warm"): [],
    ("cache", "repair"): [],
    ("cache", "verify"): ["--sample", "5", "--seed", "1"],
    ("cache", "vacuum"): ["--dry-run"],
    ("feed", "user"): ["{user_id}", "--limit", "5"],
    ("feed", "community"): ["{community_id}", "--limit", "5"],
    ("jobs", "list"): [],
    ("jobs", "run"): ["verify", "--metrics-textfile", "{textfile}"],
    ("services", "status"): [],
    ("services", "stop"): [],
    ("rebuild",): ["--user", "{user_id}", "--dry-run"],
    ("expire",): ["--dry-run"],
    ("seed",): ["--users", "30", "--communities", "2", "--posts", "20", "--seed", "3"],
    ("demo",): ["--users", "30", "--communities", "2", "--posts", "20"],
    ("status",): [],
    ("serve",): ["--check"],  # it never binds (the server itself runs in tests/integration)
}
# Read-only commands whose output must be identical whichever position --json takes.
READ_ONLY = {
    ("migrate", "status"),
    ("rank", "explain"),
    ("feed", "user"),
    ("feed", "community"),
    ("jobs", "list"),
    ("cache", "verify"),
}


def _runnable(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command a user can run: leaves, and groups that run without a subcommand."""
    found = []
    if path and (not hasattr(command, "commands") or command.invoke_without_command):
        found.append(path)
    for name, sub in getattr(command, "commands", {}).items():
        found.extend(_runnable(sub, (*path, name)))
    return found


def test_every_command_has_a_recipe() -> None:
    assert sorted(_runnable(typer.main.get_command(app))) == sorted(RECIPES)


@pytest.mark.parametrize("path", [path for path in RECIPES if path], ids=" ".join)
def test_every_command_lists_the_global_options(path: tuple[str, ...]) -> None:
    result = invoke([*path, "--help"])
    assert result.exit_code == 0, result.output
    assert PANEL in result.stdout
    for option in ("--json", "--verbose", "--config", "--database-url", "--redis-url", "--cap"):
        assert option in result.stdout, (path, option)


@pytest.fixture
def world(
    database_url: str, redis_server_url: str, redis_prefix: str, tmp_path: Path
) -> dict[str, Any]:
    """A small seeded, fanned-out world, with global options kept apart from the command."""
    config = tmp_path / "feedctl.toml"
    home = tmp_path / "home"
    config.write_text(
        f'redis_key_prefix = "{redis_prefix}"\nfeed_cap = 50\nhome = "{home}"\n'
        f'jobs_dir = "{Path(__file__).parents[2] / "jobs"}"\n'
    )
    options = ["--config", str(config), "--database-url", database_url]
    options += ["--redis-url", redis_server_url]
    seeded = invoke([*options, "seed", "--users", "60", "--communities", "3", "--posts", "40"])
    assert seeded.exit_code == 0, seeded.output
    assert invoke([*options, "fanout"]).exit_code == 0
    with psycopg.connect(database_url) as conn:
        user_id, community_id = conn.execute(
            "SELECT user_id, community_id FROM memberships ORDER BY 1, 2 LIMIT 1"
        ).fetchone()
        post_id = conn.execute("SELECT min(id) FROM posts").fetchone()[0]
    heuristic = tmp_path / "heuristic.toml"
    heuristic.write_text(
        'version = "next"\nhalf_life_hours = 12\nreactions_weight = 2\n'
        "comments_weight = 1\nreputation_weight = 0.5\n"
    )
    space = tmp_path / "space.toml"
    space.write_text("[half_life_hours]\nvalues = [6.0, 48.0]\n")
    values = {
        "space": space,
        "tuned": tmp_path / "tuned.toml",
        "user_id": user_id,
        "community_id": community_id,
        "post_id": post_id,
        "heuristic": heuristic,
        "textfile": tmp_path / "verify.prom",
    }
    return {"options": options, "values": values}


def _json_documents(text: str) -> list[Any]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _without_cursors(text: str) -> list[Any]:
    documents = _json_documents(text)
    for document in documents:
        if isinstance(document, dict):
            document.pop("next_cursor", None)
    return documents


@pytest.mark.parametrize("path", list(RECIPES), ids=" ".join)
def test_json_before_and_after_the_command(path: tuple[str, ...], world: dict[str, Any]) -> None:
    args = [part.format(**world["values"]) for part in RECIPES[path]]
    options = world["options"]
    before = invoke([*options, "--json", *path, *args])
    after = invoke([*path, *args, *options, "--json"])
    assert "No such option" not in after.output
    assert before.exit_code == after.exit_code, (before.output, after.output)
    assert "Traceback" not in before.output + after.output
    assert before.stdout.strip(), before.output
    # --json took effect in both positions: every line on stdout is a JSON document.
    assert _json_documents(before.stdout) and _json_documents(after.stdout)
    if path in READ_ONLY:  # the same answer (a cursor names its own walk, so not it)
        assert _without_cursors(before.stdout) == _without_cursors(after.stdout)


def test_a_value_after_the_command_wins(world: dict[str, Any]) -> None:
    user_id = str(world["values"]["user_id"])
    options = world["options"]
    wrong = [*options[:2], "--database-url", "postgresql://nobody@127.0.0.1:1/none", *options[4:]]
    result = invoke([*wrong, "feed", "user", user_id, *options[2:4], "--json"])
    assert result.exit_code == 0, result.output
    assert _json_documents(result.stdout)[0]["items"]


def test_verbose_after_the_command_shows_the_traceback(world: dict[str, Any]) -> None:
    options = world["options"]
    down = [*options[:2], "--database-url", "postgresql://nobody@127.0.0.1:1/none", *options[4:]]
    quiet = invoke([*down, "feed", "user", "1"])
    loud = invoke([*down, "feed", "user", "1", "--verbose"])
    assert quiet.exit_code == loud.exit_code == 1
    assert "Traceback" not in quiet.output
    assert "Traceback" in loud.stderr
