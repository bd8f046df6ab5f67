"""Nightly `rank`: only posts whose inputs changed are rescored, everywhere they appear, in
PostgreSQL and in every cached feed (falling posts included); time alone changes nothing."""

from __future__ import annotations

import signal
from typing import Any

import pytest

from feedctl.config import Settings
from feedctl.context import Context
from feedctl.pipelines.ranking.nightly import run_rank

from expected import live_post_scores
from rank_world import assert_world, build_world, run_cli

pytestmark = pytest.mark.redis_cluster_too  # each test on one server and on a cluster


@pytest.fixture
def world(ctx: Context) -> Context:
    build_world(ctx)
    return ctx


def inputs(ctx: Context) -> dict[int, tuple[Any, ...]]:
    rows = ctx.conn.execute(
        "SELECT p.id, p.reactions_count, p.comments_count, coalesce(u.reputation, 0) "
        "FROM posts p LEFT JOIN users u ON u.id = p.author_id WHERE p.deleted_at IS NULL"
    )
    return {r[0]: tuple(r[1:]) for r in rows}


def change_inputs(ctx: Context) -> None:
    """Counters up on some posts, down to zero on the most reacted ones (they fall out of
    truncated cached feeds), and one prolific author's reputation down."""
    ctx.conn.execute("UPDATE posts SET reactions_count = reactions_count + 25 WHERE id % 6 = 1")
    ctx.conn.execute(
        "UPDATE posts SET reactions_count = 0, comments_count = 0 WHERE id IN "
        "(SELECT id FROM posts WHERE deleted_at IS NULL ORDER BY reactions_count DESC LIMIT 6)"
    )
    ctx.conn.execute(
        "UPDATE users SET reputation = reputation / 100 WHERE id = "
        "(SELECT author_id FROM posts GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1)"
    )


def flushed_feed_entry_stats(ctx: Context) -> tuple[int, int]:
    """(rows read by sequential scans, rows updated) of feed_entry's partitions, as of now."""
    ctx.conn.execute("SELECT pg_stat_force_next_flush()")
    ctx.conn.execute("SELECT pg_stat_clear_snapshot()")
    row = ctx.conn.execute(
        "SELECT coalesce(sum(seq_tup_read), 0), coalesce(sum(n_tup_upd), 0) "
        "FROM pg_stat_user_tables "
        "WHERE relid IN (SELECT relid FROM pg_partition_tree('feed_entry'))"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_rank_rescores_changed_posts_everywhere_and_nothing_else(world: Context) -> None:
    before_inputs, before_scores = inputs(world), live_post_scores(world.conn)
    assert run_rank(world).posts_rescored == 0
    change_inputs(world)
    after_inputs, after_scores = inputs(world), live_post_scores(world.conn)
    changed = [p for p in before_inputs if before_inputs[p] != after_inputs[p]]
    fallen = [p for p in changed if after_scores[p][1] < before_scores[p][1]]
    audience = world.conn.execute(
        "SELECT count(*) FROM feed_entry WHERE post_id = ANY(%s)", (changed,)
    ).fetchone()
    scanned_before, updated_before = flushed_feed_entry_stats(world)

    report = run_rank(world)

    scanned_after, updated_after = flushed_feed_entry_stats(world)
    assert report.posts_rescored == len(changed) > 10
    assert report.posts_fallen == len(fallen) > 0
    assert audience is not None and report.entries_updated == audience[0]
    assert report.feeds_refreshed > 0  # truncated feeds a falling post left short
    assert report.redis_failures == 0
    assert updated_after - updated_before == report.entries_updated  # no other row written
    assert scanned_after == scanned_before  # ~17% of entries changed, still no full scan
    assert_world(world)


def test_one_changed_post_is_reached_without_scanning_feed_entry(world: Context) -> None:
    """The cost follows the changed post's audience: its entries come through the post
    index, never a scan of every feed entry."""
    post_id = world.conn.execute(
        "SELECT post_id FROM feed_entry GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1"
    ).fetchone()[0]
    world.conn.execute(
        "UPDATE posts SET comments_count = comments_count + 3 WHERE id = %s", (post_id,)
    )
    scanned_before, updated_before = flushed_feed_entry_stats(world)
    report = run_rank(world)
    scanned_after, updated_after = flushed_feed_entry_stats(world)
    audience = world.conn.execute(
        "SELECT count(*) FROM feed_entry WHERE post_id = %s", (post_id,)
    ).fetchone()
    assert report.posts_rescored == 1
    assert audience is not None and report.entries_updated == audience[0] > 50
    assert updated_after - updated_before == audience[0]
    assert scanned_after == scanned_before
    assert_world(world)


def test_time_passing_alone_changes_nothing(world: Context) -> None:
    first = run_rank(world)
    second = run_rank(world)
    assert (first.posts_rescored, first.entries_updated) == (0, 0)
    assert (second.posts_rescored, second.entries_updated) == (0, 0)
    assert second.seconds >= 0 and second.chunks == 0


@pytest.mark.parametrize("point", ["rank.before_commit@1", "rank.after_commit@1"])
def test_killed_rank_run_is_finished_by_the_next(
    world: Context, settings: Settings, point: str
) -> None:
    change_inputs(world)
    assert run_cli(settings, "rank", kill_at=point) == -signal.SIGKILL
    assert run_cli(settings, "rank") == 0
    assert_world(world)
    pending = world.conn.execute("SELECT count(*) FROM rank_cache_pending").fetchone()
    assert pending == (0,)
