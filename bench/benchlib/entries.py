"""feed_entry filled in one statement: what fan-out would write for a seeded world."""

from __future__ import annotations

from typing import Any

import psycopg


def write_feed_entries(conn: psycopg.Connection[Any]) -> int:
    """Every member gets every scored post of their communities, with the indexes of
    migrations 0013/0023 dropped during the insert and built afterwards. Returns the rows
    written."""
    conn.execute("ALTER TABLE feed_entry DROP CONSTRAINT feed_entry_pkey")
    conn.execute("DROP INDEX feed_entry_rank_idx")
    conn.execute("DROP INDEX feed_entry_post_idx")
    written = conn.execute(
        "INSERT INTO feed_entry (user_id, post_id, community_id, author_id, score, created_at) "
        "SELECT m.user_id, p.id, p.community_id, p.author_id, ps.score, p.created_at "
        "FROM posts p JOIN post_score ps ON ps.post_id = p.id "
        "JOIN memberships m ON m.community_id = p.community_id "
        "WHERE p.deleted_at IS NULL ORDER BY m.user_id, p.id"
    ).rowcount
    conn.execute("ALTER TABLE feed_entry ADD PRIMARY KEY (user_id, post_id)")
    conn.execute(
        "CREATE INDEX feed_entry_rank_idx ON feed_entry (user_id, score DESC, post_id DESC)"
    )
    conn.execute("CREATE INDEX feed_entry_post_idx ON feed_entry (post_id)")
    conn.execute("VACUUM ANALYZE")
    return written
