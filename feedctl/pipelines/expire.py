"""Expire: remove from every feed the posts older than `feed_retention`, in bounded chunks.

A feed holds the live posts of the member's communities younger than the retention; every
writer follows that rule and every read filters by it, so expiring only frees storage and
never changes what a read returns. Posts are walked in (created_at, id) order up to the
cutoff, `chunk_posts` at a time. Each chunk is removed from cached feeds first (an entry too
old to be read may leave the cache early), then from feed_entry together with the recorded
position, in one transaction: a run that stops or dies resumes after the last chunk it
committed. Scores stay in post_score (community feeds filter by age when they are read).
"""

from __future__ import annotations

import dataclasses
import threading
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from feedctl.context import Context
from feedctl.db.locks import advisory_lock
from feedctl.db.sql_blocks import query
from feedctl.errors import BadInputError
from feedctl.pipelines.fanout.cache_writes import RedisWork, write_cache
from feedctl.progress import SILENT, Progress, stopping

STATE_NAME = "default"
LOCK_NAME = "feedctl.expire"
DEFAULT_CHUNK_POSTS = 1_000
_START = (datetime(1, 1, 1, tzinfo=UTC), 0)  # before every post


@dataclasses.dataclass
class ExpireReport:
    """What one expire run did (or, in a dry run, would do)."""

    retention: str = ""
    cutoff: datetime | None = None  # posts created before this left every feed
    posts_expired: int = 0
    entries_removed: int = 0
    chunks: int = 0
    redis_failures: int = 0  # cached feeds whose removal failed (marked for repair)
    feeds_marked_for_repair: int = 0
    feeds_warmed: int = 0  # (the cache side's tally; expire warms nothing)
    seconds_cache: float = 0.0
    restarted: bool = False  # the retention changed since the last run: walked from the start
    stopped: bool = False
    dry_run: bool = False


def expire(
    ctx: Context,
    *,
    chunk_posts: int = DEFAULT_CHUNK_POSTS,
    dry_run: bool = False,
    progress: Progress = SILENT,
    stop: threading.Event | None = None,
) -> ExpireReport:
    """Remove the feed entries of posts older than the retention (none when it is 0)."""
    if chunk_posts < 1:
        raise BadInputError(f"the chunk size must be at least 1, got {chunk_posts}")
    report = ExpireReport(retention=ctx.settings.feed_retention, dry_run=dry_run)
    retention = ctx.retention
    if retention is None:
        return report
    with advisory_lock(ctx.conn, LOCK_NAME):
        report.cutoff = ctx.retained_since()
        position = _start(ctx, retention, report)
        progress.phase("expiring (posts)", _count(ctx, position, report.cutoff))
        while not stopping(stop):
            posts = _page(ctx, position, report.cutoff, chunk_posts)
            if not posts:
                break
            _expire_chunk(ctx, posts, retention, report)
            position = (posts[-1][2], posts[-1][0])
            progress.advance(len(posts))
        else:
            report.stopped = True
    return report


def _start(ctx: Context, retention: timedelta, report: ExpireReport) -> tuple[datetime, int]:
    row = ctx.conn.execute(query("retention_position"), {"name": STATE_NAME}).fetchone()
    if row is None:
        return _START
    if int(row[0]) != int(retention.total_seconds()):
        report.restarted = True  # a longer retention lets older posts back in: look again
        return _START
    return row[1], int(row[2])


def _count(ctx: Context, position: tuple[datetime, int], cutoff: datetime | None) -> int:
    params = {"after_created_at": position[0], "after_post_id": position[1], "cutoff": cutoff}
    row = ctx.conn.execute(query("expired_posts_count"), params).fetchone()
    return int(row[0]) if row else 0


def _page(
    ctx: Context, position: tuple[datetime, int], cutoff: datetime | None, limit: int
) -> list[tuple[int, int, datetime]]:
    params = {
        "after_created_at": position[0],
        "after_post_id": position[1],
        "cutoff": cutoff,
        "limit": limit,
    }
    return [
        (int(r[0]), int(r[1]), r[2]) for r in ctx.conn.execute(query("expired_posts_page"), params)
    ]


def _expire_chunk(
    ctx: Context,
    posts: list[tuple[int, int, datetime]],
    retention: timedelta,
    report: ExpireReport,
) -> None:
    post_ids = [post_id for post_id, _, _ in posts]
    report.posts_expired += len(posts)
    report.chunks += 1
    if report.dry_run:
        row = ctx.conn.execute(query("count_post_entries"), {"post_ids": post_ids}).fetchone()
        report.entries_removed += int(row[0]) if row else 0
        return
    write_cache(ctx, _removals(posts), report)
    last_id, _, last_created_at = posts[-1]
    with ctx.conn.transaction():
        removed = ctx.conn.execute(query("delete_post_feed_entries"), {"post_ids": post_ids})
        params: dict[str, Any] = {
            "name": STATE_NAME,
            "retention_seconds": int(retention.total_seconds()),
            "created_at": last_created_at,
            "post_id": last_id,
            "removed": removed.rowcount,
        }
        ctx.conn.execute(query("advance_retention"), params)
    report.entries_removed += removed.rowcount


def _removals(posts: list[tuple[int, int, datetime]]) -> RedisWork:
    """The cache writes that remove these posts from their communities' and members' feeds."""
    deleted: dict[int, list[int]] = defaultdict(list)
    for post_id, community_id, _ in posts:
        deleted[community_id].append(post_id)
    return RedisWork(deleted=deleted)
