"""Job definitions (jobs/*.toml) and the flags a job may give its command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer

from feedctl.cli.app import app
from feedctl.config import Settings
from feedctl.errors import BadInputError, ConfigError
from feedctl.jobs.commands import COMMANDS, parse_flags
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
    job = parse_job("fanout", raw(flags=["--max-events", "500", "--consumer=shadow"]), "f")
    assert job.options == {"max_events": 500, "consumer": "shadow"}
    assert job.timeout_seconds == 50
    assert job.hard_limit_seconds == 55  # 10% grace
    assert job.command_line == "feedctl fanout --max-events 500 --consumer=shadow"
    long_job = parse_job("rank", raw(command="rank", timeout="2h", flags=["--all"]), "f")
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
        ("x", raw(flags=["--all"]), "flag '--all' is not one `fanout` takes"),
        ("x", raw(flags=["--max-events"]), "flag --max-events needs a value"),
        ("x", raw(flags=["--max-events", "0"]), "at least 1, got '0'"),
        ("x", raw(flags=["--max-events", "²"]), "at least 1"),
        ("x", raw(command="rank", flags=["--all=yes"]), "--all takes no value"),
        ("x", raw(command="cache warm", flags=["--active-since", "soon"]), "'soon'"),
        ("x", raw(timeout="forever"), "duration 'forever'"),
        ("x", raw(timeout="0s"), "at least 1s"),
        ("x", raw(timeout=50), "'timeout' must be a non-empty string"),
        ("x", raw(lock=""), "'lock' must be a non-empty string"),
    ],
)
def test_mistakes_name_the_file_and_the_key(name: str, job: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_job(name, job, "job file jobs/x.toml")
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


def cli_options(path: list[str]) -> dict[str, bool]:
    """The options of a CLI command: name -> is a switch."""
    command: Any = typer.main.get_command(app)
    for word in path:
        command = command.commands[word]
    found: dict[str, bool] = {}
    for param in command.params:
        for name in getattr(param, "opts", []):
            if name.startswith("--"):
                found[name] = bool(getattr(param, "is_flag", False))
    return found


@pytest.mark.parametrize("command", [c for c, spec in COMMANDS.items() if spec.run is not None])
def test_job_flags_mean_what_they_mean_on_the_command_line(command: str) -> None:
    """A job's flags are the CLI command's own, so `feedctl fanout --max-events 5` by hand
    does what a job with those flags does."""
    options = cli_options(command.split())
    for flag, spec in COMMANDS[command].flags.items():
        assert flag in options, f"`feedctl {command}` has no option {flag}"
        assert options[flag] == (spec.kind == "switch"), flag


def test_parse_flags_reads_both_spellings() -> None:
    assert parse_flags("cache warm", ["--active-since=2d", "--force"])["force"] is True
    assert parse_flags("cache warm", ["--active-since", "2d"])["active_since"].days == 2
    assert parse_flags("rank", ["--heuristic", "~/h.toml"])["heuristic"] == Path.home() / "h.toml"
    assert parse_flags("cache repair", []) == {}
    with pytest.raises(BadInputError, match="none"):
        parse_flags("cache repair", ["--force"])
