"""`feedctl jobs list|run` and `feedctl status` through the runner: exit code first, then
the stored state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cli_runner import assert_clean_error, invoke
from typer.testing import Result

from feedctl.jobs import runs as job_runs

pytestmark = pytest.mark.redis_cluster_too  # each test on one server and on a cluster


def log_lines(result: Result) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]


def test_jobs_list_shows_the_shipped_jobs(base_args: list[str]) -> None:
    result = invoke([*base_args, "--json", "jobs", "list"])
    assert result.exit_code == 0, result.output
    jobs = {job["name"]: job for job in json.loads(result.stdout)["jobs"]}
    assert set(jobs) == {"fanout", "rank", "warm", "repair", "verify", "vacuum", "expire"}
    assert jobs["warm"]["command_line"] == "feedctl cache warm"
    assert jobs["fanout"]["timeout_seconds"] == 50


def test_a_broken_job_file_is_one_clear_line(
    base_args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "jobs"
    folder.mkdir()
    (folder / "fanout.toml").write_text('command = "fanout"\ntimeout = "soon"\nlock = "x"\n')
    monkeypatch.setenv("FEEDCTL_JOBS_DIR", str(folder))
    assert_clean_error(invoke([*base_args, "jobs", "list"]), 2, "fanout.toml: duration 'soon'")
    assert_clean_error(invoke([*base_args, "jobs", "run", "fanout"]), 2, "fanout.toml")


def test_unknown_jobs_are_clean_errors(base_args: list[str]) -> None:
    assert_clean_error(invoke([*base_args, "jobs", "run", "nightly"]), 2, "no job named 'nightly'")


def test_verify_and_vacuum_jobs_run(base_args: list[str]) -> None:
    for name in ("verify", "vacuum"):
        result = invoke([*base_args, "--json", "jobs", "run", name])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["outcome"] == "succeeded"


def test_jobs_run_records_the_run_and_logs_json_lines(
    base_args: list[str], database_url: str
) -> None:
    assert invoke([*base_args, "seed", "--users", "60", "--posts", "80"]).exit_code == 0
    result = invoke([*base_args, "--json", "jobs", "run", "fanout"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["outcome"] == "succeeded" and payload["counts"]["events"] > 0
    logged = log_lines(result)
    assert [line["message"] for line in logged] == ["started", "finished: succeeded"]
    assert all(line["job"] == "fanout" and line["run_id"] == payload["run_id"] for line in logged)
    assert logged[1]["counts"]["events"] == payload["counts"]["events"]
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT outcome, exit_code, counts->>'events' FROM job_run WHERE id = %s",
            (payload["run_id"],),
        ).fetchone()
    assert row == ("succeeded", 0, str(payload["counts"]["events"]))


def test_a_held_job_lock_exits_75_naming_the_run(base_args: list[str], database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as holder:
        # What a running `feedctl jobs run fanout` holds: the lock and its job_run row.
        assert job_runs.try_lock(holder, "feedctl.job.fanout")
        run = job_runs.start(holder, "fanout", "fanout", "feedctl.job.fanout", "web-7", 4242)
        result = invoke([*base_args, "jobs", "run", "fanout"])
        assert_clean_error(result, 75, f"run {run.id} on web-7 (pid 4242)")
        assert "job fanout is already running" in result.stderr
        count = holder.execute("SELECT count(*) FROM job_run").fetchone()
        assert count == (1,), "the refused run is not recorded"


def test_status_says_what_needs_attention(base_args: list[str], database_url: str) -> None:
    quiet = invoke([*base_args, "--json", "status"])
    assert quiet.exit_code == 0, quiet.output
    assert json.loads(quiet.stdout)["attention"] == []
    human = invoke([*base_args, "status"])
    assert human.exit_code == 0 and "all well" in human.stdout
    assert invoke([*base_args, "seed", "--users", "60", "--posts", "80"]).exit_code == 0

    behind = invoke([*base_args, "--json", "status", "--max-lag", "0s"])
    assert behind.exit_code == 1
    report = json.loads(behind.stdout)
    [default] = report["consumers"]
    assert default["consumer"] == "default" and default["lag_events"] > 0
    assert any("consumer default is" in line for line in report["attention"])

    assert invoke([*base_args, "jobs", "run", "fanout"]).exit_code == 0
    assert invoke([*base_args, "jobs", "run", "warm"]).exit_code == 0
    ran = json.loads(invoke([*base_args, "--json", "status", "--max-lag", "1000w"]).stdout)
    jobs = {job["job"]: job for job in ran["jobs"]}
    assert jobs["fanout"]["outcome"] == "succeeded" and jobs["rank"]["outcome"] is None
    assert jobs["warm"]["last_success_at"] is not None
    assert ran["cache"]["active_users"] > 0 and ran["cache"]["share"] == 1.0
    assert ran["redis_alone_paused"] == []  # nothing owed: cached pages need no query
    assert ran["attention"] == []
    shown = invoke([*base_args, "status", "--max-lag", "1000w"]).stdout
    assert "cached pages from Redis alone: yes" in shown

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO rank_cache_pending (post_id) VALUES (1)")
    owed = json.loads(invoke([*base_args, "--json", "status", "--max-lag", "1000w"]).stdout)
    [reason] = owed["redis_alone_paused"]
    assert reason.startswith("rank owes cache writes")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM rank_cache_pending")

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO feed_repair (feed_kind, feed_id, reason, marked_at) "
            "VALUES ('user', 1, 'test', now() - interval '1 hour')"
        )
        conn.execute(
            "INSERT INTO job_run (job, command, lock_name, host, pid, backend_pid, finished_at, "
            "outcome, exit_code, message) VALUES ('rank', 'rank', 'feedctl.job.rank', 'h', 1, 0, "
            "now(), 'failed', 1, 'PostgreSQL failed: boom')"
        )
    sick = invoke([*base_args, "--json", "status", "--max-lag", "1000w"])
    assert sick.exit_code == 1
    attention = json.loads(sick.stdout)["attention"]
    assert len(attention) == 2, attention
    assert "1 feed(s) marked for repair, the oldest 60 min ago" in attention[0]
    assert attention[1].startswith("job rank: run") and "boom" in attention[1]


def test_status_of_an_unmigrated_database(empty_database_url: str, redis_server_url: str) -> None:
    args = ["--database-url", empty_database_url, "--redis-url", redis_server_url]
    result = invoke([*args, "--json", "status"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["migrations_pending"] and report["migrations_applied"] == 0
    assert "feedctl migrate up" in report["attention"][0]


def test_status_shows_which_config_file_it_read(
    empty_database_url: str, redis_server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["--database-url", empty_database_url, "--redis-url", redis_server_url]
    monkeypatch.chdir(tmp_path)
    none = invoke([*args, "status"])
    assert none.stdout.splitlines()[0] == "config: none: defaults and environment"
    assert json.loads(invoke([*args, "--json", "status"]).stdout)["config_file"] is None
    found = tmp_path / "feedctl.toml"
    found.write_text("feed_cap = 50\n")
    assert invoke([*args, "status"]).stdout.splitlines()[0] == f"config: {found}"
    assert json.loads(invoke([*args, "--json", "status"]).stdout)["config_file"] == str(found)


def test_status_rejects_a_bad_threshold(base_args: list[str]) -> None:
    assert_clean_error(invoke([*base_args, "status", "--max-lag", "soon"]), 2, "duration 'soon'")
