"""Feeds whose Redis copy missed a write, remembered in PostgreSQL until repaired."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, Protocol

import psycopg

from feedctl.cache.client import REDIS_ERRORS
from feedctl.cache.keys import KINDS, FeedKind, FeedRef
from feedctl.db.sql_blocks import query


def mark(conn: psycopg.Connection[Any], kind: FeedKind, ids: Sequence[int], reason: str) -> None:
    """Mark feeds for repair (committed by the caller's transaction or autocommit)."""
    if ids:
        conn.execute(query("mark_for_repair"), {"kind": kind, "ids": list(ids), "reason": reason})


def marked(conn: psycopg.Connection[Any], limit: int) -> list[tuple[FeedKind, int]]:
    rows = conn.execute(query("feeds_to_repair"), {"limit": limit}).fetchall()
    return [(kind, feed_id) for kind, feed_id in rows]


def unmark(
    conn: psycopg.Connection[Any], kind: FeedKind, ids: Sequence[int], before: datetime
) -> None:
    """Forget marks set no later than `before` (a newer miss stays marked)."""
    conn.execute(query("unmark_repaired"), {"kind": kind, "ids": list(ids), "before": before})


def database_now(conn: psycopg.Connection[Any]) -> datetime:
    """The database clock now: marks set no later than this can be forgotten by a rewrite
    that reads PostgreSQL after it (`unmark`)."""
    row = conn.execute(query("database_now")).fetchone()
    assert row is not None
    moment: datetime = row[0]
    return moment


def count(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(query("count_repairs")).fetchone()
    return int(row[0]) if row else 0


def mark_feeds(conn: psycopg.Connection[Any], feeds: Sequence[FeedRef], reason: str) -> None:
    """Mark feeds of either kind for repair, in one transaction."""
    with conn.transaction():
        for kind in KINDS:
            mark(conn, kind, [f.id for f in feeds if f.kind == kind], reason)


class FailureTally(Protocol):
    """The report a failed Redis write is counted in."""

    redis_failures: int


@dataclasses.dataclass
class RedisWrite:
    """What became of the Redis writes of one `marked_on_failure` block."""

    failed: bool = False


@contextlib.contextmanager
def marked_on_failure(
    conn: psycopg.Connection[Any],
    feeds: Sequence[FeedRef],
    reason: str,
    tally: FailureTally,
    *,
    failures: int | None = None,
) -> Iterator[RedisWrite]:
    """The one way a failed Redis write is handled: the block's Redis error is swallowed,
    counted in `tally.redis_failures` (`failures`, by default one per feed), and the feeds are
    marked for repair in PostgreSQL, which stays the truth. `RedisWrite.failed` tells the
    code after the block which happened."""
    write = RedisWrite()
    try:
        yield write
    except REDIS_ERRORS:
        write.failed = True
        tally.redis_failures += len(feeds) if failures is None else failures
        mark_feeds(conn, feeds, reason)
