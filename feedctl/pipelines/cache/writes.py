"""Writing whole feeds from PostgreSQL into Redis, and the counts of a cache job."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice

from feedctl.cache.keys import KINDS, FeedRef
from feedctl.context import Context
from feedctl.db.feed_tops import FeedTop, load_tops
from feedctl.pipelines.cache import repair_marks

FEEDS_PER_CHUNK = 200


@dataclasses.dataclass
class CacheReport:
    """Counts of one cache job."""

    feeds_considered: int = 0
    feeds_written: int = 0
    feeds_skipped: int = 0
    entries_written: int = 0
    redis_failures: int = 0
    stopped: bool = False  # a stop request ended the run between chunks
    dry_run: bool = False


def chunked(ids: Iterable[int], size: int) -> Iterator[list[int]]:
    iterator = iter(ids)
    while chunk := list(islice(iterator, size)):
        yield chunk


def write_tops(ctx: Context, tops: Sequence[FeedTop], report: CacheReport, reason: str) -> None:
    """Swap whole feeds into Redis; on a Redis failure mark them for repair instead."""
    with repair_marks.marked_on_failure(ctx.conn, [t.feed for t in tops], reason, report) as write:
        ctx.cache.replace_many((t.feed.key(ctx.prefix), t.entries, t.truncated) for t in tops)
    if write.failed:
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
    written = [False] * len(tops)
    feeds = [t.feed for t in tops]
    with repair_marks.marked_on_failure(ctx.conn, feeds, reason, report) as write:
        keyed = [(t.feed.key(ctx.prefix), t.entries, t.truncated) for t in tops]
        written = ctx.cache.replace_cached_many(keyed)
    if write.failed:
        return written
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
    with repair_marks.marked_on_failure(ctx.conn, feeds, "refresh failed", report) as asked:
        present = ctx.cache.exists([f.key(ctx.prefix) for f in feeds])
    if asked.failed:
        return
    for kind in KINDS:
        ids = [f.id for f, cached in zip(feeds, present, strict=True) if cached and f.kind == kind]
        for chunk in chunked(ids, FEEDS_PER_CHUNK):
            tops = load_tops(ctx.conn, kind, chunk, ctx.cap, ctx.retention)
            write_tops(ctx, tops, report, "refresh failed")
