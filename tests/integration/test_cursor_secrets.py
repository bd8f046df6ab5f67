"""Cursor secrets: every database makes its own at `migrate up`; configured lists rotate."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import psycopg
import pytest

from feedctl.config import Settings
from feedctl.context import Context, open_context
from feedctl.db import migrations
from feedctl.errors import ConfigError, CursorError
from feedctl.read.cursor_secret import cursor_secrets
from feedctl.read.pages import FeedReader


def _populate(conn: psycopg.Connection[object]) -> None:
    """One community, one member, enough posts for a second page."""
    conn.execute("INSERT INTO users (id, reputation, last_active_at) VALUES (1, 1, now())")
    conn.execute("INSERT INTO communities (id, name) VALUES (1, 'c')")
    conn.execute("INSERT INTO memberships (community_id, user_id) VALUES (1, 1)")
    conn.execute(
        "INSERT INTO posts (id, community_id, author_id, created_at) "
        "SELECT g, 1, 1, now() - g * interval '1 minute' FROM generate_series(1, 6) g"
    )
    conn.execute(
        "INSERT INTO post_score (post_id, community_id, score, reactions_count, "
        "comments_count, reputation, heuristic_version) "
        "SELECT g, 1, 100 - g, 0, 0, 1, 'v' FROM generate_series(1, 6) g"
    )
    conn.execute(
        "INSERT INTO feed_entry (user_id, post_id, community_id, author_id, score, created_at) "
        "SELECT 1, id, 1, 1, 100 - id, created_at FROM posts"
    )


@pytest.fixture
def fresh(empty_database_url: str, settings: Settings) -> Iterator[Context]:
    """A second database, migrated here (so it made a secret of its own)."""
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        migrations.upgrade(conn)
        _populate(conn)
    with open_context(dataclasses.replace(settings, database_url=empty_database_url)) as ctx:
        yield ctx


@pytest.fixture
def other(ctx: Context) -> Context:
    _populate(ctx.conn)
    return ctx


def test_migrate_makes_a_long_random_secret(fresh: Context, other: Context) -> None:
    mine = cursor_secrets(fresh.conn, ())
    theirs = cursor_secrets(other.conn, ())
    assert len(mine) == len(theirs) == 1
    assert len(bytes.fromhex(mine[0])) >= 32
    assert mine != theirs


def test_two_databases_refuse_each_others_cursors(fresh: Context, other: Context) -> None:
    mine = FeedReader.for_settings(fresh.conn, fresh.cache, fresh.settings)
    theirs = FeedReader.for_settings(other.conn, other.cache, other.settings)
    cursor = mine.user_feed(1, 2).next_cursor
    assert cursor is not None
    assert [i.post_id for i in mine.user_feed(1, 2, cursor).items] == [3, 4]
    with pytest.raises(CursorError, match="signature does not match"):
        theirs.user_feed(1, 2, cursor)
    foreign = theirs.community_feed(1, 2).next_cursor
    assert foreign is not None
    with pytest.raises(CursorError, match="signature does not match"):
        mine.community_feed(1, 2, foreign)


def test_rotation_first_signs_every_one_verifies(other: Context) -> None:
    old, new = "old-secret-0123456789", "new-secret-0123456789"
    before = FeedReader.for_settings(
        other.conn, other.cache, dataclasses.replace(other.settings, cursor_secret=(old,))
    )
    during = FeedReader.for_settings(
        other.conn, other.cache, dataclasses.replace(other.settings, cursor_secret=(new, old))
    )
    after = FeedReader.for_settings(
        other.conn, other.cache, dataclasses.replace(other.settings, cursor_secret=(new,))
    )
    walk_begun_before = before.user_feed(1, 2).next_cursor
    assert walk_begun_before is not None
    assert [i.post_id for i in during.user_feed(1, 2, walk_begun_before).items] == [3, 4]
    signed_during = during.user_feed(1, 2).next_cursor
    assert signed_during is not None
    assert [i.post_id for i in after.user_feed(1, 2, signed_during).items] == [3, 4]
    with pytest.raises(CursorError, match="signature does not match"):
        after.user_feed(1, 2, walk_begun_before)
    with pytest.raises(CursorError, match="signature does not match"):
        before.user_feed(1, 2, signed_during)


def test_a_database_without_a_secret_says_what_to_do(other: Context) -> None:
    other.conn.execute("DELETE FROM feedctl_secret")
    with pytest.raises(ConfigError, match="migrate up"):
        FeedReader.for_settings(other.conn, other.cache, other.settings)
