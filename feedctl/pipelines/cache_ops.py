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
ENTRY_BUDGET = 250_000  # entries a warm holds in memory at once (a chunk of feeds' tops)


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


def write_cached_tops(
    ctx: Context, tops: Sequence[FeedTop], report: CacheReport, reason: str
) -> list[bool]:
    """Swap whole feeds into Redis where they are cached now (each atomically, one round
    trip); uncached ones stay uncached. On a Redis failure mark them for repair instead.

    Returns, feed by feed, whether it was written.
    """
    try:
        keyed = [(t.feed.key(ctx.prefix), t.entries, t.truncated) for t in tops]
        written = ctx.cache.replace_cached_many(keyed)
    except REDIS_ERRORS:
        report.redis_failures += len(tops)
        repair_marks.mark_feeds(ctx.conn, [t.feed for t in tops], reason)
        return [False] * len(tops)
    for top, done in zip(tops, written, strict=True):
        if done:
            report.feeds_written += 1
            report.entries_written += len(top.entries)
        else:
            report.feeds_skipped += 1
    return written


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
    """Fill the cache for these feeds from PostgreSQL; warm feeds are skipped unless forced.

    Feeds go in chunks of at most ENTRY_BUDGET entries (cap + 1 each), so memory does not
    grow with the number of feeds; each chunk is one query and one pipelined round trip of
    atomic swaps.
    """
    report = CacheReport(dry_run=dry_run)
    for chunk in chunked(ids, feeds_per_chunk(ctx.cap)):
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


def feeds_per_chunk(cap: int) -> int:
    """How many feeds' tops fit in the entry budget (between 1 and 1000)."""
    return max(1, min(1000, ENTRY_BUDGET // (cap + 1)))


def _paged_ids(
    conn: psycopg.Connection[Any],
    name: str,
    params: dict[str, Any],
    page: int = 5000,
    start: int = 0,
) -> Iterator[int]:
    after = start
    while True:
        rows = conn.execute(query(name), {**params, "after": after, "limit": page}).fetchall()
        if not rows:
            return
        yield from (row[0] for row in rows)
        after = rows[-1][0]


@dataclasses.dataclass(frozen=True)
class Targets:
    """Feeds to work on: their ids (a lazy, paged iterator) and how many there are."""

    ids: Iterable[int]
    total: int


def active_users(ctx: Context, since: timedelta) -> Targets:
    """Users active within `since`, in id order, paged."""
    cutoff = datetime.now(UTC) - since
    row = ctx.conn.execute(query("count_active_users"), {"since": cutoff}).fetchone()
    ids = _paged_ids(ctx.conn, "active_user_ids", {"since": cutoff})
    return Targets(ids, int(row[0]) if row else 0)


def active_user_ids(ctx: Context, since: timedelta) -> Iterator[int]:
    """Users active within `since`, in id order, paged."""
    cutoff = datetime.now(UTC) - since
    return _paged_ids(ctx.conn, "active_user_ids", {"since": cutoff})


def all_user_ids(conn: psycopg.Connection[Any], after: int = 0) -> Iterator[int]:
    """Every user id above `after`, in order, paged."""
    return _paged_ids(conn, "user_ids_after", {}, start=after)


def community_members(ctx: Context, community_id: int) -> Targets:
    """A community's members, paged (the community must exist)."""
    require_community(ctx.conn, community_id)
    row = ctx.conn.execute(query("count_members"), {"community_id": community_id}).fetchone()
    ids = (user for page in member_pages(ctx.conn, community_id) for user in page)
    return Targets(ids, int(row[0]) if row else 0)


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


def repair(ctx: Context, *, progress: Progress | None = None) -> CacheReport:
    """Rewrite the cached copy of every feed marked for repair from PostgreSQL, then unmark it.

    A marked feed that is not cached has nothing stale to heal (a read or a warm fills it
    from PostgreSQL): it is unmarked and counted as skipped. A mark set after the repair
    read PostgreSQL stays, so a miss during repair is not lost.
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
                tops = load_tops(ctx.conn, kind, ids, ctx.cap)
                write_cached_tops(ctx, tops, report, "repair failed")
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
