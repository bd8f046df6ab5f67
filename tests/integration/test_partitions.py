"""feed_entry hash-partitioned by user_id: the migration converts a populated table in
place (every row kept, checked by count and checksum), the partition count comes from the
setting, every unique key includes user_id, and queries by user read one partition."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import psycopg
import pytest

from feedctl.db import migrations
from feedctl.db.sql_blocks import query

PARTITIONING = "0023_communities_feed_entry_partitions.sql"
CHECKSUM = (
    "SELECT count(*), md5(string_agg(fe::text, ',' ORDER BY user_id, post_id)) FROM feed_entry fe"
)


def _migrations_before(folder: Path, name: str) -> None:
    folder.mkdir()
    for migration in migrations.discover():
        if migration.name < name:
            shutil.copy(migration.path, folder / migration.name)


def _partitions(conn: psycopg.Connection[Any]) -> list[str]:
    rows = conn.execute(
        "SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'feed_entry'::regclass "
        "ORDER BY c.relname"
    )
    return sorted(r[0] for r in rows)


def test_migration_partitions_a_populated_feed_entry_losing_no_row(
    empty_database_url: str, tmp_path: Path
) -> None:
    before = tmp_path / "before"
    _migrations_before(before, PARTITIONING)
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        migrations.upgrade(conn, before)
        kind = conn.execute("SELECT relkind FROM pg_class WHERE relname = 'feed_entry'")
        assert kind.fetchone() == ("r",)
        conn.execute(  # 20,000 rows of 1,000 users, negative ids too, scores with fractions
            "INSERT INTO feed_entry (user_id, post_id, community_id, author_id, score, created_at) "
            "SELECT u, p, p % 7, p % 13, u * 0.5 + p / 3.0, "
            "       timestamptz '2026-11-01' + p * interval '1 minute' "
            "FROM generate_series(-500, 499) u, generate_series(1, 20) p"
        )
        counted = conn.execute(CHECKSUM).fetchone()
        applied = migrations.upgrade(conn, feed_partitions=5)
        assert applied[0] == PARTITIONING
        assert conn.execute(CHECKSUM).fetchone() == counted
        assert counted is not None and counted[0] == 20_000
        kind = conn.execute("SELECT relkind FROM pg_class WHERE relname = 'feed_entry'")
        assert kind.fetchone() == ("p",)
        assert _partitions(conn) == [
            f"FOR VALUES WITH (modulus 5, remainder {i})" for i in range(5)
        ]
        spread = conn.execute(
            "SELECT tableoid::regclass::text, count(*) FROM feed_entry GROUP BY 1 ORDER BY 1"
        ).fetchall()
        assert len(spread) == 5 and all(count > 2_000 for _, count in spread)
        unique = conn.execute(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index "
            "WHERE indrelid = 'feed_entry'::regclass AND indisunique"
        ).fetchall()
        assert unique and all("user_id" in definition for (definition,) in unique)


def test_partition_count_can_be_changed_keeping_every_row(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert len(_partitions(conn)) == 16  # the default
        conn.execute(
            "INSERT INTO feed_entry (user_id, post_id, community_id, author_id, score, created_at) "
            "SELECT u, p, 1, 1, p, now() FROM generate_series(1, 300) u, generate_series(1, 10) p"
        )
        counted = conn.execute(CHECKSUM).fetchone()
        moved = conn.execute("SELECT feedctl_partition_feed_entry(3)").fetchone()
        assert moved == (3_000,)
        assert len(_partitions(conn)) == 3
        assert conn.execute(CHECKSUM).fetchone() == counted
        with pytest.raises(psycopg.errors.RaiseException, match="between 1 and 1024"):
            conn.execute("SELECT feedctl_partition_feed_entry(0)")


def _partitions_read(conn: psycopg.Connection[Any], sql: str, params: dict[str, Any]) -> set[str]:
    """The partitions of feed_entry a statement actually read (plan-time or run-time pruning
    leaves the others out or unexecuted)."""
    conn.execute("SET plan_cache_mode = force_generic_plan")  # prune at run time, the hard case
    row = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", params).fetchone()  # type: ignore[arg-type]
    assert row is not None
    read: set[str] = set()

    def walk(node: dict[str, Any]) -> None:
        name = node.get("Relation Name", "")
        if name.startswith("feed_entry_p") and node.get("Actual Loops", 0) > 0:
            read.add(name)
        for child in node.get("Plans", []):
            walk(child)

    walk(row[0][0]["Plan"])
    return read


PIN = {"retention": None, "pin_snapshot": None, "pin_at": None}
PAGE = {**PIN, "id": 42, "score": 1e300, "post_id": 2**62, "limit": 20}
CHECK = {**PAGE, "post_ids": [1, 2, 3], "floor_score": -1e300, "floor_post_id": 0}


@pytest.mark.parametrize(
    ("name", "params", "users"),
    [
        ("user_page_pinned", PAGE, 1),
        ("user_cached_page_check", CHECK, 1),
        ("user_feed_tops_text", {"ids": [42], "retention": None, "limit": 21}, 1),
        ("user_feed_tops_text", {"ids": [42, 43, 44], "retention": None, "limit": 21}, 3),
    ],
)
def test_queries_by_user_read_only_their_partitions(
    database_url: str, name: str, params: dict[str, Any], users: int
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO feed_entry (user_id, post_id, community_id, author_id, score, created_at) "
            "SELECT u, p, 1, 1, p, now() FROM generate_series(1, 100) u, generate_series(1, 5) p"
        )
        conn.execute("ANALYZE feed_entry")
        read = _partitions_read(conn, query(name), params)
        assert 1 <= len(read) <= users, read
