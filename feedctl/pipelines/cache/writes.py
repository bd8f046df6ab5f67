"""Writing whole feeds from PostgreSQL into Redis, and the counts of a cache job."""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice

from feedctl.cache.feeds import FENCED_OUT, NOT_CACHED, SUPERSEDED, Stamp
from feedctl.cache.keys import KINDS, FeedKind, FeedRef
from feedctl.context import Context
from feedctl.db.feed_tops import current_entries, text_tops
from feedctl.faults import checkpoint
from feedctl.pipelines.cache import repair_marks

FEEDS_PER_CHUNK = 200
FENCE_ATTEMPTS = 8  # a fenced-out write is redone with a new stamp this many times at most
FENCE_BACKOFF_SECONDS = 0.005  # times the attempt: the longest random wait before a retry


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


@dataclasses.dataclass
class Fenced:
    """What fenced writes did, feed by feed (docs/decisions/0028)."""

    written: dict[FeedRef, int] = dataclasses.field(default_factory=dict)  # -> entries
    uncached: list[FeedRef] = dataclasses.field(default_factory=list)  # not cached: left out
    superseded: list[FeedRef] = dataclasses.field(default_factory=list)  # a later swap did it
    fenced_out: list[FeedRef] = dataclasses.field(default_factory=list)  # refused every time


def write_entries(ctx: Context, changes: Sequence[tuple[FeedRef, Sequence[int]]]) -> Fenced:
    """Bring some entries of cached feeds to what PostgreSQL holds now: per (feed, post
    ids), each post upserted with its current score, or removed when it is not in the feed.

    The one way an incremental write reaches Redis: stamp the feeds, read PostgreSQL, write
    with the stamps; a feed another write reached in between is fenced out and done again
    (up to FENCE_ATTEMPTS times). Feeds nobody caches are left out. Redis errors propagate
    (the caller marks the feeds, see `repair_marks.marked_on_failure`).
    """
    outcome = Fenced()
    todo = list(changes)
    for attempt in range(FENCE_ATTEMPTS):
        if not todo:
            break
        _back_off(attempt)
        stamps = ctx.cache.stamp([feed.key(ctx.prefix) for feed, _ in todo], swap=False)
        live = [(f, p, s) for (f, p), s in zip(todo, stamps, strict=True) if s is not None]
        outcome.uncached.extend(f for (f, _), s in zip(todo, stamps, strict=True) if s is None)
        todo = []
        for kind in KINDS:
            stamped = [(f, p, s) for f, p, s in live if f.kind == kind]
            todo.extend(_write_entries_of(ctx, kind, stamped, outcome))
    outcome.fenced_out.extend(feed for feed, _ in todo)
    return outcome


def _write_entries_of(
    ctx: Context,
    kind: FeedKind,
    live: Sequence[tuple[FeedRef, Sequence[int], Stamp]],
    outcome: Fenced,
) -> list[tuple[FeedRef, Sequence[int]]]:
    """One round of `write_entries` for stamped feeds of one kind: read PostgreSQL, write.
    Returns the feeds fenced out, to do again."""
    if not live:
        return []
    feed_ids = {f.id for f, _, _ in live}
    post_ids = {post for _, posts, _ in live for post in posts}
    now = current_entries(ctx.conn, kind, feed_ids, post_ids, ctx.retention)
    found = now.scores
    writes = []
    shared: dict[tuple[tuple[int, float], ...], list[tuple[int, float]]] = {}
    for feed, posts, stamp in live:
        upserts = [(p, found[feed.id, p]) for p in posts if (feed.id, p) in found]
        removals = [p for p in posts if (feed.id, p) not in found]
        # feeds given the same changes share one list (fan-out: most of a community's
        # members), so their script arguments are encoded once
        upserts = shared.setdefault(tuple(upserts), upserts)
        writes.append((feed.key(ctx.prefix), stamp, upserts, removals))
    checkpoint("cache.entries_read")
    results = ctx.cache.apply(writes, details=now.details, read_at=now.read_at)
    todo: list[tuple[FeedRef, Sequence[int]]] = []
    for (feed, posts, _), result in zip(live, results, strict=True):
        if result == FENCED_OUT:
            todo.append((feed, posts))
        elif result == SUPERSEDED:
            outcome.superseded.append(feed)
        elif result == NOT_CACHED:
            outcome.uncached.append(feed)
        else:
            outcome.written[feed] = len(posts)
    return todo


