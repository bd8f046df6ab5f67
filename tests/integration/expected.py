"""Independent expectations: feeds computed from the app tables with plain SQL and math,
without calling feedctl's scoring or fan-out code."""

from __future__ import annotations

import math
import tomllib
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

import feedctl

EPOCH = datetime(2020, 1, 1, tzinfo=UTC)


def default_coefficients() -> dict[str, Any]:
    path = Path(feedctl.__file__).parent / "rank" / "default_heuristic.toml"
    return tomllib.loads(path.read_text())


def expected_score(
    created_at: datetime,
    reactions: int,
    comments: int,
    reputation: float,
    coefficients: dict[str, Any] | None = None,
) -> float:
    c = coefficients or default_coefficients()
    reactions, comments = max(reactions, 0), max(comments, 0)
    reputation = reputation if reputation == reputation and reputation > 0 else 0.0
    hours = (created_at - EPOCH).total_seconds() / 3600.0
    return (
        math.log2(1 + c["reactions_weight"] * reactions + c["comments_weight"] * comments)
        + c["reputation_weight"] * math.log2(1 + reputation)
        + hours / c["half_life_hours"]
    )


def live_post_scores(
    conn: psycopg.Connection[Any], coefficients: dict[str, Any] | None = None
) -> dict[int, tuple[int, float]]:
    """post id -> (community id, expected score) for every live post."""
    rows = conn.execute(
        "SELECT p.id, p.community_id, p.created_at, p.reactions_count, p.comments_count, "
        "coalesce(u.reputation, 0) FROM posts p LEFT JOIN users u ON u.id = p.author_id "
        "WHERE p.deleted_at IS NULL"
    ).fetchall()
    return {r[0]: (r[1], expected_score(r[2], r[3], r[4], r[5], coefficients)) for r in rows}


def expected_user_feeds(
    conn: psycopg.Connection[Any], coefficients: dict[str, Any] | None = None
) -> dict[int, list[tuple[int, float]]]:
    """user id -> [(post id, score)] best first, for every user."""
    posts = live_post_scores(conn, coefficients)
    by_community: dict[int, list[int]] = defaultdict(list)
    for post_id, (community_id, _) in posts.items():
        by_community[community_id].append(post_id)
    feeds: dict[int, list[tuple[int, float]]] = {
        r[0]: [] for r in conn.execute("SELECT id FROM users")
    }
    for community_id, user_id in conn.execute("SELECT community_id, user_id FROM memberships"):
        feeds[user_id].extend((p, posts[p][1]) for p in by_community.get(community_id, []))
    return {u: order(entries) for u, entries in feeds.items()}


def expected_community_feed(
    conn: psycopg.Connection[Any], community_id: int, coefficients: dict[str, Any] | None = None
) -> list[tuple[int, float]]:
    posts = live_post_scores(conn, coefficients)
    return order([(p, s) for p, (c, s) in posts.items() if c == community_id])


def order(entries: list[tuple[int, float]]) -> list[tuple[int, float]]:
    return sorted(entries, key=lambda e: (e[1], e[0]), reverse=True)
