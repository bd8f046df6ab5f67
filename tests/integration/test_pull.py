"""Pull for huge communities: a community over `pull_threshold` has no entries in its
members' feeds, and every member's walk (pages, order, cursors) equals the walk of the same
feed built by full fan-out (docs/decisions/0034)."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import hypothesis
import psycopg
import pytest
import test_walks as walks
from conftest import MigratedDatabase
from hypothesis import HealthCheck, Phase, given
from hypothesis import strategies as st
from psycopg.conninfo import conninfo_to_dict

from feedctl.cache.keys import FeedRef
from feedctl.config import Settings
from feedctl.context import Context, open_context
from feedctl.pipelines.cache import warm as cache_warm
from feedctl.read.pages import FeedReader
from feedctl.synth import SeedSpec, seed

from drain import fan_out_everything

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
PLAIN_LIVE_FEED = walks.live_feed
WORLD = SeedSpec(users=160, communities=5, posts=240, seed=21, now=NOW, deleted_share=0.05)


@pytest.fixture
def full(settings: Settings, migrated_database: MigratedDatabase) -> Iterator[Context]:
    """The same world in a second database, fanned out in full (nothing pulled)."""
    with migrated_database() as url:
        other = dataclasses.replace(
            settings, database_url=url, redis_key_prefix=f"{settings.redis_key_prefix}full:"
        )
        with open_context(other) as context:
            yield context


def largest_community_size(ctx: Context) -> tuple[int, int]:
    row = ctx.conn.execute(
        "SELECT count(*) FROM memberships GROUP BY community_id ORDER BY 1 DESC LIMIT 2"
    ).fetchall()
    return int(row[0][0]), int(row[1][0])


def walk(reader: FeedReader, user_id: int, limit: int) -> list[tuple[Any, ...]]:
    """Every page of a user's feed, by cursor, as (post, community, author, created, score)."""
    seen: list[tuple[Any, ...]] = []
    cursor = None
    for _ in range(1000):
        page = reader.user_feed(user_id, limit, cursor)
        assert len(page.items) <= limit
        seen.extend(dataclasses.astuple(item) for item in page.items)
        cursor = page.next_cursor
        if cursor is None:
            return seen
    raise AssertionError("the walk did not end")


def members_of_pulled(ctx: Context) -> list[int]:
    return [
        r[0]
        for r in ctx.conn.execute(
            "SELECT DISTINCT m.user_id FROM memberships m "
            "JOIN feed_pull_community p USING (community_id) ORDER BY 1"
        )
    ]


def test_every_members_walk_equals_the_fully_fanned_out_feed(ctx: Context, full: Context) -> None:
    for world in (ctx, full):
        seed(world.conn, WORLD)
    biggest, second = largest_community_size(full)
    # Pull only the largest community (its members still belong to unpulled ones too).
    ctx = dataclasses.replace(
        ctx, settings=dataclasses.replace(ctx.settings, pull_threshold=second)
    )
    assert biggest > second
    # Some feeds cached before fan-out, so that pages are read from Redis and PostgreSQL.
    for world in (ctx, full):
        users = [r[0] for r in world.conn.execute("SELECT id FROM users WHERE id % 3 = 0")]
        cache_warm.warm(world, "user", users, force=True)
    fan_out_everything(ctx)
    fan_out_everything(full)

    pulled = ctx.conn.execute("SELECT community_id, members FROM feed_pull_community").fetchall()
    assert len(pulled) == 1 and pulled[0][1] == biggest
    in_pulled = ctx.conn.execute(
        "SELECT count(*) FROM feed_entry WHERE community_id = %s", (pulled[0][0],)
    ).fetchone()
    assert in_pulled == (0,)  # not one entry fanned out for the pulled community
    fewer = ctx.conn.execute("SELECT count(*) FROM feed_entry").fetchone()
    more = full.conn.execute("SELECT count(*) FROM feed_entry").fetchone()
    assert fewer is not None and more is not None and fewer[0] < more[0]

    members = members_of_pulled(ctx)
    assert len(members) == biggest
    pulled_reader = FeedReader.for_settings(ctx.conn, ctx.cache, ctx.settings)
    full_reader = FeedReader.for_settings(full.conn, full.cache, full.settings)
    users = [r[0] for r in ctx.conn.execute("SELECT id FROM users ORDER BY id")]
    for user_id in users:
        for limit in (7, 50):
            want = walk(full_reader, user_id, limit)
            assert walk(pulled_reader, user_id, limit) == want, (user_id, limit)
    # Read twice: the second time, feeds filled on the first read come from Redis.
    for user_id in members[:40]:
        assert walk(pulled_reader, user_id, 9) == walk(full_reader, user_id, 9)


