"""`rank backfill` killed with SIGKILL at each kind of point, then `--resume`: the same final
state as one uninterrupted run (checked against independent expectations). And a Redis of
the test's own stopped mid-backfill: PostgreSQL gets everything, `cache repair` the rest."""

from __future__ import annotations

import dataclasses
import signal
from pathlib import Path

import pytest

from feedctl.config import Settings
from feedctl.context import Context, open_context
from feedctl.pipelines.cache import repair as cache_repair
from feedctl.pipelines.cache import repair_marks
from feedctl.pipelines.ranking.backfill.run import BackfillOptions, run_backfill
from feedctl.rank.heuristic import load_heuristic
from feedctl.services import EmbeddedRedis

from progress_recorder import RecordingProgress
from rank_world import V2, assert_world, build_world, run_cli, write_heuristic

CHUNK = ["--chunk-rows", "400"]  # posts: 1 chunk of 158 ... entries: about 30 chunks


@pytest.fixture
def world(ctx: Context) -> Context:
    build_world(ctx)
    return ctx


IN_PLACE = ["--method", "in-place"]
SWAP = ["--method", "swap"]


def leftovers(ctx: Context) -> tuple[int, ...]:
    """Logged keys, rewritten tables not swapped in, and logging triggers."""
    row = ctx.conn.execute(
        "SELECT (SELECT count(*) FROM feed_entry_swap_log), "
        "(SELECT count(*) FROM pg_class WHERE relname LIKE '%\\_swap'), "
        "(SELECT count(*) FROM pg_trigger WHERE tgname = 'feedctl_swap_log')"
    ).fetchone()
    assert row is not None
    return tuple(row)


@pytest.mark.parametrize(
    ("method", "point"),
    [
        (IN_PLACE, "backfill.posts_before_commit@1"),  # post_score chunk written, not committed
        (IN_PLACE, "backfill.posts_committed@1"),  # post phase committed, communities not rewritten
        (IN_PLACE, "backfill.communities_page@1"),  # community feeds rewritten, position not saved
        (IN_PLACE, "backfill.entries_before_commit@4"),  # entries of a chunk written, not committed
        (IN_PLACE, "backfill.entries_committed@3"),  # entries committed, cached feeds not rewritten
        (IN_PLACE, "backfill.users_page@1"),  # some cached feeds of a chunk rewritten, others not
        (SWAP, "backfill.swap_prepared@3"),  # a partition's writes logged, not rewritten yet
        (SWAP, "backfill.swap_built@2"),  # a partition rewritten and indexed, not swapped in
        (SWAP, "backfill.swap_before_commit@5"),  # swapped in, not committed
        (SWAP, "backfill.swap_committed@4"),  # swapped and committed, cached feeds not rewritten
        (SWAP, "backfill.users_page@7"),  # some cached feeds of a partition rewritten
    ],
)
def test_killed_backfill_resumes_to_the_uninterrupted_state(
    world: Context, settings: Settings, tmp_path: Path, method: list[str], point: str
) -> None:
    heuristic = str(write_heuristic(tmp_path, V2))
    args = ["rank", "backfill", "--heuristic", heuristic, *CHUNK, *method]
    code = run_cli(settings, *args, kill_at=point)
    assert code == -signal.SIGKILL, f"the process was not killed at {point}"
    assert run_cli(settings, "rank", "backfill", "--resume", *CHUNK) == 0
    assert_world(world, V2)
    states = world.conn.execute("SELECT state, posts_rescored FROM rank_backfill").fetchall()
    live = world.conn.execute("SELECT count(*) FROM post_score").fetchone()
    assert live is not None and states == [("done", live[0])]
    assert run_cli(settings, "rank", "backfill", "--resume") == 2  # nothing left to resume
    assert leftovers(world) == (0, 0, 0)


@pytest.mark.parametrize(
    ("method", "point"),
    [(IN_PLACE, "backfill.entries_committed@2"), (SWAP, "backfill.swap_committed@2")],
)
def test_killed_shard_resumes_while_the_other_shard_finished(
    world: Context, settings: Settings, tmp_path: Path, method: list[str], point: str
) -> None:
    heuristic = str(write_heuristic(tmp_path, V2))
    first = ["rank", "backfill", "--heuristic", heuristic, "--shard", "0/2", *CHUNK, *method]
    assert run_cli(settings, *first, kill_at=point) == -signal.SIGKILL
    second = ["rank", "backfill", "--heuristic", heuristic, "--shard", "1/2", *CHUNK]
    assert run_cli(settings, *second) == 0
    assert run_cli(settings, "rank", "backfill", "--resume", "--shard", "0/2", *CHUNK) == 0
    assert_world(world, V2)


def test_redis_down_during_backfill_then_repair(
    settings: Settings, own_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    with open_context(dataclasses.replace(settings, redis_url=own_redis.url)) as ctx:
        build_world(ctx)
        stopped = []

        def stop_redis(progress: RecordingProgress) -> None:
            if not stopped:
                own_redis.stop()
                stopped.append(True)

        heuristic = load_heuristic(write_heuristic(tmp_path, V2))
        report = run_backfill(ctx, heuristic, BackfillOptions(chunk_rows=400),
                              progress=RecordingProgress(stop_redis))  # fmt: skip
        assert report.backfill_done  # PostgreSQL got everything
        assert report.redis_failures > 0
        assert repair_marks.count(ctx.conn) == report.redis_failures
        own_redis.start()
        repaired = cache_repair.repair(ctx)
        assert repaired.redis_failures == 0 and repair_marks.count(ctx.conn) == 0
        assert_world(ctx, V2)


def test_an_in_place_backfill_clears_what_a_killed_swap_left(
    world: Context, settings: Settings, tmp_path: Path
) -> None:
    heuristic = str(write_heuristic(tmp_path, V2))
    args = ["rank", "backfill", "--heuristic", heuristic, *CHUNK, *SWAP]
    assert run_cli(settings, *args, kill_at="backfill.swap_built@2") == -signal.SIGKILL
    assert leftovers(world) != (0, 0, 0)  # a trigger logging writes, a half-done table
    renamed = {**V2, "version": "v2-renamed"}
    again = str(write_heuristic(tmp_path, renamed))
    args = ["rank", "backfill", "--heuristic", again, "--replace", *CHUNK, *IN_PLACE]
    assert run_cli(settings, *args) == 0
    assert leftovers(world) == (0, 0, 0)
    assert_world(world, renamed)
