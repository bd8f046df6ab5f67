"""Job definitions (jobs/*.toml) and the flags a job may give its command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer

from feedctl.cli.app import app
from feedctl.cli.job_flags import parse_job_flags
from feedctl.config import Settings
from feedctl.errors import BadInputError, ConfigError
from feedctl.jobs.commands import COMMANDS
from feedctl.jobs.definitions import (
    configured_jobs,
    find_job,
    jobs_dir,
    load_jobs,
    parse_job,
)

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "jobs"


def raw(**overrides: Any) -> dict[str, Any]:
    job = {"command": "fanout", "timeout": "50s", "lock": "feedctl.job.fanout"}
    job.update(overrides)
    return job


def test_shipped_jobs_are_the_seven_scheduled_ones() -> None:
    jobs = {job.name: job for job in load_jobs(SHIPPED)}
    assert set(jobs) == {"fanout", "rank", "warm", "repair", "verify", "vacuum", "expire"}
    assert jobs["fanout"].command == "fanout"
    assert jobs["rank"].command == "rank"
    assert jobs["warm"].command == "cache warm"
    assert jobs["repair"].command == "cache repair"
    assert jobs["verify"].command == "cache verify"
    assert jobs["vacuum"].command == "cache vacuum"
    assert jobs["expire"].command == "expire"
    for job in jobs.values():
        assert job.timeout_seconds >= 1 and job.lock and job.description
    assert len({job.lock for job in jobs.values()}) == len(jobs)
    # fan-out runs every minute: its run and its hard limit must end within the minute
    assert jobs["fanout"].hard_limit_seconds < 60


def test_the_checkout_folder_is_the_default(tmp_path: Path) -> None:
    assert jobs_dir(Settings(home=tmp_path)) == SHIPPED
    assert jobs_dir(Settings(home=tmp_path, jobs_dir=tmp_path)) == tmp_path
    assert [j.name for j in configured_jobs(Settings(home=tmp_path))] == sorted(
        ["fanout", "rank", "warm", "repair", "verify", "vacuum", "expire"]
    )


def test_a_job_is_parsed_with_its_flags_and_limits() -> None:
    flags = ["--max-events", "500", "--consumer=shadow"]
    job = parse_job("fanout", raw(flags=flags), "f", parse_job_flags)
    assert job.options == {"max_events": 500, "consumer": "shadow"}
    assert job.timeout_seconds == 50
    assert job.hard_limit_seconds == 55  # 10% grace
    assert job.command_line == "feedctl fanout --max-events 500 --consumer=shadow"
    long_job = parse_job(
        "rank", raw(command="rank", timeout="2h", flags=["--all"]), "f", parse_job_flags
    )
    assert long_job.options == {"everything": True}
    assert long_job.hard_limit_seconds == 7200 + 60  # grace capped at a minute
    short = parse_job("repair", raw(command="cache repair", timeout="2s"), "f")
    assert short.hard_limit_seconds == 3  # grace at least a second


@pytest.mark.parametrize(
    ("name", "job", "fragment"),
    [
        ("Bad Name", raw(), "job name 'Bad Name'"),
        ("x", raw(colour="blue"), "unknown key 'colour'"),
        ("x", {"command": "fanout", "timeout": "5m"}, "'lock' is missing"),
        ("x", raw(command="rebuild"), "command 'rebuild' is not one a job can run"),
        ("x", raw(flags="--all"), "'flags' must be a list of strings"),
        ("x", raw(flags=["--all"]), "No such option: --all"),
        ("x", raw(flags=["--follow"]), "flag --follow is not one `fanout` takes in a job"),
        ("x", raw(flags=["--json"]), "flag --json is not one `fanout` takes in a job"),
        ("x", raw(flags=["--max-events"]), "'--max-events' requires an argument"),
        ("x", raw(flags=["--max-events", "0"]), "greater than or equal to 1"),
        ("x", raw(flags=["--max-events", "²"]), "valid integer"),
        ("x", raw(command="rank", flags=["--all=yes"]), "'--all' does not take a value"),
        ("x", raw(command="rank", flags=["backfill"]), "no argument 'backfill'"),
        ("x", raw(timeout="forever"), "duration 'forever'"),
        ("x", raw(timeout="0s"), "at least 1s"),
        ("x", raw(timeout=50), "'timeout' must be a non-empty string"),
        ("x", raw(lock=""), "'lock' must be a non-empty string"),
    ],
)
def test_mistakes_name_the_file_and_the_key(name: str, job: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_job(name, job, "job file jobs/x.toml", parse_job_flags)
    assert caught.value.message.startswith("job file jobs/x.toml: ")
    assert fragment in caught.value.message


def test_invalid_toml_and_empty_folders_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="holds no"):
        load_jobs(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_jobs(tmp_path / "missing")
    (tmp_path / "broken.toml").write_text("command = [\n")
    with pytest.raises(ConfigError, match=r"broken\.toml is not valid TOML"):
        load_jobs(tmp_path)


def test_an_unknown_job_lists_the_known_ones() -> None:
    with pytest.raises(BadInputError) as caught:
        find_job(SHIPPED, "nightly")
    assert "no job named 'nightly'" in caught.value.message
    assert "expire, fanout, rank, repair, vacuum, verify, warm" in caught.value.message
    with pytest.raises(BadInputError):
        find_job(SHIPPED, "../jobs/fanout")
    assert find_job(SHIPPED, "rank").name == "rank"


@pytest.mark.parametrize("command", [c for c, spec in COMMANDS.items() if spec.run is not None])
def test_job_options_are_the_cli_commands_own(command: str) -> None:
    """A job's flags are parsed by the CLI command itself, so `feedctl fanout --max-events 5`
    by hand does what a job with those flags does; a job may set only these options."""
    click_command: Any = typer.main.get_command(app)
    for word in command.split():
        click_command = click_command.commands[word]
    names = {param.name for param in click_command.params}
    assert COMMANDS[command].options <= names


def test_job_flags_are_parsed_as_the_command_line_parses_them() -> None:
    assert parse_job_flags("cache warm", ["--active-since=2d", "--force"]) == {
        "active_since": "2d",
        "force": True,
    }
    assert parse_job_flags("fanout", ["--max-events", "500", "--consumer=shadow"]) == {
        "max_events": 500,
        "consumer": "shadow",
    }
    assert parse_job_flags("fanout", ["--shard", "2/3"]) == {"shard": "2/3"}
    assert parse_job_flags("rank", ["--heuristic", "h.toml"]) == {"heuristic": Path("h.toml")}
    assert parse_job_flags("cache repair", []) == {}
    with pytest.raises(BadInputError, match="No such option: --force"):
        parse_job_flags("cache repair", ["--force"])
