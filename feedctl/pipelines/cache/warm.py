"""Warming: filling cached feeds from PostgreSQL, and the feeds a warm works on."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from feedctl.cache.client import REDIS_ERRORS
from feedctl.cache.feeds import FENCED_OUT, Stamp
from feedctl.cache.keys import FeedKind, FeedRef
from feedctl.context import Context
from feedctl.db.feed_tops import TextTop, member_pages, text_top_batches
from feedctl.db.owners import require_community
from feedctl.db.sql_blocks import query
from feedctl.faults import checkpoint
from feedctl.pipelines.alongside import Alongside, alongside
from feedctl.pipelines.cache import repair_marks
from feedctl.pipelines.cache.writes import FEEDS_PER_CHUNK, CacheReport, chunked, write_tops
from feedctl.progress import SILENT, Progress, stopping

ENTRY_BUDGET = 250_000  # entries a warm holds in memory at once (a batch of feeds' tops)
WARM_CHUNK = 10_000  # feeds per warm query (read a batch at a time)


def warm(
    ctx: Context,
    kind: FeedKind,
    ids: Iterable[int],
    *,
    force: bool = False,
    dry_run: bool = False,
    progress: Progress = SILENT,
    stop: threading.Event | None = None,
    total: int | None = None,
) -> CacheReport:
    """Fill the cache for these feeds from PostgreSQL; warm feeds are skipped unless forced.

    Each chunk of feeds is one query read through a server-side cursor a batch at a time
    (at most ENTRY_BUDGET entries a batch), and each batch is one pipelined round trip of
    atomic swaps, written on a second thread while the next batch is read: at most three
    batches are in memory, whatever the number of feeds. `total` is how many feeds `ids`
    holds, when the caller knows. A set `stop` ends the run between batches.
    """
    report = CacheReport(dry_run=dry_run)
    progress.phase("warming (feeds)", total)
    with _overlapped_writes(ctx, report, "warm failed") as writes:
        for chunk in chunked(ids, WARM_CHUNK):
            if stopping(stop):
                report.stopped = True
                break
            report.feeds_considered += len(chunk)
            todo = chunk if force else _uncached(ctx, kind, chunk)
            report.feeds_skipped += len(chunk) - len(todo)
            if len(todo) < len(chunk):
                progress.advance(len(chunk) - len(todo))
            if not todo or dry_run:
                if todo:
                    progress.advance(len(todo))
                continue
            batch_size = feeds_per_chunk(ctx.cap)
            # Fenced (docs/decisions/0028): the stamps are taken before PostgreSQL is read.
            feeds = [FeedRef(kind, i) for i in todo]
            with repair_marks.marked_on_failure(ctx.conn, feeds, "warm failed", report) as asked:
                stamps = ctx.cache.stamp([feed.key(ctx.prefix) for feed in feeds])
            if asked.failed:  # Redis is down: the chunk's feeds are marked for repair
                progress.advance(len(todo))
                continue
            stamp_of = dict(zip(todo, stamps, strict=True))
            for batch in text_top_batches(ctx.conn, kind, todo, ctx.cap, batch_size, ctx.retention):
                writes.put([(top, stamp_of[top.feed.id]) for top in batch])
                progress.advance(len(batch))
                if stopping(stop):
                    report.stopped = True  # (maybe after the last batch: no harm)
                    break
    return report


@contextmanager
def _overlapped_writes(
    ctx: Context, report: CacheReport, reason: str
) -> Iterator[Alongside[list[tuple[TextTop, Stamp | None]]]]:
    """Swaps batches of stamped feeds into Redis on a second thread, so that PostgreSQL is
    read while Redis is written. Failed batches are marked for repair (on the caller's
    thread, which owns the connection) when the block ends; feeds fenced out (another
    write reached them after their stamp) are swapped in again, fenced, there too."""
    failed: list[TextTop] = []
    fenced: list[FeedRef] = []

    def write(batch: list[tuple[TextTop, Stamp | None]]) -> None:
        checkpoint("cache.tops_read")
        try:
            results = ctx.cache.swap(
                ((t.feed.key(ctx.prefix), stamp or b"", t.text, t.truncated) for t, stamp in batch),
                with_details=True,
                read_at=batch[0][0].read_at if batch else "",
            )
        except REDIS_ERRORS:
            failed.extend(t for t, _ in batch)
            return
        for (top, _), result in zip(batch, results, strict=True):
            if result == FENCED_OUT:
                fenced.append(top.feed)
            else:
                report.feeds_written += 1
                report.entries_written += top.entries

    try:
        with alongside(write, depth=2, name="feedctl-cache-writes") as worker:
            yield worker
        for start in range(0, len(fenced), FEEDS_PER_CHUNK):
            write_tops(ctx, fenced[start : start + FEEDS_PER_CHUNK], report, reason)
    finally:
        if failed:
            report.redis_failures += len(failed)
            repair_marks.mark_feeds(ctx.conn, [t.feed for t in failed], reason)


def _uncached(ctx: Context, kind: FeedKind, ids: list[int]) -> list[int]:
    present = ctx.cache.exists([FeedRef(kind, i).key(ctx.prefix) for i in ids])
    return [i for i, cached in zip(ids, present, strict=True) if not cached]


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


def all_user_ids(conn: psycopg.Connection[Any], after: int = 0) -> Iterator[int]:
    """Every user id above `after`, in order, paged."""
    return _paged_ids(conn, "user_ids_after", {}, start=after)


def community_members(ctx: Context, community_id: int) -> Targets:
    """A community's members, paged (the community must exist)."""
    require_community(ctx.conn, community_id)
    row = ctx.conn.execute(query("count_members"), {"community_id": community_id}).fetchone()
    ids = (user for page in member_pages(ctx.conn, community_id) for user in page)
    return Targets(ids, int(row[0]) if row else 0)


def warm_community(
    ctx: Context,
    community_id: int,
    *,
    force: bool = False,
    dry_run: bool = False,
    progress: Progress = SILENT,
    stop: threading.Event | None = None,
) -> CacheReport:
    """Warm every member's feed, then the community's own feed (the community must exist)."""
    members = community_members(ctx, community_id)
    report = warm(
        ctx,
        "user",
        members.ids,
        force=force,
        dry_run=dry_run,
        progress=progress,
        stop=stop,
        total=members.total,
    )
    if report.stopped:
        return report
    own = warm(ctx, "community", [community_id], force=force, dry_run=dry_run)
    for field in dataclasses.fields(CacheReport):
        if field.name not in ("dry_run", "stopped"):
            setattr(report, field.name, getattr(report, field.name) + getattr(own, field.name))
    return report
