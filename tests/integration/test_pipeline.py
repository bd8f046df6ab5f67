"""The whole pipeline against real PostgreSQL and Redis, checked against independent
expectations (tests/integration/expected.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from feedctl.context import Context
from feedctl.pipelines.cache import warm as cache_warm
from feedctl.pipelines.cache.rebuild import rebuild_users
from feedctl.pipelines.fanout.run import run_fanout
from feedctl.pipelines.ranking.nightly import run_rank
from feedctl.read.pages import FeedReader
from feedctl.synth import SeedSpec, seed

from expected import expected_community_feed, expected_user_feeds

pytestmark = pytest.mark.redis_cluster_too  # each test on one server and on a cluster

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
SPEC = SeedSpec(users=300, communities=8, posts=300, seed=7, now=NOW)


@pytest.fixture
def seeded(ctx: Context) -> Context:
    seed(ctx.conn, SPEC)
    report = run_fanout(ctx)
    assert report.events > 0 and report.redis_failures == 0
    return ctx


def stored_feeds(ctx: Context) -> dict[int, list[tuple[int, float]]]:
    feeds: dict[int, list[tuple[int, float]]] = {}
    rows = ctx.conn.execute(
        "SELECT user_id, post_id, score FROM feed_entry ORDER BY user_id, score DESC, post_id DESC"
    )
    for user_id, post_id, score in rows:
        feeds.setdefault(user_id, []).append((post_id, score))
    return feeds


def assert_same_feed(actual: list[tuple[int, float]], expected: list[tuple[int, float]]) -> None:
    assert [p for p, _ in actual] == [p for p, _ in expected]
    for (_, got), (_, want) in zip(actual, expected, strict=True):
        assert got == pytest.approx(want, abs=1e-9)


def test_fanout_writes_exactly_each_members_live_posts_in_score_order(seeded: Context) -> None:
    expected = expected_user_feeds(seeded.conn)
    stored = stored_feeds(seeded)
    assert sum(len(f) for f in expected.values()) > 1000
    for user_id, feed in expected.items():
        assert_same_feed(stored.get(user_id, []), feed)


def test_warm_caches_the_top_cap_of_every_feed(seeded: Context) -> None:
    expected = expected_user_feeds(seeded.conn)
    users = sorted(expected)
    report = cache_warm.warm(seeded, "user", users)
    assert report.feeds_written == len(users)
    truncated_seen = 0
    for user_id in users:
        members = seeded.cache.members(f"{seeded.prefix}feed:u:{user_id}")
        assert members is not None
        cached, sentinel = members
        want = expected[user_id][: seeded.cap]
        assert_same_feed(cached, want)
        assert sentinel == (b"t" if len(expected[user_id]) > seeded.cap else b"c")
        truncated_seen += sentinel == b"t"
    assert truncated_seen > 0, "the seed should give some feeds longer than the cap"


def test_fanout_keeps_warm_caches_exact(seeded: Context) -> None:
    users = sorted(expected_user_feeds(seeded.conn))
    cache_warm.warm(seeded, "user", users)
    seed(
        seeded.conn, SeedSpec(users=20, communities=2, posts=60, seed=8, now=NOW, join_events=False)
    )
    run_fanout(seeded)
    expected = expected_user_feeds(seeded.conn)
    for user_id in users:
        cached, _ = seeded.cache.members(f"{seeded.prefix}feed:u:{user_id}") or ([], b"")
        assert_same_feed(cached, expected[user_id][: seeded.cap])


def read_all(reader: FeedReader, user_id: int, limit: int) -> list[tuple[int, float]]:
    items: list[tuple[int, float]] = []
    cursor = None
    for _ in range(1000):
        page = reader.user_feed(user_id, limit, cursor)
        items.extend((i.post_id, i.score) for i in page.items)
        cursor = page.next_cursor
        if cursor is None:
            return items
    raise AssertionError("pagination did not end")


def test_pages_walk_the_whole_feed_through_cache_and_database(seeded: Context) -> None:
    expected = expected_user_feeds(seeded.conn)
    longest = max(expected, key=lambda u: len(expected[u]))
    assert len(expected[longest]) > seeded.cap
    reader = FeedReader.for_settings(seeded.conn, seeded.cache, seeded.settings)
    cold = read_all(reader, longest, 17)  # first page misses and fills the cache
    assert seeded.cache.members(f"{seeded.prefix}feed:u:{longest}") is not None
    warm = read_all(reader, longest, 17)  # cache first, then PostgreSQL past the cap
    assert_same_feed(cold, expected[longest])
    assert_same_feed(warm, expected[longest])


def test_community_feed_pages(seeded: Context) -> None:
    community_id = seeded.conn.execute(
        "SELECT community_id FROM posts GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
    ).fetchone()[0]
    expected = expected_community_feed(seeded.conn, community_id)
    reader = FeedReader.for_settings(seeded.conn, seeded.cache, seeded.settings)
    items: list[tuple[int, float]] = []
    cursor = None
    while True:
        page = reader.community_feed(community_id, 25, cursor)
        items.extend((i.post_id, i.score) for i in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert_same_feed(items, expected)


def test_rank_rescores_only_changed_posts_everywhere(seeded: Context) -> None:
    cache_warm.warm(seeded, "user", sorted(expected_user_feeds(seeded.conn)))
    assert run_rank(seeded).posts_rescored == 0
    post_id = seeded.conn.execute(
        "SELECT id FROM posts WHERE deleted_at IS NULL ORDER BY created_at DESC LIMIT 1"
    ).fetchone()[0]
    seeded.conn.execute(
        "UPDATE posts SET reactions_count = reactions_count + 5000 WHERE id = %s", (post_id,)
    )
    report = run_rank(seeded)
    assert report.posts_rescored == 1
    assert report.entries_updated > 0
    expected = expected_user_feeds(seeded.conn)
    assert_same_feed_map(stored_feeds(seeded), expected)
    for user_id in expected:
        cached, _ = seeded.cache.members(f"{seeded.prefix}feed:u:{user_id}") or ([], b"")
        assert_same_feed(cached, expected[user_id][: seeded.cap])


def assert_same_feed_map(
    actual: dict[int, list[tuple[int, float]]], expected: dict[int, list[tuple[int, float]]]
) -> None:
    for user_id, feed in expected.items():
        assert_same_feed(actual.get(user_id, []), feed)


def test_rebuild_keeps_the_whole_feed_and_caches_its_top_cap(seeded: Context) -> None:
    expected = expected_user_feeds(seeded.conn)
    users = sorted(expected)
    cached_users = users[::2]
    cache_warm.warm(seeded, "user", cached_users)
    report = rebuild_users(seeded, users)
    assert report.entries_before == sum(len(f) for f in expected.values())
    assert report.entries_after == report.entries_before  # fan-out wrote the same feeds
    assert (report.entries_added, report.entries_removed, report.entries_updated) == (0, 0, 0)
    assert report.cached_feeds_rewritten == len(cached_users)
    assert report.uncached_feeds == len(users) - len(cached_users)
    stored = stored_feeds(seeded)
    for user_id in users:
        assert_same_feed(stored.get(user_id, []), expected[user_id])
        found = seeded.cache.members(f"{seeded.prefix}feed:u:{user_id}")
        if user_id in cached_users:
            assert found is not None
            assert_same_feed(found[0], expected[user_id][: seeded.cap])
        else:
            assert found is None  # a rebuild does not cache feeds that were not cached


def test_rebuild_dry_run_changes_nothing(seeded: Context) -> None:
    seeded.conn.execute("DELETE FROM feed_entry WHERE post_id % 4 = 0")
    before = stored_feeds(seeded)
    report = rebuild_users(seeded, sorted(before), dry_run=True)
    assert report.entries_after > report.entries_before
    assert report.entries_added == report.entries_after - report.entries_before
    assert stored_feeds(seeded) == before
