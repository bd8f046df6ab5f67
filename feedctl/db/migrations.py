"""Apply the SQL files in sql/ in name order, once each, checksummed, under a lock."""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, LiteralString

import psycopg

import feedctl
from feedctl.config import DEFAULT_FEED_PARTITIONS
from feedctl.db.sql_blocks import query
from feedctl.errors import LockedError, MigrationError

# Arbitrary, fixed: the advisory lock key that serialises migration runs.
MIGRATION_LOCK_KEY = 0x66656564_0001


@dataclasses.dataclass(frozen=True)
class MigrationFile:
    name: str
    path: Path

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


@dataclasses.dataclass(frozen=True)
class MigrationState:
    name: str
    applied_at: datetime | None
    changed: bool  # applied, but the file no longer matches its recorded checksum


def migrations_dir() -> Path:
    """Where the migration files are: inside the wheel, or sql/ in a checkout."""
    package = Path(feedctl.__file__).parent
    shipped = package / "_migrations"
    return shipped if shipped.is_dir() else package.parent / "sql"


def discover(directory: Path | None = None) -> list[MigrationFile]:
    folder = directory or migrations_dir()
    if not folder.is_dir():
        raise MigrationError(f"migration folder {folder} does not exist")
    return [MigrationFile(p.name, p) for p in sorted(folder.glob("*.sql"))]


def _applied(conn: psycopg.Connection[Any]) -> dict[str, tuple[str, datetime]]:
    with conn.transaction():
        conn.execute(query("create_migration_history"))
        rows = conn.execute(query("applied_migrations")).fetchall()
    return {name: (checksum, applied_at) for name, checksum, applied_at in rows}


def status(conn: psycopg.Connection[Any], directory: Path | None = None) -> list[MigrationState]:
    """Each migration file and whether it is applied (and unchanged)."""
    applied = _applied(conn)
    states = []
    for migration in discover(directory):
        record = applied.get(migration.name)
        states.append(
            MigrationState(
                name=migration.name,
                applied_at=record[1] if record else None,
                changed=record is not None and record[0] != migration.checksum,
            )
        )
    return states


def _take_lock(conn: psycopg.Connection[Any], wait_seconds: float) -> None:
    deadline = time.monotonic() + wait_seconds
    while True:
        row = conn.execute(query("try_advisory_lock"), {"key": MIGRATION_LOCK_KEY}).fetchone()
        if row and row[0]:
            return
        if time.monotonic() >= deadline:
            raise LockedError("another feedctl migrate run holds the migration lock")
        time.sleep(0.2)


def _check_unchanged(files: list[MigrationFile], applied: dict[str, tuple[str, datetime]]) -> None:
    for migration in files:
        record = applied.get(migration.name)
        if record is not None and record[0] != migration.checksum:
            raise MigrationError(
                f"migration {migration.name} was changed after it was applied "
                f"(recorded checksum {record[0][:12]}, file {migration.checksum[:12]}); "
                "write a new migration instead of editing an applied one"
            )


def upgrade(
    conn: psycopg.Connection[Any],
    directory: Path | None = None,
    *,
    lock_wait_seconds: float = 30.0,
    on_applied: Callable[[str], None] | None = None,
    feed_partitions: int = DEFAULT_FEED_PARTITIONS,
) -> list[str]:
    """Apply pending migrations, each in its own transaction. Returns the names applied.

    `conn` must be in autocommit mode (the lock is held by the session). Each migration
    sees `feed_partitions` as the setting `feedctl.feed_partitions` (the number of hash
    partitions the migration that partitions feed_entry creates).
    """
    files = discover(directory)
    _take_lock(conn, lock_wait_seconds)
    try:
        applied = _applied(conn)
        _check_unchanged(files, applied)
        done = []
        for migration in files:
            if migration.name in applied:
                continue
            sql_text: LiteralString = migration.path.read_text(encoding="utf-8")
            try:
                with conn.transaction():
                    conn.execute(query("migration_settings"), {"partitions": str(feed_partitions)})
                    conn.execute(sql_text)
                    conn.execute(
                        query("record_migration"),
                        {"name": migration.name, "checksum": migration.checksum},
                    )
            except psycopg.Error as exc:
                raise MigrationError(f"migration {migration.name} failed: {exc}") from exc
            done.append(migration.name)
            if on_applied:
                on_applied(migration.name)
        return done
    finally:
        conn.execute(query("advisory_unlock"), {"key": MIGRATION_LOCK_KEY})