def test_a_post_fanned_out_before_the_switch_is_shown_once(ctx: Context) -> None:
    seed(ctx.conn, dataclasses.replace(WORLD, users=60, posts=80))
    fan_out_everything(ctx)  # everything fanned out: the default threshold pulls nothing
    reader = FeedReader.for_settings(ctx.conn, ctx.cache, ctx.settings)
    users = [r[0] for r in ctx.conn.execute("SELECT id FROM users ORDER BY id")]
    before = {u: walk(reader, u, 6) for u in users}
    # Switch the largest community to pull with its entries still in the feeds, then post.
    ctx.conn.execute(
        "INSERT INTO feed_pull_community (community_id, members) "
        "SELECT community_id, count(*) FROM memberships GROUP BY community_id "
        "ORDER BY 2 DESC LIMIT 1"
    )
    assert {u: walk(reader, u, 6) for u in users} == before


# ------------------------------------------- the walk property of decision 0015, with pull


def live_feed_with_pull(conn: psycopg.Connection[Any], feed: FeedRef) -> dict[int, float]:
    """post id -> stored score of every live post in the user's feed now: their entries and
    the posts of the pulled communities they are a member of."""
    found = PLAIN_LIVE_FEED(conn, feed)
    if feed.kind == "user":
        rows = conn.execute(
            "SELECT ps.post_id, ps.score FROM post_score ps "
            "JOIN posts p ON p.id = ps.post_id AND p.deleted_at IS NULL "
            "JOIN feed_pull_community pc ON pc.community_id = ps.community_id "
            "JOIN memberships m ON m.community_id = ps.community_id AND m.user_id = %s",
            (feed.id,),
        )
        found.update({row[0]: row[1] for row in rows})
    return found


@pytest.fixture
def pulled_worlds(settings: Settings, postgres_admin_url: str) -> walks.Worlds:
    """test_walks' worlds, with its largest community pulled from the start."""
    with open_context(settings) as context:
        seed(context.conn, walks.WORLD)
        _, second = largest_community_size(context)
        pulled = dataclasses.replace(settings, pull_threshold=second)
        fan_out_everything(dataclasses.replace(context, settings=pulled))
        assert context.conn.execute("SELECT count(*) FROM feed_pull_community").fetchone() == (1,)
        merging = context.conn.execute(
            "SELECT count(DISTINCT fe.user_id) FILTER (WHERE pc.community_id IS NOT NULL), "
            "count(DISTINCT fe.user_id) FROM feed_entry fe "
            "LEFT JOIN memberships m ON m.user_id = fe.user_id "
            "LEFT JOIN feed_pull_community pc ON pc.community_id = m.community_id"
        ).fetchone()
        assert merging is not None and merging[0] * 2 >= merging[1]  # most walks merge
    name = conninfo_to_dict(settings.database_url or "")["dbname"]
    return walks.Worlds(postgres_admin_url, str(name), pulled)


@hypothesis.settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(
    pick=st.integers(min_value=0, max_value=10**6),
    limit=st.integers(min_value=1, max_value=30),
    steps=st.lists(st.sampled_from(walks.ACTIONS), min_size=1, max_size=10),
    chance=st.integers(min_value=0, max_value=2**32),
)
def test_a_walk_with_a_pulled_community_never_repeats_nor_skips_while_it_changes(
    pulled_worlds: walks.Worlds,
    monkeypatch: pytest.MonkeyPatch,
    pick: int,
    limit: int,
    steps: list[str],
    chance: int,
) -> None:
    monkeypatch.setattr(walks, "live_feed", live_feed_with_pull)
    with pulled_worlds.fresh() as ctx:
        walks.walk_while_changing(ctx, "user", pick, limit, steps, random.Random(chance))
