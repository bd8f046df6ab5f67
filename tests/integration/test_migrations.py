"""Migrations: applied once each, in order, checksummed; the app contract's tables exist."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest

from feedctl.db import migrations
from feedctl.errors import MigrationError

CONTRACT = {
    "users": {"id", "reputation", "last_active_at"},
    "communities": {"id", "name"},
    "memberships": {"community_id", "user_id"},
    "posts": {
        "id",
        "community_id",
        "author_id",
        "created_at",
        "reactions_count",
        "comments_count",
        "deleted_at",
    },
    "feed_events": {"id", "kind", "post_id", "community_id", "user_id", "created_at"},
    "post_engagements": {"user_id", "post_id", "kind", "created_at"},
    "feed_entry": {"user_id", "post_id", "score"},
    "feed_offset_state": {"consumer"},
}


def test_upgrade_applies_every_file_once_and_creates_the_contract(empty_database_url: str) -> None:
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        applied = migrations.upgrade(conn)
        assert applied == [m.name for m in migrations.discover()]
        assert "0013_communities_feed_entry.sql" in applied
        assert "0014_communities_feed_offset_state.sql" in applied
        assert migrations.upgrade(conn) == []
        for table, columns in CONTRACT.items():
            rows = conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = %s",
                (table,),
            ).fetchall()
            assert columns <= {r[0] for r in rows}, table
        states = migrations.status(conn)
        assert all(s.applied_at is not None and not s.changed for s in states)


def test_a_changed_applied_file_is_refused(empty_database_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "sql"
    shutil.copytree(migrations.migrations_dir(), folder)
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        migrations.upgrade(conn, folder)
        target = folder / "0002_communities_communities.sql"
        target.write_text(target.read_text() + "\n-- edited\n")
        with pytest.raises(MigrationError, match=r"0002_communities_communities\.sql"):
            migrations.upgrade(conn, folder)
        assert any(s.changed for s in migrations.status(conn, folder))


def test_a_failing_migration_leaves_no_trace(empty_database_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "sql"
    folder.mkdir()
    (folder / "0001_ok.sql").write_text("CREATE TABLE ok (id int);")
    (folder / "0002_bad.sql").write_text("CREATE TABLE half (id int); SELECT broken syntax here;")
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        with pytest.raises(MigrationError, match=r"0002_bad\.sql"):
            migrations.upgrade(conn, folder)
        names = [s.name for s in migrations.status(conn, folder) if s.applied_at]
        assert names == ["0001_ok.sql"]
        assert conn.execute("SELECT to_regclass('half')").fetchone() == (None,)
