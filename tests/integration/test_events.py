"""Each kind of feed event, and events committed out of id order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from feedctl.context import Context
from feedctl.pipelines.cache import warm as cache_warm
from feedctl.pipelines.fanout import run as fanout
from feedctl.pipelines.fanout.run import run_fanout

from expected import expected_user_feeds

NOW = datetime.now(UTC)


def add_community(conn: psycopg.Connection[Any], community_id: int, members: list[int]) -> None:
    conn.execute("INSERT INTO communities (id, name) VALUES (%s, %s)", (community_id, "c"))
    for user_id in members:
        conn.execute(
            "INSERT INTO users (id, reputation, last_active_at) VALUES (%s, 1, now()) "
            "ON CONFLICT DO NOTHING",
            (user_id,),
        )
        conn.execute(
            "INSERT INTO memberships (community_id, user_id) VALUES (%s, %s)",
            (community_id, user_id),
        )


def add_post(
    conn: psycopg.Connection[Any], post_id: int, community_id: int, hours_ago: float
) -> None:
    with conn.transaction():
        conn.execute(
            "INSERT INTO posts (id, community_id, author_id, created_at, reactions_count) "
            "VALUES (%s, %s, 1, %s, %s)",
            (post_id, community_id, NOW - timedelta(hours=hours_ago), post_id % 7),
        )
        conn.execute(
            "INSERT INTO feed_events (kind, post_id, community_id) VALUES ('post_created', %s, %s)",
            (post_id, community_id),
        )


def feed_of(ctx: Context, user_id: int) -> list[int]:
    rows = ctx.conn.execute(
        "SELECT post_id FROM feed_entry WHERE user_id = %s ORDER BY score DESC, post_id DESC",
        (user_id,),
    )
    return [r[0] for r in rows]


def cached(ctx: Context, user_id: int) -> list[int]:
    found = ctx.cache.members(f"{ctx.prefix}feed:u:{user_id}")
    assert found is not None, f"feed of user {user_id} is not cached"
    return [p for p, _ in found[0]]


@pytest.fixture
def community(ctx: Context) -> Context:
    add_community(ctx.conn, 1, [1, 2, 3])
    add_community(ctx.conn, 2, [3])
    for post_id in range(1, 11):
        add_post(ctx.conn, post_id, 1, hours_ago=post_id)
    add_post(ctx.conn, 11, 2, hours_ago=0.5)
    run_fanout(ctx)
    cache_warm.warm(ctx, "user", [1, 2, 3])
    return ctx


def test_post_created_reaches_every_member(community: Context) -> None:
    assert set(feed_of(community, 1)) == set(range(1, 11))
    assert set(feed_of(community, 3)) == set(range(1, 12))
    assert cached(community, 3) == feed_of(community, 3)


def test_post_deleted_leaves_every_feed(community: Context) -> None:
    conn = community.conn
    with conn.transaction():
        conn.execute("UPDATE posts SET deleted_at = now() WHERE id = 4")
        conn.execute(
            "INSERT INTO feed_events (kind, post_id, community_id) VALUES ('post_deleted', 4, 1)"
        )
    report = run_fanout(community)
    assert report.entries_removed == 3
    for user_id in (1, 2, 3):
        assert 4 not in feed_of(community, user_id)
        assert cached(community, user_id) == feed_of(community, user_id)


def test_member_left_and_joined(community: Context) -> None:
    conn = community.conn
    with conn.transaction():
        conn.execute("DELETE FROM memberships WHERE community_id = 1 AND user_id = 3")
        conn.execute(
            "INSERT INTO feed_events (kind, community_id, user_id) VALUES ('member_left', 1, 3)"
        )
    run_fanout(community)
    assert feed_of(community, 3) == [11]
    assert cached(community, 3) == [11]
    with conn.transaction():
        conn.execute("INSERT INTO memberships (community_id, user_id) VALUES (2, 1)")
        conn.execute(
            "INSERT INTO feed_events (kind, community_id, user_id) VALUES ('member_joined', 2, 1)"
        )
    run_fanout(community)
    assert set(feed_of(community, 1)) == set(range(1, 12))
    assert cached(community, 1) == feed_of(community, 1)
    expected = expected_user_feeds(conn)
    assert feed_of(community, 1) == [p for p, _ in expected[1]]


def test_event_committed_after_a_higher_numbered_one_is_not_skipped(
    community: Context, database_url: str
) -> None:
    with psycopg.connect(database_url) as early, psycopg.connect(database_url) as late:
        # `early` takes the lower event id but commits last.
        early.execute(
            "INSERT INTO posts (id, community_id, author_id, created_at) VALUES (20, 1, 1, now())"
        )
        early.execute(
            "INSERT INTO feed_events (kind, post_id, community_id) VALUES ('post_created', 20, 1)"
        )
        late.execute(
            "INSERT INTO posts (id, community_id, author_id, created_at) VALUES (21, 1, 1, now())"
        )
        late.execute(
            "INSERT INTO feed_events (kind, post_id, community_id) VALUES ('post_created', 21, 1)"
        )
        late.commit()
        first = run_fanout(community)
        early.commit()
    second = run_fanout(community)
    assert first.events + second.events == 2
    assert {20, 21} <= set(feed_of(community, 1))
    assert {20, 21} <= set(cached(community, 2))


def test_rerun_after_completion_writes_nothing(community: Context) -> None:
    before = {u: feed_of(community, u) for u in (1, 2, 3)}
    report = run_fanout(community)
    assert report.events == 0 and report.entries_written == 0
    assert {u: feed_of(community, u) for u in (1, 2, 3)} == before


def test_dry_run_writes_nothing_and_keeps_the_position(community: Context) -> None:
    add_post(community.conn, 30, 1, hours_ago=0)
    dry = run_fanout(community, dry_run=True)
    assert dry.events == 1 and dry.entries_written == 3
    assert 30 not in feed_of(community, 1)
    real = run_fanout(community)
    assert real.events == 1 and real.entries_written == 3
    assert 30 in feed_of(community, 1) and 30 in cached(community, 1)


def test_an_entry_written_before_its_event_is_not_a_conflict(community: Context) -> None:
    add_post(community.conn, 40, 1, hours_ago=0)
    community.conn.execute(
        "INSERT INTO feed_entry (user_id, post_id, community_id, author_id, score, created_at) "
        "VALUES (2, 40, 1, 1, 0, now())"
    )
    report = run_fanout(community)
    assert report.events == 1
    assert report.entries_written == 2  # users 1 and 3; user 2 already had it
    for user_id in (1, 2, 3):
        assert feed_of(community, user_id).count(40) == 1


def test_batches_are_bounded_by_entries_not_only_events(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fanout, "ENTRIES_PER_BATCH", 50)
    add_community(ctx.conn, 7, list(range(100, 130)))  # 30 members
    for post_id in range(200, 205):
        add_post(ctx.conn, post_id, 7, hours_ago=1)
    report = run_fanout(ctx, batch_size=100)
    assert report.events == 5
    assert report.batches == 5  # 30 entries each: a second post would pass 50
    assert report.entries_written == 150
