"""Filling, rebuilding and repairing cached feeds from PostgreSQL."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

import psycopg

from feedctl.cache.client import REDIS_ERRORS
from feedctl.cache.keys import KINDS, FeedKind, FeedRef
from feedctl.context import Context
from feedctl.db.sql_blocks import query
from feedctl.errors import NotFoundError
from feedctl.pipelines import repair_marks
from feedctl.pipelines.feed_source import FeedTop, load_tops, member_pages

Progress = Callable[[int], None]
FEEDS_PER_CHUNK = 200


@dataclasses.dataclass
class CacheReport:
    """Counts of one cache job."""

    feeds_considered: int = 0
    feeds_written: int = 0
    feeds_skipped: int = 0
    entries_written: int = 0
    redis_failures: int = 0
    entries_before: int = 0
    entries_after: int = 0
    dry_run: bool = False


def chunked(ids: Iterable[int], size: int) -> Iterator[list[int]]:
    iterator = iter(ids)
    while chunk := list(islice(iterator, size)):
        yield chunk


def write_tops(ctx: Context, tops: Sequence[FeedTop], report: CacheReport, reason: str) -> None:
    """Swap whole feeds into Redis; on a Redis failure mark them for repair instead."""
    try:
        ctx.cache.replace_many((t.feed.key(ctx.prefix), t.entries, t.truncated) for t in tops)
    except REDIS_ERRORS:
        report.redis_failures += len(tops)
        repair_marks.mark_feeds(ctx.conn, [t.feed for t in tops], reason)
        return
    report.feeds_written += len(tops)
    report.entries_written += sum(len(t.entries) for t in tops)


def refresh_cached(ctx: Context, feeds: Sequence[FeedRef], report: CacheReport) -> None:
    """Re-read from PostgreSQL the feeds that are cached now; leave the others uncached."""
    if not feeds:
        return
    try:
        present = ctx.cache.exists([f.key(ctx.prefix) for f in feeds])
    except REDIS_ERRORS:
        report.redis_failures += len(feeds)
        repair_marks.mark_feeds(ctx.conn, feeds, "refresh failed")
        return
    for kind in KINDS:
        ids = [f.id for f, cached in zip(feeds, present, strict=True) if cached and f.kind == kind]
        for chunk in chunked(ids, FEEDS_PER_CHUNK):
            write_tops(ctx, load_tops(ctx.conn, kind, chunk, ctx.cap), report, "refresh failed")


def warm(
    ctx: Context,
    kind: FeedKind,
    ids: Iterable[int],
    *,
    force: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> CacheReport:
    """Fill the cache for these feeds from PostgreSQL; warm feeds are skipped unless forced."""
    report = CacheReport(dry_run=dry_run)
    for chunk in chunked(ids, FEEDS_PER_CHUNK):
        report.feeds_considered += len(chunk)
        feeds = [FeedRef(kind, i) for i in chunk]
        todo = chunk
        if not force:
            present = ctx.cache.exists([f.key(ctx.prefix) for f in feeds])
            todo = [i for i, cached in zip(chunk, present, strict=True) if not cached]
        report.feeds_skipped += len(chunk) - len(todo)
        if todo and not dry_run:
            write_tops(ctx, load_tops(ctx.conn, kind, todo, ctx.cap), report, "warm failed")
        if progress:
            progress(len(chunk))
    return report


def _paged_ids(
    conn: psycopg.Connection[Any], name: str, params: dict[str, Any], page: int = 5000
) -> Iterator[int]:
    after = 0
    while True:
        rows = conn.execute(query(name), {**params, "after": after, "limit": page}).fetchall()
        if not rows:
            return
        yield from (row[0] for row in rows)
        after = rows[-1][0]


def active_user_ids(ctx: Context, since: timedelta) -> Iterator[int]:
    """Users active within `since`, in id order, paged."""
    cutoff = datetime.now(UTC) - since
    return _paged_ids(ctx.conn, "active_user_ids", {"since": cutoff})


def all_user_ids(conn: psycopg.Connection[Any]) -> Iterator[int]:
    return _paged_ids(conn, "user_ids_after", {})


def community_member_ids(ctx: Context, community_id: int) -> list[int]:
    require_community(ctx.conn, community_id)
    return [user for page in member_pages(ctx.conn, community_id) for user in page]


def require_user(conn: psycopg.Connection[Any], user_id: int) -> None:
    row = conn.execute(query("user_exists"), {"id": user_id}).fetchone()
    if not row or not row[0]:
        raise NotFoundError(f"user {user_id} does not exist")


def require_community(conn: psycopg.Connection[Any], community_id: int) -> None:
    row = conn.execute(query("community_exists"), {"id": community_id}).fetchone()
    if not row or not row[0]:
        raise NotFoundError(f"community {community_id} does not exist")


def existing_users(conn: psycopg.Connection[Any], ids: Sequence[int]) -> list[int]:
    """The ids, in order, after checking every one exists."""
    found = {row[0] for row in conn.execute(query("existing_user_ids"), {"ids": list(ids)})}
    missing = [i for i in ids if i not in found]
    if missing:
        shown = ", ".join(str(i) for i in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise NotFoundError(f"unknown user id(s): {shown}{more}")
    return list(ids)


def rebuild_users(
    ctx: Context,
    ids: Iterable[int],
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> CacheReport:
    """Recompute users' feeds from memberships and posts, truncated to the cap, in
    PostgreSQL (one transaction per chunk, so readers see old or new) and then Redis."""
    report = CacheReport(dry_run=dry_run)
    for chunk in chunked(ids, FEEDS_PER_CHUNK):
        report.feeds_considered += len(chunk)
        with ctx.conn.transaction(force_rollback=dry_run):
            report.entries_before += _count_entries(ctx.conn, chunk)
            ctx.conn.execute(query("delete_user_feeds"), {"ids": chunk})
            ctx.conn.execute(query("rebuild_user_feeds"), {"ids": chunk, "cap": ctx.cap})
            report.entries_after += _count_entries(ctx.conn, chunk)
        if not dry_run:
            write_tops(ctx, load_tops(ctx.conn, "user", chunk, ctx.cap), report, "rebuild failed")
        if progress:
            progress(len(chunk))
    return report


def rebuild_community(
    ctx: Context, community_id: int, *, dry_run: bool = False, progress: Progress | None = None
) -> CacheReport:
    """Rebuild every member's feed and the community's own cached feed."""
    members = community_member_ids(ctx, community_id)
    report = rebuild_users(ctx, members, dry_run=dry_run, progress=progress)
    if not dry_run:
        tops = load_tops(ctx.conn, "community", [community_id], ctx.cap)
        write_tops(ctx, tops, report, "rebuild failed")
    return report


def _count_entries(conn: psycopg.Connection[Any], ids: Sequence[int]) -> int:
    return sum(n for _, n in conn.execute(query("count_user_entries"), {"ids": list(ids)}))


def repair(ctx: Context, *, progress: Progress | None = None) -> CacheReport:
    """Rewrite every feed marked for repair from PostgreSQL, then unmark it.

    A mark set after the repair read PostgreSQL stays, so a miss during repair is not lost.
    """
    report = CacheReport()
    while True:
        marks = repair_marks.marked(ctx.conn, FEEDS_PER_CHUNK)
        if not marks:
            return report
        started = _database_now(ctx.conn)
        failures_before = report.redis_failures
        for kind in KINDS:
            ids = [feed_id for k, feed_id in marks if k == kind]
            if ids:
                report.feeds_considered += len(ids)
                write_tops(ctx, load_tops(ctx.conn, kind, ids, ctx.cap), report, "repair failed")
        if report.redis_failures > failures_before:
            return report
        with ctx.conn.transaction():
            for kind in KINDS:
                ids = [feed_id for k, feed_id in marks if k == kind]
                repair_marks.unmark(ctx.conn, kind, ids, started)
        if progress:
            progress(len(marks))


def _database_now(conn: psycopg.Connection[Any]) -> datetime:
    row = conn.execute(query("database_now")).fetchone()
    assert row is not None
    moment: datetime = row[0]
    return moment
