"""Cached pages served from Redis alone (docs/decisions/0029), against real servers.

A reader asks PostgreSQL about the cache at most once per `cache_state_ms`; between two
asks a cached page costs no PostgreSQL query. These tests count the queries a reader's
connection runs, check each page against plain SQL on the stored state, and break the
cache the ways a real deployment does: a write in flight, a write lost to an out-of-memory
Redis or to a Redis that stops answering mid-pipeline, a post deleted by the app.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from feedctl.cache.feeds import details_key
from feedctl.cache.keys import FeedRef, community_feed, user_feed
from feedctl.config import Settings
from feedctl.context import Context, open_context
from feedctl.pipelines.cache import repair as cache_repair
from feedctl.pipelines.cache import repair_marks
from feedctl.pipelines.cache import warm as cache_warm
from feedctl.pipelines.cache.verify import verify
from feedctl.pipelines.fanout.run import run_fanout
from feedctl.pipelines.ranking.nightly import run_rank
from feedctl.read.cache_state import CacheWatch, Snapshot
from feedctl.read.pages import FeedPage, FeedReader
from feedctl.services import EmbeddedRedis
from feedctl.synth import SeedSpec, seed

from drain import fan_out_everything

pytestmark = pytest.mark.redis_cluster_too  # each test on one server and on a cluster

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
WORLD = SeedSpec(users=30, communities=3, posts=120, seed=5, now=NOW)
LONG = 3600.0  # a state kept all test long: pages after the first cost no query


class CountingConnection:
    """A real connection that counts the statements run through it."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.statements = 0

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        self.statements += 1
        return self.conn.execute(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


def reader_for(ctx: Context, interval: float) -> tuple[FeedReader, CountingConnection]:
    counting = CountingConnection(ctx.conn)
    secrets = FeedReader.for_settings(ctx.conn, ctx.cache, ctx.settings).secrets
    reader = FeedReader(
        counting,  # type: ignore[arg-type]
        ctx.cache,
        secrets,
        retention=ctx.settings.retention,
        watch=CacheWatch(interval),
    )
    return reader, counting


def stored(conn: psycopg.Connection[Any], feed: FeedRef) -> list[tuple[int, float]]:
    """The feed as plain SQL sees it now: (post id, score), best first, live posts only."""
    if feed.kind == "user":
        sql = (
            "SELECT fe.post_id, fe.score FROM feed_entry fe JOIN posts p ON p.id = fe.post_id "
            "WHERE fe.user_id = %s AND p.deleted_at IS NULL ORDER BY 2 DESC, 1 DESC"
        )
    else:
        sql = (
            "SELECT ps.post_id, ps.score FROM post_score ps JOIN posts p ON p.id = ps.post_id "
            "WHERE ps.community_id = %s AND p.deleted_at IS NULL ORDER BY 2 DESC, 1 DESC"
        )
    return [(row[0], row[1]) for row in conn.execute(sql, (feed.id,))]


def walk(reader: FeedReader, feed: FeedRef, limit: int) -> list[FeedPage]:
    pages = [reader.page(feed, limit, None)]
    while pages[-1].next_cursor is not None:
        pages.append(reader.page(feed, limit, pages[-1].next_cursor))
    return pages


def shown(pages: list[FeedPage]) -> list[tuple[int, float]]:
    return [(item.post_id, item.score) for page in pages for item in page.items]


@pytest.fixture
def warmed(ctx: Context) -> Context:
    seed(ctx.conn, WORLD)
    run_rank(ctx, include_unscored=True)
    fan_out_everything(ctx)
    users = [r[0] for r in ctx.conn.execute("SELECT id FROM users ORDER BY id")]
    communities = [r[0] for r in ctx.conn.execute("SELECT id FROM communities ORDER BY id")]
    cache_warm.warm(ctx, "user", users, force=True)
    cache_warm.warm(ctx, "community", communities, force=True)
    return ctx


def busiest_user(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "SELECT user_id FROM feed_entry GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1"
    ).fetchone()
    assert row is not None
    return int(row[0])


def new_post(conn: psycopg.Connection[Any], community_id: int, reactions: int) -> int:
    with conn.transaction():
        row = conn.execute("SELECT max(id) + 1 FROM posts").fetchone()
        assert row is not None
        conn.execute(
            "INSERT INTO posts (id, community_id, author_id, created_at, reactions_count) "
            "VALUES (%s, %s, 1, %s, %s)",
            (row[0], community_id, NOW, reactions),
        )
        conn.execute(
            "INSERT INTO feed_events (kind, post_id, community_id) VALUES ('post_created', %s, %s)",
            (row[0], community_id),
        )
    return int(row[0])


def delete_post(conn: psycopg.Connection[Any], post_id: int) -> None:
    with conn.transaction():
        row = conn.execute(
            "UPDATE posts SET deleted_at = now() WHERE id = %s RETURNING community_id", (post_id,)
        ).fetchone()
        assert row is not None
        conn.execute(
            "INSERT INTO feed_events (kind, post_id, community_id) VALUES ('post_deleted', %s, %s)",
            (post_id, row[0]),
        )


def community_of(conn: psycopg.Connection[Any], user_id: int) -> int:
    row = conn.execute(
        "SELECT community_id FROM memberships WHERE user_id = %s ORDER BY 1 LIMIT 1", (user_id,)
    ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("kind", ["user", "community"])
def test_a_whole_walk_comes_from_redis_alone_and_equals_postgresql(
    warmed: Context, kind: str
) -> None:
    ctx = warmed
    feed = user_feed(busiest_user(ctx.conn)) if kind == "user" else community_feed(1)
    reader, counting = reader_for(ctx, LONG)
    reader.page(feed, 5, None)  # asks PostgreSQL about the cache once
    asked = counting.statements
    pages = [reader.page(feed, 7, None)]
    while len(pages) * 7 < ctx.cap - 7 and pages[-1].next_cursor is not None:
        pages.append(reader.page(feed, 7, pages[-1].next_cursor))
    assert counting.statements == asked, "a cached page ran a PostgreSQL query"
    assert len(pages) > 2
    assert all(page.redis_alone and page.source == "cache" for page in pages)
    assert shown(pages) == stored(ctx.conn, feed)[: len(shown(pages))]
    first = pages[0].items[0]
    row = ctx.conn.execute(
        "SELECT community_id, author_id, created_at FROM posts WHERE id = %s", (first.post_id,)
    ).fetchone()
    assert (first.community_id, first.author_id, first.created_at) == row


def test_past_the_cap_the_walk_goes_on_in_postgresql(warmed: Context) -> None:
    ctx = warmed
    feed = user_feed(busiest_user(ctx.conn))
    assert len(stored(ctx.conn, feed)) > ctx.cap  # the cached copy is truncated
    reader, _ = reader_for(ctx, LONG)
    pages = walk(reader, feed, 9)
    assert shown(pages) == stored(ctx.conn, feed)
    assert pages[0].redis_alone and not pages[-1].redis_alone


def test_a_write_during_the_walk_hands_it_to_the_pinned_postgresql_path(warmed: Context) -> None:
    ctx = warmed
    user = busiest_user(ctx.conn)
    feed = user_feed(user)
    reader, _ = reader_for(ctx, 0.001)
    before = stored(ctx.conn, feed)
    first = reader.page(feed, 10, None)
    assert first.redis_alone
    new_post(ctx.conn, community_of(ctx.conn, user), reactions=10**6)  # lands at the top
    fan_out_everything(ctx)
    assert stored(ctx.conn, feed) != before
    pages = [first]
    while pages[-1].next_cursor is not None:
        pages.append(reader.page(feed, 10, pages[-1].next_cursor))
    assert not pages[1].redis_alone  # the cached feed changed: PostgreSQL, pinned
    assert shown(pages) == before  # the walk is the feed as its first page saw it
    fresh = reader.page(feed, 10, None)
    assert fresh.redis_alone and fresh.items[0].post_id == stored(ctx.conn, feed)[0][0]


def test_a_deleted_post_leaves_pages_within_the_interval(warmed: Context) -> None:
    ctx = warmed
    feed = user_feed(busiest_user(ctx.conn))
    interval = 0.05
    reader, _ = reader_for(ctx, interval)
    top = reader.page(feed, 10, None)
    assert top.redis_alone
    victim = top.items[0].post_id
    delete_post(ctx.conn, victim)  # by the app; fan-out has not run
    time.sleep(interval)
    page = reader.page(feed, 10, None)
    assert page.redis_alone  # still the cached copy, which holds the post...
    assert victim not in [i.post_id for i in page.items]  # ...but it is not shown
    assert [i.post_id for i in page.items] == [p for p, _ in stored(ctx.conn, feed)[:10]]


def test_a_write_in_flight_or_a_repair_mark_turns_redis_alone_off(warmed: Context) -> None:
    ctx = warmed
    feed = user_feed(busiest_user(ctx.conn))
    reader, _ = reader_for(ctx, 0.001)
    assert reader.page(feed, 5, None).redis_alone
    ctx.conn.execute("INSERT INTO rank_cache_pending (post_id) VALUES (1)")
    time.sleep(0.01)
    page = reader.page(feed, 5, None)
    assert page.source == "cache" and not page.redis_alone  # checked against PostgreSQL
    ctx.conn.execute("DELETE FROM rank_cache_pending")
    repair_marks.mark(ctx.conn, "user", [feed.id], "test")
    time.sleep(0.01)
    assert not reader.page(feed, 5, None).redis_alone
    assert reader.page(community_feed(1), 5, None).redis_alone  # other feeds still are
    cache_repair.repair(ctx)
    time.sleep(0.01)
    assert reader.page(feed, 5, None).redis_alone


def test_a_cached_feed_newer_than_the_state_makes_the_reader_ask_again(warmed: Context) -> None:
    ctx = warmed
    user = busiest_user(ctx.conn)
    feed = user_feed(user)
    reader, counting = reader_for(ctx, LONG)
    assert reader.page(feed, 5, None).redis_alone
    new_post(ctx.conn, community_of(ctx.conn, user), reactions=10**6)
    fan_out_everything(ctx)  # the cached feed now holds what the kept state does not see
    asked = counting.statements
    page = reader.page(feed, 5, None)
    assert page.redis_alone and counting.statements == asked + 1  # asked once more
    assert [i.post_id for i in page.items] == [p for p, _ in stored(ctx.conn, feed)[:5]]


def test_snapshot_containment() -> None:
    outer = Snapshot.parse("100:110:103,107")
    assert outer is not None
    assert (Snapshot.parse("100:105:103") or outer).within(outer)
    assert not (Snapshot.parse("100:105:") or outer).within(outer)  # 103 seen, not by outer
    assert not (Snapshot.parse("100:111:103,107") or outer).within(outer)
    assert (Snapshot.parse("98:100:") or outer).within(outer)
    assert Snapshot.parse("not a snapshot") is None


# ------------------------------------------------------------------ failed cache writes


@pytest.fixture
def own_ctx(settings: Settings, own_redis: EmbeddedRedis) -> Iterator[Context]:
    with open_context(dataclasses.replace(settings, redis_url=own_redis.url)) as context:
        yield context


def _warm_world(ctx: Context) -> int:
    seed(ctx.conn, WORLD)
    run_rank(ctx, include_unscored=True)
    fan_out_everything(ctx)
    user = busiest_user(ctx.conn)
    cache_warm.warm(ctx, "user", [user], force=True)
    return user


def test_out_of_memory_redis_stale_feed_is_not_served_past_the_bound(own_ctx: Context) -> None:
    ctx = own_ctx
    user = _warm_world(ctx)
    feed = user_feed(user)
    interval = 0.05
    reader, _ = reader_for(ctx, interval)
    assert reader.page(feed, 5, None).redis_alone
    ctx.redis.config_set("maxmemory", 1)  # every write refused: OOM
    try:
        post = new_post(ctx.conn, community_of(ctx.conn, user), reactions=10**6)
        report = run_fanout(ctx)
        assert report.redis_failures > 0  # PostgreSQL has the post; Redis does not
        time.sleep(interval)  # the bound: one interval after the failure is recorded
        page = reader.page(feed, 5, None)
        assert not page.redis_alone
        assert page.items[0].post_id == post
    finally:
        ctx.redis.config_set("maxmemory", 0)
    cache_repair.repair(ctx)
    time.sleep(interval)
    page = reader.page(feed, 5, None)
    assert page.redis_alone and page.items[0].post_id == post


def test_redis_timing_out_mid_pipeline_stale_feed_is_not_served_past_the_bound(
    settings: Settings, own_redis: EmbeddedRedis
) -> None:
    fast = f"{own_redis.url}?socket_timeout=0.2"
    with open_context(dataclasses.replace(settings, redis_url=fast)) as ctx:
        user = _warm_world(ctx)
        feed = user_feed(user)
        interval = 0.05
        reader, _ = reader_for(ctx, interval)
        assert reader.page(feed, 5, None).redis_alone
        post = new_post(ctx.conn, community_of(ctx.conn, user), reactions=10**6)
        with open_context(dataclasses.replace(settings, redis_url=own_redis.url)) as other:
            other.redis.execute_command("CLIENT", "PAUSE", 1500, "ALL")  # stops answering
        report = run_fanout(ctx)
        assert report.redis_failures > 0
        time.sleep(1.6)  # the server answers again, with the write lost
        assert ctx.cache.members(feed.key(ctx.prefix)) is not None  # still cached, stale
        page = reader.page(feed, 5, None)
        assert not page.redis_alone
        assert page.items[0].post_id == post


def test_cache_verify_finds_wrong_and_stray_details(warmed: Context) -> None:
    ctx = warmed
    feed = user_feed(busiest_user(ctx.conn))
    key = feed.key(ctx.prefix)
    assert verify(ctx, 10_000, settle_seconds=0).mismatches == []
    post_id = stored(ctx.conn, feed)[0][0]
    ctx.redis.hset(details_key(key), str(post_id), "1:2:3")
    ctx.redis.hset(details_key(key), "999999999", "1:2:3")
    found = verify(ctx, 10_000, settle_seconds=0).mismatches
    assert {(m.key, m.kind, m.post_id) for m in found} == {
        (key, "details", post_id),
        (key, "details", 999999999),
    }
