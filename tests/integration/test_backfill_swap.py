"""`rank backfill` by partition swap: each feed_entry partition is rewritten with the new
scores and swapped in; the result equals the in-place path's, readers keep reading, a
concurrent fan-out loses nothing, and the method follows how many scores change."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from feedctl.context import Context
from feedctl.pipelines.ranking.backfill.preview import PreviewOptions, preview_backfill
from feedctl.pipelines.ranking.backfill.run import BackfillOptions, run_backfill
from feedctl.pipelines.ranking.backfill.shards import Shard
from feedctl.pipelines.ranking.backfill.swap import feed_partitions
from feedctl.rank.heuristic import Heuristic, load_heuristic

from expected import default_coefficients
from rank_world import V2, assert_world, build_world, write_heuristic


@pytest.fixture
def world(ctx: Context) -> Context:
    build_world(ctx)
    return ctx


@pytest.fixture
def v2(tmp_path: Path) -> Heuristic:
    return load_heuristic(write_heuristic(tmp_path, V2))


def partition_tables(ctx: Context) -> list[str]:
    rows = ctx.conn.execute(
        "SELECT relname FROM pg_class WHERE relname LIKE 'feed\\_entry\\_p%' AND relkind = 'r' "
        "ORDER BY relname"
    )
    return [r[0] for r in rows]


def test_swap_backfill_rewrites_every_partition(world: Context, v2: Heuristic) -> None:
    before = partition_tables(world)
    entries = world.conn.execute("SELECT count(*) FROM feed_entry").fetchone()
    report = run_backfill(world, v2, BackfillOptions(method="swap"))
    assert report.backfill_done and report.method == "swap"
    assert report.partitions_swapped == len(feed_partitions(world.conn)) == 16
    assert entries is not None and report.entries_updated == entries[0]
    assert_world(world, V2)
    assert partition_tables(world) == before  # same names, nothing left behind
    left = world.conn.execute("SELECT count(*) FROM feed_entry_swap_log").fetchone()
    assert left == (0,)
    triggers = world.conn.execute(
        "SELECT count(*) FROM pg_trigger WHERE tgname = 'feedctl_swap_log'"
    ).fetchone()
    assert triggers == (0,)


def test_auto_chooses_swap_for_a_big_change_and_in_place_for_a_small_one(
    world: Context, v2: Heuristic, tmp_path: Path
) -> None:
    report = run_backfill(world, v2, BackfillOptions())
    assert report.method == "swap" and report.posts_changed > 0.5 * report.posts_rescored
    assert_world(world, V2)
    # the same formula under a new name: no score changes, so in place (which writes nothing)
    same = dataclasses.replace(v2, version="v2b")
    report = run_backfill(world, same, BackfillOptions())
    assert report.method == "in_place" and report.posts_changed == 0
    assert report.entries_updated == 0 and report.partitions_swapped == 0


def test_swap_shards_split_the_partitions(world: Context, v2: Heuristic) -> None:
    reports = [
        run_backfill(world, v2, BackfillOptions(shard=Shard(i, 3), method="swap")) for i in range(3)
    ]
    assert [r.partitions_swapped for r in reports] == [6, 5, 5]  # remainders mod 3
    assert reports[-1].backfill_done
    assert_world(world, V2)


def test_in_place_stays_available(world: Context, v2: Heuristic) -> None:
    report = run_backfill(world, v2, BackfillOptions(method="in-place"))
    assert report.method == "in_place" and report.partitions_swapped == 0
    assert_world(world, V2)
    assert default_coefficients()["version"] != V2["version"]


def test_dry_run_says_which_method_auto_would_choose(world: Context, v2: Heuristic) -> None:
    options = PreviewOptions(sample_feeds=0)
    assert preview_backfill(world, v2, options).method == "swap"
    run_backfill(world, v2, BackfillOptions())
    # the same formula under a new name, and three posts got reactions since: few changes
    world.conn.execute(
        "UPDATE posts SET reactions_count = reactions_count + 5 "
        "WHERE id IN (SELECT post_id FROM post_score ORDER BY post_id LIMIT 3)"
    )
    found = preview_backfill(world, dataclasses.replace(v2, version="v2c"), options)
    assert (found.method, found.posts_changed) == ("in_place", 3), found
