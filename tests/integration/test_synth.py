"""feedctl.synth against the tests' PostgreSQL: each database is a fresh clone of the migrated
template, dropped after."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from feedctl.errors import BadInputError
from feedctl.synth import SeedReport, SeedSpec, seed

from progress_recorder import RecordingProgress

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SPEC = SeedSpec(now=NOW)
SMALL = SeedSpec(users=300, communities=12, posts=400, days=3, now=NOW, deleted_share=0.05)

Connection = psycopg.Connection[Any]
MigratedDatabase = Callable[[], AbstractContextManager[str]]  # the fixture in conftest.py


@contextmanager
def connected(url: str) -> Iterator[Connection]:
    with psycopg.connect(url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def db(database_url: str) -> Iterator[Connection]:
    with connected(database_url) as conn:
        yield conn


@pytest.fixture(scope="module")
def seeded(migrated_database: MigratedDatabase) -> Iterator[tuple[Connection, SeedReport]]:
    """One database seeded with the default spec at a fixed `now`; tests only read it."""
    with migrated_database() as url, connected(url) as conn:
        yield conn, seed(conn, SPEC)


def one(conn: Connection, query: str, *params: object) -> tuple[Any, ...]:
    row: tuple[Any, ...] | None = conn.execute(query, params).fetchone()
    assert row is not None
    return row


def scalar(conn: Connection, query: str, *params: object) -> Any:
    return one(conn, query, *params)[0]


DUMPS = {
    "users": "SELECT * FROM users ORDER BY id",
    "communities": "SELECT * FROM communities ORDER BY id",
    "memberships": "SELECT * FROM memberships ORDER BY community_id, user_id",
    "posts": "SELECT * FROM posts ORDER BY id",
    "feed_events": (
        "SELECT id, kind, post_id, community_id, user_id, created_at FROM feed_events ORDER BY id"
    ),
    "post_engagements": (
        "SELECT * FROM post_engagements ORDER BY created_at, post_id, kind, user_id"
    ),
}


def dump(conn: Connection) -> dict[str, list[tuple[Any, ...]]]:
    return {table: conn.execute(query).fetchall() for table, query in DUMPS.items()}


# ------------------------------------------------------------------------------ reports


def test_report_counts_equal_table_counts(seeded: tuple[Connection, SeedReport]) -> None:
    conn, report = seeded
    assert report.users == scalar(conn, "SELECT count(*) FROM users") == SPEC.users
    assert report.communities == scalar(conn, "SELECT count(*) FROM communities")
    assert report.communities == SPEC.communities
    assert report.memberships == scalar(conn, "SELECT count(*) FROM memberships")
    assert report.posts == scalar(conn, "SELECT count(*) FROM posts") == SPEC.posts
    assert report.deleted_posts == scalar(
        conn, "SELECT count(*) FROM posts WHERE deleted_at IS NOT NULL"
    )
    assert report.deleted_posts == round(SPEC.deleted_share * SPEC.posts)
    assert report.events == scalar(conn, "SELECT count(*) FROM feed_events")


def test_fanout_entries_equal_an_independent_count(seeded: tuple[Connection, SeedReport]) -> None:
    conn, report = seeded
    fanout = scalar(
        conn,
        "SELECT count(*) FROM posts p JOIN memberships m USING (community_id)"
        " WHERE p.deleted_at IS NULL",
    )
    assert report.fanout_entries == fanout


def test_progress_reports_rows_as_they_are_written(db: Connection) -> None:
    progress = RecordingProgress()
    report = seed(db, SMALL, progress=progress)
    assert progress.phases() == ["seeding (rows)"]
    assert all(call[1] > 0 for call in progress.calls if call[0] == "advance")
    tables = {call[1] for call in progress.calls if call[0] == "status"}
    assert tables == {
        "users",
        "communities",
        "memberships",
        "posts",
        "feed_events",
        "post_engagements",
    }
    written = report.users + report.communities + report.memberships + report.posts
    assert progress.done == {"seeding (rows)": written + report.events + report.engagements}


# -------------------------------------------------------------------------- determinism


def test_same_spec_gives_identical_rows(
    seeded: tuple[Connection, SeedReport], migrated_database: MigratedDatabase
) -> None:
    conn, report = seeded
    with migrated_database() as url, connected(url) as other:
        assert seed(other, SPEC) == report
        assert dump(other) == dump(conn)


def test_seeding_twice_appends_with_continuing_ids(db: Connection) -> None:
    first = seed(db, SMALL)
    second = seed(db, replace(SMALL, seed=7))
    for table, report_count in (
        ("users", first.users),
        ("communities", first.communities),
        ("posts", first.posts),
    ):
        query = sql.SQL("SELECT id FROM {} ORDER BY id").format(sql.Identifier(table))
        ids = [row[0] for row in db.execute(query).fetchall()]
        assert ids == list(range(1, 2 * report_count + 1))
    assert scalar(db, "SELECT count(*) FROM memberships") == first.memberships + second.memberships
    assert scalar(db, "SELECT count(*) FROM feed_events") == first.events + second.events
    assert_authors_are_members(db)
    assert (
        scalar(
            db,
            f"SELECT count(*) FROM memberships WHERE (community_id > {first.communities})"
            f" <> (user_id > {first.users})",
        )
        == 0
    ), "the second run's memberships link only its own users and communities"


def test_fewer_users_than_communities_and_no_join_events(db: Connection) -> None:
    spec = SeedSpec(users=1, communities=5, posts=3, now=NOW, deleted_share=0.0, join_events=False)
    report = seed(db, spec)
    assert (report.memberships, report.fanout_entries, report.events) == (5, 3, 3)
    assert scalar(db, "SELECT count(*) FROM feed_events WHERE kind = 'member_joined'") == 0
    assert_authors_are_members(db)


# ---------------------------------------------------------------------------- structure


def assert_authors_are_members(conn: Connection) -> None:
    assert (
        scalar(
            conn,
            "SELECT count(*) FROM posts p WHERE NOT EXISTS (SELECT 1 FROM memberships m"
            " WHERE m.community_id = p.community_id AND m.user_id = p.author_id)",
        )
        == 0
    )


def test_every_posts_author_is_a_member_of_its_community(
    seeded: tuple[Connection, SeedReport],
) -> None:
    assert_authors_are_members(seeded[0])


def test_memberships_are_unique_and_cover_everyone(seeded: tuple[Connection, SeedReport]) -> None:
    conn, _ = seeded
    assert scalar(conn, "SELECT count(*) FROM memberships") == scalar(
        conn, "SELECT count(DISTINCT (community_id, user_id)) FROM memberships"
    )
    assert scalar(conn, "SELECT count(DISTINCT community_id) FROM memberships") == SPEC.communities
    assert scalar(conn, "SELECT count(DISTINCT user_id) FROM memberships") == SPEC.users
    per_user = float(
        scalar(conn, "SELECT count(*)::float / count(DISTINCT user_id) FROM memberships")
    )
    assert 2.0 <= per_user <= 3.0


def test_community_sizes_are_heavy_tailed(seeded: tuple[Connection, SeedReport]) -> None:
    conn, _ = seeded
    largest, median = one(
        conn,
        "SELECT max(n), percentile_cont(0.5) WITHIN GROUP (ORDER BY n)"
        " FROM (SELECT count(*) AS n FROM memberships GROUP BY community_id) AS sizes",
    )
    assert largest >= 5 * median


def test_counters_and_reputation_are_heavy_tailed(seeded: tuple[Connection, SeedReport]) -> None:
    conn, _ = seeded
    low, median, high, comments_bounded, correlation = one(
        conn,
        "SELECT min(reactions_count), percentile_cont(0.5) WITHIN GROUP (ORDER BY reactions_count),"
        " max(reactions_count), bool_and(comments_count BETWEEN 0 AND reactions_count),"
        " corr(reactions_count, comments_count) FROM posts",
    )
    assert low >= 0 and high >= 20 * median and comments_bounded and correlation > 0.5
    low, median, high = one(
        conn,
        "SELECT min(reputation), percentile_cont(0.5) WITHIN GROUP (ORDER BY reputation),"
        " max(reputation) FROM users",
    )
    assert low >= 0 and high >= 20 * median


def test_times_are_spread_and_ordered(seeded: tuple[Connection, SeedReport]) -> None:
    conn, _ = seeded
    start = NOW - timedelta(days=SPEC.days)
    first, last = one(conn, "SELECT min(created_at), max(created_at) FROM posts")
    assert start <= first < start + timedelta(days=1) and NOW - timedelta(days=1) < last < NOW
    assert (
        scalar(
            conn,
            "SELECT count(*) FROM memberships m JOIN (SELECT community_id,"
            " min(created_at) AS first FROM posts GROUP BY community_id) p USING (community_id)"
            " WHERE m.joined_at >= p.first",
        )
        == 0
    )
    assert (
        scalar(
            conn,
            "SELECT count(*) FROM posts WHERE deleted_at IS NOT NULL"
            " AND NOT (deleted_at > created_at AND deleted_at <= %s)",
            NOW,
        )
        == 0
    )
    active = scalar(
        conn,
        "SELECT count(*) FROM users WHERE last_active_at > %s",
        NOW - timedelta(days=7),
    )
    assert active == round(SPEC.active_share * SPEC.users)


# ------------------------------------------------------------------------------- events


def test_events_count_memberships_posts_and_deletions(
    seeded: tuple[Connection, SeedReport],
) -> None:
    conn, report = seeded
    assert report.events == report.memberships + report.posts + report.deleted_posts
    kinds = dict(conn.execute("SELECT kind, count(*) FROM feed_events GROUP BY kind").fetchall())
    assert kinds == {
        "member_joined": report.memberships,
        "post_created": report.posts,
        "post_deleted": report.deleted_posts,
    }


def test_events_are_appended_in_order(seeded: tuple[Connection, SeedReport]) -> None:
    conn, _ = seeded
    order = conn.execute(
        "SELECT kind, min(id), max(id) FROM feed_events GROUP BY kind ORDER BY min(id)"
    ).fetchall()
    assert [kind for kind, _, _ in order] == ["member_joined", "post_created", "post_deleted"]
    assert all(order[i][2] < order[i + 1][1] for i in range(len(order) - 1))
    unordered = scalar(
        conn,
        "SELECT count(*) FROM (SELECT created_at, lag(created_at) OVER (ORDER BY id) AS previous"
        " FROM feed_events WHERE kind = 'post_created') e WHERE created_at < previous",
    )
    assert unordered == 0


def test_events_record_the_time_of_what_they_record(seeded: tuple[Connection, SeedReport]) -> None:
    conn, report = seeded
    joined = scalar(
        conn,
        "SELECT count(*) FROM feed_events e JOIN memberships m USING (community_id, user_id)"
        " WHERE e.kind = 'member_joined' AND e.created_at = m.joined_at AND e.post_id IS NULL",
    )
    created = scalar(
        conn,
        "SELECT count(*) FROM feed_events e JOIN posts p ON p.id = e.post_id"
        " WHERE e.kind = 'post_created' AND e.created_at = p.created_at"
        " AND e.community_id = p.community_id AND e.user_id = p.author_id",
    )
    assert (joined, created) == (report.memberships, report.posts)


def test_deleted_posts_have_deleted_at_and_one_event(seeded: tuple[Connection, SeedReport]) -> None:
    conn, report = seeded
    matched = scalar(
        conn,
        "SELECT count(*) FROM posts p JOIN feed_events e ON e.post_id = p.id"
        " AND e.kind = 'post_deleted' WHERE e.created_at = p.deleted_at"
        " AND e.community_id = p.community_id",
    )
    assert matched == report.deleted_posts > 0


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "change",
    [
        {"users": 0},
        {"communities": 0},
        {"posts": -1},
        {"days": 0},
        {"seed": -1},
        {"deleted_share": 1.5},
        {"active_share": -0.1},
        {"active_share": float("nan")},
    ],
)
def test_bad_spec_is_rejected_before_writing(
    seeded: tuple[Connection, SeedReport], change: dict[str, Any]
) -> None:
    conn, report = seeded
    with pytest.raises(BadInputError):
        seed(conn, replace(SPEC, **change))
    assert scalar(conn, "SELECT count(*) FROM users") == report.users


# ---------------------------------------------------------------------------- engagement


def test_engagement_comes_from_members_while_the_post_is_live(
    seeded: tuple[Connection, SeedReport],
) -> None:
    conn, report = seeded
    assert report.engagements == scalar(conn, "SELECT count(*) FROM post_engagements") > 10_000
    kinds = dict(conn.execute("SELECT kind, count(*) FROM post_engagements GROUP BY kind"))
    assert set(kinds) == {"view", "reaction", "comment"}
    assert kinds["view"] > kinds["reaction"] > kinds["comment"] > 0
    outside = scalar(
        conn,
        "SELECT count(*) FROM post_engagements e JOIN posts p ON p.id = e.post_id"
        " LEFT JOIN memberships m ON m.community_id = p.community_id AND m.user_id = e.user_id"
        " WHERE m.user_id IS NULL OR e.created_at < p.created_at"
        " OR e.created_at >= coalesce(p.deleted_at, %s)",
        NOW,
    )
    assert outside == 0


def test_engagement_follows_the_hidden_preference(seeded: tuple[Connection, SeedReport]) -> None:
    """Posts with more reactions in their first hours draw more engagement afterwards, and
    engagement decays with age (the true half-life is 12 hours, but reactions excite more)."""
    conn, _ = seeded
    early, late = one(
        conn,
        "SELECT count(*) FILTER (WHERE e.created_at < p.created_at + interval '2 days'),"
        " count(*) FILTER (WHERE e.created_at >= p.created_at + interval '2 days')"
        " FROM post_engagements e JOIN posts p ON p.id = e.post_id",
    )
    assert early > 2 * late
    correlation = scalar(
        conn,
        "WITH per_post AS (SELECT p.id,"
        "  count(*) FILTER (WHERE e.kind = 'reaction'"
        "    AND e.created_at < p.created_at + interval '6 hours') AS before,"
        "  count(*) FILTER (WHERE e.created_at >= p.created_at + interval '6 hours') AS after"
        " FROM posts p LEFT JOIN post_engagements e ON e.post_id = p.id GROUP BY p.id)"
        " SELECT corr(before, after) FROM per_post",
    )
    assert correlation > 0.3


def test_no_engagement_when_not_asked(db: Connection) -> None:
    report = seed(db, replace(SMALL, engagement=False))
    assert report.engagements == 0
    assert scalar(db, "SELECT count(*) FROM post_engagements") == 0
