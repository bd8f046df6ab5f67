"""A real Pushgateway (Debian's prometheus-pushgateway, started here on a free port): jobs
and commands run by hand push their metrics, a failure leaves the last success in place,
and a Pushgateway that is down costs one warning, never the exit code."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_runner import invoke
from typer.testing import Result

from feedctl.metrics import instance_name

from ops_tools import Pushgateway, require_tool

HEURISTIC = """version = "push-test-1"
half_life_hours = 24.0
reactions_weight = 1.0
comments_weight = 3.0
reputation_weight = 0.25
"""


@pytest.fixture
def pushgateway(tmp_path: Path) -> Iterator[Pushgateway]:
    gateway = Pushgateway(require_tool("prometheus-pushgateway", "pushgateway"), tmp_path)
    gateway.start()
    yield gateway
    gateway.stop()


@pytest.fixture
def heuristic(tmp_path: Path) -> Path:
    path = tmp_path / "heuristic.toml"
    path.write_text(HEURISTIC)
    return path


@pytest.fixture
def config_options(tmp_path: Path, pushgateway: Pushgateway, heuristic: Path) -> dict[str, object]:
    """Push to the test's Pushgateway; run jobs from a folder of the test's own."""
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "fanout.toml").write_text('command = "fanout"\ntimeout = "1m"\nlock = "t.fanout"\n')
    (jobs / "rank.toml").write_text(
        f'command = "rank"\nflags = ["--heuristic", {json.dumps(str(heuristic))}]\n'
        'timeout = "1m"\nlock = "t.rank"\n'
    )
    return {"pushgateway_url": pushgateway.url, "jobs_dir": str(jobs)}


def pushed(gateway: Pushgateway, job: str) -> dict[str, float]:
    """The samples of one job's group, by metric name."""
    group = {("job", job), ("instance", instance_name())}
    return {
        name: value
        for (name, labels), value in gateway.scrape().items()
        if name.startswith("feedctl_") and set(labels) == group
    }


def warnings_in(result: Result) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    return [line for line in lines if line["level"] == "warning"]


def test_job_runs_push_what_they_did(
    base_args: list[str], pushgateway: Pushgateway, heuristic: Path
) -> None:
    seeded = invoke([*base_args, "seed", "--users", "80", "--communities", "3", "--posts", "90"])
    assert seeded.exit_code == 0
    fanned = invoke([*base_args, "--json", "jobs", "run", "fanout"])
    assert fanned.exit_code == 0, fanned.output
    counts = json.loads(fanned.stdout)["counts"]
    fanout = pushed(pushgateway, "fanout")
    assert fanout["feedctl_fanout_events"] == counts["events"]
    assert fanout["feedctl_fanout_entries_written"] == counts["entries_written"]
    assert fanout["feedctl_fanout_lag_events"] == counts["lag_events"]
    assert fanout["feedctl_redis_write_failures"] == 0
    assert fanout["feedctl_job_exit_code"] == 0
    assert fanout["feedctl_job_consecutive_failures"] == 0
    assert fanout["feedctl_job_duration_seconds"] > 0
    assert abs(fanout["feedctl_job_last_success_timestamp_seconds"] - time.time()) < 60

    ranked = invoke([*base_args, "--json", "jobs", "run", "rank"])
    assert ranked.exit_code == 0, ranked.output
    rank = pushed(pushgateway, "rank")
    assert (
        rank["feedctl_rank_posts_rescored"] == json.loads(ranked.stdout)["counts"]["posts_rescored"]
    )
    succeeded_at = rank["feedctl_job_last_success_timestamp_seconds"]

    heuristic.unlink()  # the next runs fail: bad input, exit 2
    for attempt in (1, 2):
        failed = invoke([*base_args, "jobs", "run", "rank"])
        assert failed.exit_code == 2, failed.output
        rank = pushed(pushgateway, "rank")
        assert rank["feedctl_job_exit_code"] == 2
        assert rank["feedctl_job_consecutive_failures"] == attempt
        assert rank["feedctl_job_last_success_timestamp_seconds"] == succeeded_at
        assert rank["feedctl_job_last_run_timestamp_seconds"] > succeeded_at


def test_commands_run_by_hand_push_too(base_args: list[str], pushgateway: Pushgateway) -> None:
    invoke([*base_args, "seed", "--users", "60", "--communities", "2", "--posts", "40"])
    dry = invoke([*base_args, "fanout", "--dry-run"])
    assert dry.exit_code == 0
    assert pushed(pushgateway, "fanout") == {}, "a dry run pushes nothing"
    fanned = invoke([*base_args, "--json", "fanout"])
    assert fanned.exit_code == 0, fanned.output
    fanout = pushed(pushgateway, "fanout")
    assert fanout["feedctl_fanout_events"] == json.loads(fanned.stdout)["events"]
    assert "feedctl_job_consecutive_failures" not in fanout  # only jobs keep a history
    assert invoke([*base_args, "cache", "warm"]).exit_code == 0
    assert pushed(pushgateway, "warm")["feedctl_job_exit_code"] == 0
    assert invoke([*base_args, "cache", "repair"]).exit_code == 0
    assert pushed(pushgateway, "repair")["feedctl_repair_feeds_repaired"] == 0
    assert invoke([*base_args, "rank"]).exit_code == 0
    assert "feedctl_rank_posts_rescored" in pushed(pushgateway, "rank")
    bad = invoke([*base_args, "cache", "warm", "--users", "/nonexistent/ids.txt"])
    assert bad.exit_code == 2
    assert pushed(pushgateway, "warm")["feedctl_job_exit_code"] == 2


def test_a_pushgateway_that_is_down_costs_one_warning(
    base_args: list[str], pushgateway: Pushgateway
) -> None:
    invoke([*base_args, "seed", "--users", "40", "--communities", "2", "--posts", "20"])
    pushgateway.stop()
    job = invoke([*base_args, "jobs", "run", "fanout"])
    assert job.exit_code == 0, job.output
    [warning] = warnings_in(job)
    assert "could not deliver the metrics of job fanout to the Pushgateway" in warning["message"]
    assert warning["job"] == "fanout" and warning["run_id"] is not None
    by_hand = invoke([*base_args, "cache", "repair"])
    assert by_hand.exit_code == 0, by_hand.output
    lines = [line for line in by_hand.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning: could not deliver"), lines
