"""New scores of some posts into every cached feed that holds them (after a rank commit).

Rising scores go through the cache's Lua upsert, which keeps a truncated feed its exact
top `cap`. A falling post can drop below the lowest cached member and leave a truncated
feed one short: such feeds are found (sentinel `t` and fewer than `cap` members) and
rewritten from PostgreSQL, so every cached feed ends equal to the top `cap` of its feed.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Sequence
from itertools import groupby
from operator import itemgetter

from feedctl.cache.client import RedisUnavailable
from feedctl.cache.feeds import TRUNCATED
from feedctl.cache.keys import FeedRef, community_feed, user_feed
from feedctl.context import Context
from feedctl.db.sql_blocks import query
from feedctl.pipelines.cache import repair_marks
from feedctl.pipelines.cache.writes import (
    FEEDS_PER_CHUNK,
    CacheReport,
    mark_fenced_out,
    write_entries,
    write_tops,
)

UPSERT_BATCH = 5_000  # entries per pipelined round of upserts
CHECK_BATCH = 1_000  # feeds per pipelined round of shrink checks
FETCH_ROWS = 5_000  # entries per fetch from PostgreSQL
Entries = list[tuple[int, float]]


@dataclasses.dataclass
class CacheWrites:
    """What writing new scores into cached feeds did."""

    feeds_touched: int = 0  # feeds holding the posts (cached or not)
    feeds_cached: int = 0  # of those, cached: the upserts went to them
    feeds_refreshed: int = 0  # truncated feeds a falling post left short, rewritten
    redis_failures: int = 0  # entries whose write failed
    feeds_marked_for_repair: int = 0


class _Writer:
    """Upserts in pipelined rounds; after the first Redis failure it only collects."""

    def __init__(self, ctx: Context, writes: CacheWrites) -> None:
        self.ctx = ctx
        self.writes = writes
        self.failed: list[FeedRef] = []
        self.watched: dict[FeedRef, None] = {}  # an ordered set

    def upsert(self, feeds: Sequence[tuple[FeedRef, Entries]]) -> None:
        """Bring these entries of the cached feeds to PostgreSQL's state (fenced writes,
        `write_entries`: the scores are read again after the stamp)."""
        if not feeds:
            return
        self.writes.feeds_touched += len(feeds)
        entries = sum(len(entries) for _, entries in feeds)
        refs = [feed for feed, _ in feeds]
        with repair_marks.marked_on_failure(
            self.ctx.conn, refs, "rank write failed", self.writes, failures=entries
        ) as write:
            if self.failed:  # a write of this run failed already: do not wait on Redis again
                raise RedisUnavailable("a Redis write of this rank run failed already")
            changes = [(feed, [post_id for post_id, _ in entries]) for feed, entries in feeds]
            outcome = write_entries(self.ctx, changes)
            self.writes.feeds_cached += len(outcome.written)
            mark_fenced_out(self.ctx, outcome.fenced_out, self.writes, "rank write")
            self.writes.feeds_marked_for_repair += len(outcome.fenced_out)
        if write.failed:
            self.failed.extend(refs)
            self.writes.feeds_marked_for_repair += len(refs)

    def finish(self) -> None:
        """Rewrite watched feeds that a falling post left short (unless a write failed: the
        failed feeds are marked for repair already)."""
        if self.failed:
            return
        watched = list(self.watched)
        short: list[FeedRef] = []
        with repair_marks.marked_on_failure(
            self.ctx.conn, watched, "rank write failed", self.writes
        ) as asked:
            short = list(self._short_feeds(watched))
        if asked.failed:
            self.writes.feeds_marked_for_repair += len(watched)
            return
        report = CacheReport()
        for start in range(0, len(short), FEEDS_PER_CHUNK):
            write_tops(
                self.ctx, short[start : start + FEEDS_PER_CHUNK], report, "rank refresh failed"
            )
        self.writes.feeds_refreshed += report.feeds_written
        self.writes.redis_failures += report.redis_failures
        self.writes.feeds_marked_for_repair += report.redis_failures

    def _short_feeds(self, feeds: Sequence[FeedRef]) -> Iterable[FeedRef]:
        for start in range(0, len(feeds), CHECK_BATCH):
            batch = feeds[start : start + CHECK_BATCH]
            with self.ctx.redis.pipeline(transaction=False) as pipe:
                for feed in batch:
                    key = feed.key(self.ctx.prefix)
                    pipe.zrange(key, 0, 0)
                    pipe.zcard(key)
                results = pipe.execute()
            for index, feed in enumerate(batch):
                head, size = results[2 * index], int(results[2 * index + 1])
                if head == [TRUNCATED] and size - 1 < self.ctx.cap:
                    yield feed


def write_scores(
    ctx: Context, post_ids: Sequence[int], falling: Collection[int], *, replay: bool
) -> CacheWrites:
    """Write the stored scores of `post_ids` into the cached feeds holding them.

    The user feeds' entries are those the chunk just changed (kept by its UPDATE), or with
    `replay` (a killed run's leftovers) every entry of the posts. `falling` are the posts
    whose score went down (or may have): feeds holding them are checked afterwards and
    rewritten if they were left short.
    """
    writes = CacheWrites()
    writer = _Writer(ctx, writes)
    by_community: dict[int, Entries] = defaultdict(list)
    rows = ctx.conn.execute(query("rank_scores_of_posts"), {"post_ids": list(post_ids)})
    for post_id, community_id, score in rows.fetchall():
        by_community[community_id].append((post_id, score))
        if post_id in falling:
            writer.watched[community_feed(community_id)] = None
    writer.upsert([(community_feed(c), entries) for c, entries in by_community.items()])
    batch: list[tuple[FeedRef, Entries]] = []
    size = 0
    entries_by_user = _entries_by_user(ctx, post_ids, replay=replay)
    for user_id, group in groupby(entries_by_user, key=itemgetter(0)):
        entries = [(post_id, score) for _, post_id, score in group]
        feed = user_feed(user_id)
        batch.append((feed, entries))
        size += len(entries)
        if falling and any(post_id in falling for post_id, _ in entries):
            writer.watched[feed] = None
        if size >= UPSERT_BATCH:
            writer.upsert(batch)
            batch, size = [], 0
    writer.upsert(batch)
    writer.finish()
    return writes


def _entries_by_user(
    ctx: Context, post_ids: Sequence[int], *, replay: bool
) -> Iterator[tuple[int, int, float]]:
    """Entries ordered by user, fetched in pages through a server-side cursor (memory
    stays one page, whatever the audience)."""
    name = "rank_entries_of_posts" if replay else "rank_touched_by_user"
    with ctx.conn.transaction():
        ctx.conn.execute(query("rank_prefer_indexes"))
        with ctx.conn.cursor(name="rank_cache_entries") as cursor:
            cursor.itersize = FETCH_ROWS
            cursor.execute(query(name), {"post_ids": list(post_ids)})
            yield from cursor