def swap_feeds(ctx: Context, feeds: Sequence[FeedRef], *, only_cached: bool = False) -> Fenced:
    """Swap whole feeds in from PostgreSQL, each atomically, fenced: stamp, read the tops,
    swap with the stamps; feeds fenced out are done again (up to FENCE_ATTEMPTS times).

    With `only_cached`, feeds that are not cached stay uncached. Redis errors propagate.
    """
    outcome = Fenced()
    todo = list(feeds)
    for attempt in range(FENCE_ATTEMPTS):
        if not todo:
            break
        _back_off(attempt)
        stamps = ctx.cache.stamp([f.key(ctx.prefix) for f in todo], only_cached=only_cached)
        outcome.uncached.extend(f for f, s in zip(todo, stamps, strict=True) if s is None)
        live = [(f, s) for f, s in zip(todo, stamps, strict=True) if s is not None]
        todo = []
        for kind in KINDS:
            stamped = [(f, s) for f, s in live if f.kind == kind]
            tops = text_tops(ctx.conn, kind, [f.id for f, _ in stamped], ctx.cap, ctx.retention)
            checkpoint("cache.tops_read")
            results = ctx.cache.swap(
                (
                    (f.key(ctx.prefix), s, t.text, t.truncated)
                    for (f, s), t in zip(stamped, tops, strict=True)
                ),
                only_cached=only_cached,
                with_details=True,
                read_at=tops[0].read_at if tops else "",
            )
            for (feed, _), top, result in zip(stamped, tops, results, strict=True):
                if result == FENCED_OUT:
                    todo.append(feed)
                elif result == SUPERSEDED:
                    outcome.superseded.append(feed)
                elif result == NOT_CACHED:
                    outcome.uncached.append(feed)
                else:
                    outcome.written[feed] = top.entries
    outcome.fenced_out.extend(todo)
    return outcome


def _back_off(attempt: int) -> None:
    """Before a retry, a short random wait: writers fenced out by each other spread out."""
    if attempt:
        time.sleep(random.uniform(0, FENCE_BACKOFF_SECONDS * attempt))


def write_tops(ctx: Context, feeds: Sequence[FeedRef], report: CacheReport, reason: str) -> None:
    """Swap whole feeds into Redis from PostgreSQL (fenced); on a Redis failure, or a feed
    fenced out every time, mark them for repair instead."""
    _swap_counted(ctx, feeds, report, reason, only_cached=False)


def write_cached_tops(
    ctx: Context, feeds: Sequence[FeedRef], report: CacheReport, reason: str
) -> dict[FeedRef, int]:
    """Swap whole feeds into Redis from PostgreSQL where they are cached now (fenced, each
    atomically); uncached ones stay uncached. On a Redis failure mark them for repair.

    Returns the feeds written and their entries.
    """
    return _swap_counted(ctx, feeds, report, reason, only_cached=True)


def _swap_counted(
    ctx: Context, feeds: Sequence[FeedRef], report: CacheReport, reason: str, *, only_cached: bool
) -> dict[FeedRef, int]:
    outcome = Fenced()
    with repair_marks.marked_on_failure(ctx.conn, feeds, reason, report) as write:
        outcome = swap_feeds(ctx, feeds, only_cached=only_cached)
    if write.failed:
        return {}
    mark_fenced_out(ctx, outcome.fenced_out, report, reason)
    report.feeds_written += len(outcome.written) + len(outcome.superseded)
    report.entries_written += sum(outcome.written.values())
    report.feeds_skipped += len(outcome.uncached)
    return {**outcome.written, **dict.fromkeys(outcome.superseded, 0)}


def mark_fenced_out(
    ctx: Context, feeds: Sequence[FeedRef], tally: repair_marks.FailureTally, reason: str
) -> None:
    """Feeds whose fenced write was refused every time: counted as failed and marked for
    repair, like a failed Redis write."""
    if feeds:
        tally.redis_failures += len(feeds)
        repair_marks.mark_feeds(ctx.conn, feeds, f"{reason} (fenced out)")


def refresh_cached(ctx: Context, feeds: Sequence[FeedRef], report: CacheReport) -> None:
    """Re-read from PostgreSQL the feeds that are cached now; leave the others uncached."""
    if not feeds:
        return
    with repair_marks.marked_on_failure(ctx.conn, feeds, "refresh failed", report) as asked:
        present = ctx.cache.exists([f.key(ctx.prefix) for f in feeds])
    if asked.failed:
        return
    cached = [f for f, found in zip(feeds, present, strict=True) if found]
    for start in range(0, len(cached), FEEDS_PER_CHUNK):
        _swap_counted(
            ctx, cached[start : start + FEEDS_PER_CHUNK], report, "refresh failed", only_cached=True
        )
