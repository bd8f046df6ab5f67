"""One feed whatever built it: fan-out, joins and `rebuild --all` write the same retained feed,
walks go to its end (Redis first, then PostgreSQL), and `expire` only frees storage."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from feedctl.config import Settings
from feedctl.context import Context, open_context
from feedctl.pipelines.cache import verify as cache_verify
from feedctl.pipelines.cache.rebuild import rebuild_all
from feedctl.pipelines.expire import expire
from feedctl.read.pages import FeedReader
from feedctl.synth import SeedSpec, seed

from drain import fan_out_everything
from expected import expected_user_feeds

RETENTION = timedelta(days=3)
NOW = datetime.now(UTC).replace(second=0, microsecond=0)
SPEC = SeedSpec(users=80, communities=4, posts=400, days=6, seed=23, now=NOW)
Walk = list[tuple[int, float]]


@pytest.fixture
def world(settings: Settings) -> Iterator[Context]:
    """A seeded world whose posts span twice the retention, none within an hour of its edge
    (so that the minutes between two builds move no post across it)."""
    with open_context(dataclasses.replace(settings, feed_retention="3d", feed_cap=20)) as ctx:
        seed(ctx.conn, SPEC)
        for edge in (NOW - RETENTION, NOW - timedelta(days=2)):  # 2d: the expire test's
            ctx.conn.execute(
                "UPDATE posts SET created_at = created_at - interval '2 hours' "
                "WHERE created_at BETWEEN %s AND %s",
                (edge - timedelta(hours=1), edge + timedelta(hours=1)),
            )
        yield ctx


def walk(reader: FeedReader, user_id: int, limit: int = 15) -> Walk:
    items: Walk = []
    cursor: str | None = None
    while True:
        page = reader.user_feed(user_id, limit, cursor)
        items.extend((item.post_id, item.score) for item in page.items)
        cursor = page.next_cursor
        if cursor is None:
            return items


def walk_everyone(ctx: Context) -> dict[int, Walk]:
    reader = FeedReader.for_settings(ctx.conn, ctx.cache, ctx.settings)
    users = [row[0] for row in ctx.conn.execute("SELECT id FROM users ORDER BY id")]
    return {user_id: walk(reader, user_id) for user_id in users}


def retained(ctx: Context) -> dict[int, Walk]:
    """The feeds computed independently from the app tables (plain SQL and math)."""
    since = NOW - RETENTION
    expected = expected_user_feeds(ctx.conn)
    created = dict(ctx.conn.execute("SELECT id, created_at FROM posts").fetchall())
    return {u: [(p, s) for p, s in feed if created[p] >= since] for u, feed in expected.items()}


def forget_feeds(ctx: Context) -> None:
    ctx.conn.execute("TRUNCATE feed_entry")
    keys = list(ctx.redis.scan_iter(match=f"{ctx.prefix}*", count=1000))
    if keys:
        ctx.redis.delete(*keys)


def assert_same(got: dict[int, Walk], want: dict[int, Walk]) -> None:
    assert got.keys() == want.keys()
    for user_id in want:
        assert [p for p, _ in got[user_id]] == [p for p, _ in want[user_id]], user_id
        assert [s for _, s in got[user_id]] == pytest.approx(
            [s for _, s in want[user_id]], abs=1e-9
        )


def stored_entries(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM feed_entry").fetchone()
    assert row is not None
    return int(row[0])


def test_fan_out_and_rebuild_all_give_identical_walks(world: Context) -> None:
    fan_out_everything(world)
    by_fanout = walk_everyone(world)
    assert_same(by_fanout, retained(world))
    # the walks go past the cached cap, and old posts are not in them
    assert max(len(w) for w in by_fanout.values()) > 2 * world.cap
    assert stored_entries(world.conn) == sum(len(w) for w in by_fanout.values())

    again = rebuild_all(world)
    assert (again.entries_added, again.entries_removed, again.entries_updated) == (0, 0, 0)

    forget_feeds(world)
    rebuilt = rebuild_all(world)
    assert rebuilt.entries_added == sum(len(w) for w in by_fanout.values())
    by_rebuild = walk_everyone(world)
    assert by_rebuild == by_fanout  # post for post and score for score


def test_a_joiner_gets_the_whole_retained_community_feed(world: Context) -> None:
    fan_out_everything(world)
    row = world.conn.execute(
        "SELECT u.id, c.id FROM users u CROSS JOIN communities c "
        "WHERE NOT EXISTS (SELECT 1 FROM memberships m "
        "                  WHERE m.user_id = u.id AND m.community_id = c.id) "
        "ORDER BY (SELECT count(*) FROM posts p WHERE p.community_id = c.id) DESC, u.id "
        "LIMIT 1"
    ).fetchone()
    assert row is not None
    user_id, community_id = row
    world.conn.execute(
        "INSERT INTO memberships (community_id, user_id) VALUES (%s, %s)", (community_id, user_id)
    )
    world.conn.execute(
        "INSERT INTO feed_events (kind, community_id, user_id) VALUES ('member_joined', %s, %s)",
        (community_id, user_id),
    )
    fan_out_everything(world)
    reader = FeedReader.for_settings(world.conn, world.cache, world.settings)
    got = walk(reader, user_id)
    assert_same({user_id: got}, {user_id: retained(world)[user_id]})
    rows = world.conn.execute("SELECT id FROM posts WHERE community_id = %s", (community_id,))
    joined = {p for p, _ in got} & {r[0] for r in rows}
    assert len(joined) > world.cap  # more than the cached cap: the whole retained feed


def test_expire_frees_storage_and_changes_no_walk(world: Context) -> None:
    fan_out_everything(world)
    shorter = dataclasses.replace(world.settings, feed_retention="2d")
    with open_context(shorter) as ctx:
        before = walk_everyone(ctx)
        entries = stored_entries(ctx.conn)
        dry = expire(ctx, dry_run=True)
        assert dry.posts_expired > 0 and dry.entries_removed > 0
        assert stored_entries(ctx.conn) == entries
        report = expire(ctx, chunk_posts=37)
        assert report.redis_failures == 0 and report.chunks > 1
        assert (report.posts_expired, report.entries_removed) == (
            dry.posts_expired,
            dry.entries_removed,
        )
        assert stored_entries(ctx.conn) == entries - report.entries_removed
        assert stored_entries(ctx.conn) == sum(len(w) for w in before.values())
        oldest = ctx.conn.execute("SELECT min(created_at) FROM feed_entry").fetchone()
        assert oldest is not None and oldest[0] >= NOW - timedelta(days=2) - timedelta(minutes=5)
        assert walk_everyone(ctx) == before
        assert expire(ctx).posts_expired == 0  # it remembers where it got to
        checked = cache_verify.verify(ctx, 200)
        assert checked.feeds_compared > 0 and checked.feeds_mismatched == 0


def test_retention_zero_keeps_every_post(world: Context) -> None:
    forever = dataclasses.replace(world.settings, feed_retention="0")
    with open_context(forever) as ctx:
        fan_out_everything(ctx)
        everything = expected_user_feeds(ctx.conn)
        assert_same(walk_everyone(ctx), everything)
        assert expire(ctx).posts_expired == 0
