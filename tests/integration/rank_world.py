"""A small scored world for the ranking tests, and the checks they share.

The world is built without fan-out (posts scored by `rank`, entries written by one plain
INSERT), so these tests do not wait on the event horizon of a busy shared server. Every
expectation comes from tests/integration/expected.py: plain SQL and math.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from feedctl.config import Settings
from feedctl.context import Context
from feedctl.pipelines.cache import warm as cache_warm
from feedctl.pipelines.ranking.nightly import run_rank
from feedctl.synth import SeedSpec, seed

from expected import default_coefficients, expected_community_feed, expected_user_feeds
from processes import run_feedctl

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
SPEC = SeedSpec(users=160, communities=5, posts=160, seed=5, now=NOW, join_events=False)
V2: dict[str, Any] = {
    "version": "v2",
    "half_life_hours": 6.0,
    "reactions_weight": 2.0,
    "comments_weight": 0.5,
    "reputation_weight": 1.0,
}
Feed = list[tuple[int, float]]


def write_heuristic(folder: Path, coefficients: dict[str, Any]) -> Path:
    path = folder / f"{coefficients['version']}.toml"
    lines = [
        f"{key} = {value!r}" if key != "version" else f'version = "{value}"'
        for key, value in coefficients.items()
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def build_world(ctx: Context, spec: SeedSpec = SPEC) -> None:
    """Seed, score every live post under the default heuristic, write every feed entry,
    and cache every user's and community's feed (truncated to the cap)."""
    seed(ctx.conn, spec)
    run_rank(ctx, include_unscored=True)
    ctx.conn.execute(
        "INSERT INTO feed_entry (user_id, post_id, community_id, author_id, score, created_at) "
        "SELECT m.user_id, p.id, p.community_id, p.author_id, ps.score, p.created_at "
        "FROM posts p JOIN post_score ps ON ps.post_id = p.id "
        "JOIN memberships m ON m.community_id = p.community_id WHERE p.deleted_at IS NULL"
    )
    ctx.conn.execute("ANALYZE")  # statistics, as a live database has them
    cache_warm.warm(ctx, "user", user_ids(ctx))
    cache_warm.warm(ctx, "community", community_ids(ctx))


def user_ids(ctx: Context) -> list[int]:
    return [r[0] for r in ctx.conn.execute("SELECT id FROM users ORDER BY id")]


def community_ids(ctx: Context) -> list[int]:
    return [r[0] for r in ctx.conn.execute("SELECT id FROM communities ORDER BY id")]


def stored_feeds(ctx: Context) -> dict[int, Feed]:
    feeds: dict[int, Feed] = {}
    rows = ctx.conn.execute(
        "SELECT user_id, post_id, score FROM feed_entry ORDER BY user_id, score DESC, post_id DESC"
    )
    for user_id, post_id, score in rows:
        feeds.setdefault(user_id, []).append((post_id, score))
    return feeds


def cached(ctx: Context, kind: str, feed_id: int) -> Feed | None:
    found = ctx.cache.members(f"{ctx.prefix}feed:{kind}:{feed_id}")
    return None if found is None else found[0]


def assert_same_feed(actual: Feed, expected: Feed) -> None:
    got, want = [p for p, _ in actual], [p for p, _ in expected]
    if got != want:
        first = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), None)
        where = min(len(got), len(want)) if first is None else first
        raise AssertionError(
            f"missing {sorted(set(want) - set(got))}, extra {sorted(set(got) - set(want))}, "
            f"first difference at {where}: {actual[where : where + 3]} "
            f"where {expected[where : where + 3]} expected"
        )
    for (_, got), (_, want) in zip(actual, expected, strict=True):
        assert got == pytest.approx(want, abs=1e-9)


def assert_world(ctx: Context, coefficients: dict[str, Any] | None = None) -> None:
    """post_score, every feed in PostgreSQL and every cached feed follow `coefficients`."""
    coefficients = coefficients or default_coefficients()
    version = coefficients["version"]
    expected = expected_user_feeds(ctx.conn, coefficients)
    stored = stored_feeds(ctx)
    for user_id, feed in expected.items():
        assert_same_feed(stored.get(user_id, []), feed)
        in_cache = cached(ctx, "u", user_id)
        assert in_cache is not None, f"user {user_id}'s feed is no longer cached"
        assert_same_feed(in_cache, feed[: ctx.cap])
    for community_id in community_ids(ctx):
        want = expected_community_feed(ctx.conn, community_id, coefficients)
        in_cache = cached(ctx, "c", community_id)
        assert in_cache is not None
        assert_same_feed(in_cache, want[: ctx.cap])
    versions = ctx.conn.execute("SELECT DISTINCT heuristic_version FROM post_score").fetchall()
    assert versions == [(version,)]


def run_cli(settings: Settings, *args: str, kill_at: str | None = None) -> int:
    """`python -m feedctl ARGS` against the test's servers; its exit code (-9: killed)."""
    return run_feedctl(settings, *args, kill_at=kill_at).returncode
