"""A Redis server of the test's own is stopped mid-pipeline: PostgreSQL keeps everything,
failed writes are counted and marked, and `cache repair` makes the caches exact again."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from feedctl.config import Settings
from feedctl.context import Context, open_context
from feedctl.pipelines.cache import repair as cache_repair
from feedctl.pipelines.cache import repair_marks
from feedctl.pipelines.cache import warm as cache_warm
from feedctl.pipelines.fanout.run import run_fanout
from feedctl.read.pages import FeedReader
from feedctl.services import EmbeddedRedis
from feedctl.synth import SeedSpec, seed

from expected import expected_user_feeds

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def fault_ctx(settings: Settings, own_redis: EmbeddedRedis) -> Iterator[Context]:
    with open_context(dataclasses.replace(settings, redis_url=own_redis.url)) as context:
        yield context


def test_redis_down_during_fanout_then_repair(fault_ctx: Context, own_redis: EmbeddedRedis) -> None:
    ctx = fault_ctx
    seed(ctx.conn, SeedSpec(users=120, communities=4, posts=80, seed=3, now=NOW))
    run_fanout(ctx, max_events=200)  # the joins and a few posts
    users = sorted(expected_user_feeds(ctx.conn))
    cache_warm.warm(ctx, "user", users)

    own_redis.stop()
    report = run_fanout(ctx)
    assert report.events > 0
    assert report.redis_failures > 0
    assert report.feeds_marked_for_repair > 0
    assert repair_marks.count(ctx.conn) > 0
    # PostgreSQL has everything regardless.
    expected = expected_user_feeds(ctx.conn)
    stored = {
        u: [
            r[0]
            for r in ctx.conn.execute(
                "SELECT post_id FROM feed_entry WHERE user_id = %s "
                "ORDER BY score DESC, post_id DESC",
                (u,),
            )
        ]
        for u in users
    }
    assert stored == {u: [p for p, _ in expected[u]] for u in users}
    # Reads still answer, from PostgreSQL.
    reader = FeedReader.for_settings(ctx.conn, ctx.cache, ctx.settings)
    page = reader.user_feed(users[0], 10)
    assert page.source == "database"
    assert [i.post_id for i in page.items] == [p for p, _ in expected[users[0]][:10]]

    own_redis.start()
    repaired = cache_repair.repair(ctx)
    assert repaired.redis_failures == 0
    assert repair_marks.count(ctx.conn) == 0
    for user_id in users:
        found = ctx.cache.members(f"{ctx.prefix}feed:u:{user_id}")
        assert found is not None
        assert [p for p, _ in found[0]] == [p for p, _ in expected[user_id][: ctx.cap]]


def test_repair_with_redis_still_down_keeps_the_marks(
    fault_ctx: Context, own_redis: EmbeddedRedis
) -> None:
    ctx = fault_ctx
    seed(ctx.conn, SeedSpec(users=50, communities=2, posts=20, seed=4, now=NOW))
    own_redis.stop()
    report = run_fanout(ctx)
    assert report.redis_failures > 0
    marked = repair_marks.count(ctx.conn)
    assert marked > 0
    again = cache_repair.repair(ctx)
    assert again.redis_failures > 0
    assert repair_marks.count(ctx.conn) == marked


def test_forced_warm_with_redis_down_marks_every_feed(
    fault_ctx: Context, own_redis: EmbeddedRedis
) -> None:
    """The warm stamps its feeds before it reads PostgreSQL (decision 0028): with Redis down,
    the stamps fail, and the feeds are counted and marked rather than the run failing."""
    ctx = fault_ctx
    seed(ctx.conn, SeedSpec(users=30, communities=2, posts=20, seed=5, now=NOW))
    users = [r[0] for r in ctx.conn.execute("SELECT id FROM users ORDER BY id")]
    own_redis.stop()
    report = cache_warm.warm(ctx, "user", users, force=True)
    assert report.redis_failures == len(users)
    assert report.feeds_written == 0
    assert repair_marks.count(ctx.conn) == len(users)
