"""`run_job` against real PostgreSQL and Redis: the lock, the record, the timeout, the
outcome of each kind of ending, and the metrics every run delivers."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from feedctl.cli.job_flags import parse_job_flags
from feedctl.config import Settings
from feedctl.context import Context
from feedctl.errors import FeedctlError, LockedError
from feedctl.jobs.commands import COMMANDS, JobCommand
from feedctl.jobs.definitions import JobDefinition
from feedctl.jobs.runner import run_job
from feedctl.pipelines.cache import repair_marks
from feedctl.pipelines.cache import warm as cache_warm
from feedctl.pipelines.fanout.run import run_fanout
from feedctl.synth import SeedSpec, seed

from ops_tools import free_port

SPEC = SeedSpec(users=80, communities=3, posts=450, seed=11)
NEW_HEURISTIC = """version = "ops-test-2"
half_life_hours = 12.0
reactions_weight = 2.0
comments_weight = 1.0
reputation_weight = 0.5
"""


def job(
    name: str,
    command: str,
    flags: list[str] | None = None,
    timeout: float = 60.0,
    grace: float | None = None,
) -> JobDefinition:
    return JobDefinition(
        name=name,
        command=command,
        flags=tuple(flags or ()),
        options=parse_job_flags(command, flags or []),
        timeout_seconds=timeout,
        lock=f"feedctl.test.{name}",
        grace_seconds=grace,
    )


def runs(conn: psycopg.Connection[Any], name: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT id, outcome, exit_code, counts, message, finished_at IS NOT NULL "
        "FROM job_run WHERE job = %s ORDER BY id",
        (name,),
    ).fetchall()


def textfile_values(path: Path) -> dict[str, float]:
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(path.read_text())
        for sample in family.samples
    }


@pytest.fixture
def seeded(ctx: Context) -> Context:
    seed(ctx.conn, SPEC)
    return ctx


@pytest.fixture
def table_lock(settings: Settings) -> Iterator[Any]:
    """A session that can hold post_score exclusively, blocking every rank statement."""
    conn = psycopg.connect(settings.database_url or "", autocommit=True)

    class Lock:
        def hold(self) -> None:
            conn.execute("BEGIN")
            conn.execute("LOCK TABLE post_score IN ACCESS EXCLUSIVE MODE")

        def release(self) -> None:
            conn.execute("ROLLBACK")

    yield Lock()
    conn.close()


def test_a_run_is_recorded_and_measured(
    seeded: Context, settings: Settings, tmp_path: Path
) -> None:
    textfile = tmp_path / "fanout.prom"
    result = run_job(settings, job("fanout", "fanout"), metrics_textfile=textfile)
    assert (result.outcome, result.exit_code, result.message) == ("succeeded", 0, None)
    assert result.counts["events"] > 0 and result.counts["entries_written"] > 0
    [(run_id, outcome, code, counts, message, finished)] = runs(seeded.conn, "fanout")
    assert (run_id, outcome, code, message, finished) == (result.run_id, "succeeded", 0, None, True)
    assert counts == result.counts
    stored = seeded.conn.execute("SELECT count(*) FROM feed_entry").fetchone()
    assert stored is not None and stored[0] == result.counts["entries_written"]
    values = textfile_values(textfile)
    assert values["feedctl_fanout_events"] == result.counts["events"]
    assert values["feedctl_fanout_entries_written"] == result.counts["entries_written"]
    assert values["feedctl_job_exit_code"] == 0
    assert values["feedctl_job_consecutive_failures"] == 0
    assert values["feedctl_feeds_awaiting_repair"] == 0
    assert values["feedctl_fanout_lag_events"] == 0
    assert abs(values["feedctl_job_last_success_timestamp_seconds"] - time.time()) < 60


def test_a_timeout_stops_rank_between_chunks_with_postgres_and_redis_agreeing(
    seeded: Context, settings: Settings, tmp_path: Path
) -> None:
    run_fanout(seeded)
    cache_warm.warm(seeded, "user", cache_warm.all_user_ids(seeded.conn))
    heuristic = tmp_path / "h.toml"
    heuristic.write_text(NEW_HEURISTIC)
    rank = job("rank", "rank", ["--heuristic", str(heuristic)], timeout=0.0)
    result = run_job(settings, rank)
    assert (result.outcome, result.exit_code) == ("timed_out", 1)
    assert "stopped between batches after its timeout" in (result.message or "")
    assert result.counts["chunks"] == 1 and result.counts["posts_rescored"] == 200
    rescored = seeded.conn.execute(
        "SELECT count(*) FROM post_score WHERE heuristic_version = 'ops-test-2'"
    ).fetchone()
    assert rescored is not None and rescored[0] == 200
    assert cached_scores_match_postgres(seeded) > 0
    assert runs(seeded.conn, "rank")[0][1:3] == ("timed_out", 1)

    again = run_job(settings, dataclasses.replace(rank, timeout_seconds=600))
    assert again.outcome == "succeeded"
    left = seeded.conn.execute(
        "SELECT count(*) FROM post_score WHERE heuristic_version <> 'ops-test-2'"
    ).fetchone()
    assert left is not None and left[0] == 0
    assert cached_scores_match_postgres(seeded) > 0


def cached_scores_match_postgres(ctx: Context) -> int:
    """Every cached user feed holds its PostgreSQL scores; returns the entries compared."""
    compared = 0
    rows = ctx.conn.execute("SELECT DISTINCT user_id FROM feed_entry ORDER BY 1").fetchall()
    for (user_id,) in rows:
        cached = ctx.cache.members(f"{ctx.prefix}feed:u:{user_id}")
        if cached is None:
            continue
        stored = dict(
            ctx.conn.execute(
                "SELECT post_id, score FROM feed_entry WHERE user_id = %s", (user_id,)
            ).fetchall()
        )
        for post_id, score in cached[0]:
            assert stored[post_id] == pytest.approx(score, rel=1e-12), (user_id, post_id)
            compared += 1
    return compared


def test_the_hard_limit_cancels_a_stuck_statement(
    seeded: Context, settings: Settings, table_lock: Any
) -> None:
    table_lock.hold()
    try:
        started = time.monotonic()
        result = run_job(settings, job("rank", "rank", timeout=0.0, grace=0.5))
        elapsed = time.monotonic() - started
    finally:
        table_lock.release()
    assert (result.outcome, result.exit_code) == ("timed_out", 1)
    assert "cancelled and its transaction rolled back" in (result.message or "")
    assert elapsed < 30  # not a timing assertion: only that the run did not hang
    assert runs(seeded.conn, "rank")[0][1] == "timed_out"


def test_a_second_run_is_refused_and_told_which_run_holds_the_lock(
    seeded: Context, settings: Settings, table_lock: Any
) -> None:
    rank = job("rank", "rank")
    table_lock.hold()
    first: list[Any] = []
    runner = threading.Thread(target=lambda: first.append(run_job(settings, rank)))
    runner.start()
    try:
        deadline = time.monotonic() + 20
        while not runs(seeded.conn, "rank") and time.monotonic() < deadline:
            time.sleep(0.05)
        [(run_id, outcome, *_)] = runs(seeded.conn, "rank")
        assert outcome == "running"
        with pytest.raises(LockedError) as refused:
            run_job(settings, rank)
        assert refused.value.exit_code == 75
        assert f"run {run_id} on " in refused.value.message
        assert "feedctl.test.rank" in refused.value.message
    finally:
        table_lock.release()
        runner.join(timeout=60)
    assert first[0].outcome == "succeeded" and first[0].run_id == run_id
    assert len(runs(seeded.conn, "rank")) == 1, "a refused run is not recorded"


def test_failures_in_a_row_count_dead_runs_and_reset_on_success(
    seeded: Context, settings: Settings, tmp_path: Path
) -> None:
    seeded.conn.execute(
        "INSERT INTO job_run (job, command, lock_name, host, pid, backend_pid) "
        "VALUES ('rank', 'rank', 'feedctl.test.rank', 'gone', 1, 0)"
    )
    missing = job("rank", "rank", ["--heuristic", str(tmp_path / "missing.toml")])
    failed = run_job(settings, missing)
    assert (failed.outcome, failed.exit_code) == ("failed", 2)
    assert "missing.toml" in (failed.message or "")
    assert failed.failures_in_a_row == 2
    outcomes = [row[1] for row in runs(seeded.conn, "rank")]
    assert outcomes == ["abandoned", "failed"]
    assert run_job(settings, job("rank", "rank")).failures_in_a_row == 0


def test_a_busy_pipeline_lock_is_recorded_as_locked(seeded: Context, settings: Settings) -> None:
    seeded.conn.execute("SELECT pg_advisory_lock(hashtext('feedctl.rank'))")
    result = run_job(settings, job("rank", "rank"))
    assert (result.outcome, result.exit_code) == ("locked", 75)
    assert "feedctl.rank" in (result.message or "")
    assert result.failures_in_a_row == 0
    assert runs(seeded.conn, "rank")[0][1] == "locked"


def test_a_stop_request_ends_the_run_as_stopped(seeded: Context, settings: Settings) -> None:
    stop = threading.Event()
    stop.set()
    result = run_job(settings, job("fanout", "fanout"), stop=stop)
    assert (result.outcome, result.exit_code) == ("stopped", 1)
    assert result.counts["events"] == 0


def test_redis_failures_make_a_partial_run(
    seeded: Context, settings: Settings, tmp_path: Path
) -> None:
    run_fanout(seeded)
    cache_warm.warm(seeded, "user", cache_warm.all_user_ids(seeded.conn))
    seeded.conn.execute("UPDATE posts SET reactions_count = reactions_count + 5")
    down = dataclasses.replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    textfile = tmp_path / "rank.prom"
    result = run_job(down, job("rank", "rank"), metrics_textfile=textfile)
    assert (result.outcome, result.exit_code) == ("partial", 3)
    assert result.counts["redis_failures"] > 0
    values = textfile_values(textfile)
    assert values["feedctl_redis_write_failures"] == result.counts["redis_failures"]
    assert values["feedctl_feeds_awaiting_repair"] > 0
    assert "feedctl_job_last_success_timestamp_seconds" in values  # the work is done


def test_postgres_down_still_delivers_a_failure(settings: Settings, tmp_path: Path) -> None:
    down = dataclasses.replace(
        settings, database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/none"
    )
    textfile = tmp_path / "fanout.prom"
    result = run_job(down, job("fanout", "fanout"), metrics_textfile=textfile)
    assert (result.outcome, result.exit_code, result.run_id) == ("failed", 1, None)
    assert "cannot reach PostgreSQL" in (result.message or "")
    values = textfile_values(textfile)
    assert values["feedctl_job_exit_code"] == 1
    assert "feedctl_job_last_success_timestamp_seconds" not in values


def test_a_command_not_in_this_version_is_refused_before_anything(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    absent = JobCommand(frozenset(), run=None, missing_reason="not in this version of feedctl yet")
    monkeypatch.setitem(COMMANDS, "cache verify", absent)
    with pytest.raises(FeedctlError, match="not in this version of feedctl yet"):
        run_job(settings, job("verify", "cache verify"))


def test_verify_job_marks_what_disagrees_and_ends_partial(
    seeded: Context, settings: Settings, tmp_path: Path
) -> None:
    run_fanout(seeded)
    users = list(cache_warm.all_user_ids(seeded.conn))
    cache_warm.warm(seeded, "user", users)
    verify = job("verify", "cache verify", ["--sample", "1000", "--mark"])
    clean = run_job(settings, verify)
    assert (clean.outcome, clean.exit_code) == ("succeeded", 0)
    assert clean.counts["feeds_compared"] == len(users)
    key = f"{settings.redis_key_prefix}feed:u:{users[0]}"
    seeded.redis.zadd(key, {"999999999": 5000.0})  # a post that is not in the feed
    textfile = tmp_path / "verify.prom"
    dirty = run_job(settings, verify, metrics_textfile=textfile)
    assert (dirty.outcome, dirty.exit_code) == ("partial", 3)
    assert dirty.counts["feeds_mismatched"] == 1 and dirty.counts["mismatches_found"] >= 1
    assert {(m["key"], m["kind"], m["post_id"]) for m in dirty.counts["mismatches"]} >= {
        (key, "extra", 999999999)
    }
    assert repair_marks.count(seeded.conn) == 1
    values = textfile_values(textfile)
    assert values["feedctl_verify_mismatches"] == dirty.counts["mismatches_found"]


def test_vacuum_job_drops_inactive_feeds(seeded: Context, settings: Settings) -> None:
    run_fanout(seeded)
    users = list(cache_warm.all_user_ids(seeded.conn))
    cache_warm.warm(seeded, "user", users)
    seeded.conn.execute("UPDATE users SET last_active_at = now() - interval '100 days'")
    result = run_job(settings, job("vacuum", "cache vacuum", ["--inactive-for", "30d"]))
    assert (result.outcome, result.exit_code) == ("succeeded", 0)
    assert result.counts["inactive_feeds_dropped"] == result.counts["keys_scanned"] == len(users)
