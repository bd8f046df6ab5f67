"""Fan-out's cache side: the Redis writes a committed batch calls for, and a stage that
does them on a second connection while PostgreSQL applies the next batch.

A batch's stream range is recorded with its commit (`cache_from_*` in feed_offset_state)
and cleared only once every committed batch's writes are done, so a run that dies with
writes outstanding has them replayed by the next run.
"""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Protocol

from feedctl.cache.client import RedisUnavailable
from feedctl.cache.keys import FeedRef, community_feed, user_feed
from feedctl.context import Context
from feedctl.db.feed_tops import member_pages
from feedctl.db.sql_blocks import query
from feedctl.faults import checkpoint
from feedctl.pipelines.alongside import Alongside, alongside
from feedctl.pipelines.cache import repair_marks
from feedctl.pipelines.cache.writes import (
    CacheReport,
    mark_fenced_out,
    refresh_cached,
    write_entries,
    write_tops,
)
from feedctl.pipelines.fanout.shards import EVERYONE, Shard, holds


class CacheTally(Protocol):
    """The counters the cache side adds to (FanoutReport has them)."""

    redis_failures: int
    feeds_marked_for_repair: int
    feeds_warmed: int
    seconds_cache: float


@dataclasses.dataclass
class RedisWork:
    """Cache writes owed for one committed batch."""

    created: dict[int, list[tuple[int, float]]] = dataclasses.field(
        default_factory=lambda: defaultdict(list)
    )  # community id -> [(post id, score)]
    deleted: dict[int, list[int]] = dataclasses.field(
        default_factory=lambda: defaultdict(list)
    )  # community id -> [post id]
    refresh: set[int] = dataclasses.field(default_factory=set)  # user ids
    # Pulled communities (docs/decisions/0034): only their own cached feed is written;
    # members' feeds merge their posts at read time.
    pulled: set[int] = dataclasses.field(default_factory=set)


class CacheWriter:
    """Writes one batch's cache changes; after the first Redis failure it only marks."""

    def __init__(self, ctx: Context, report: CacheTally) -> None:
        self.ctx = ctx
        self.report = report
        self.redis_down = False
        window = timedelta(days=ctx.settings.active_window_days)
        self.active_since = datetime.now(UTC) - window

    def upsert(self, feeds: list[FeedRef], posts: list[tuple[int, float]]) -> None:
        """Bring the posts' entries of these feeds to PostgreSQL's state (fenced writes:
        the scores are read again after the stamp, so `posts` gives only their ids)."""
        with self._marked_on_failure(feeds, len(feeds) * len(posts)):
            self._require_redis()
            post_ids = [post_id for post_id, _ in posts]
            outcome = write_entries(self.ctx, [(feed, post_ids) for feed in feeds])
            checkpoint("fanout.mid_cache")
            self._fenced_out(outcome.fenced_out)
            self._warm_active(outcome.uncached)

    def _warm_active(self, uncached: list[FeedRef]) -> None:
        """Users active within the window get their whole feed cached; others stay cold."""
        ids = [f.id for f in uncached if f.kind == "user"]
        if not ids or self.ctx.settings.active_window_days == 0:
            return
        params = {"ids": ids, "since": self.active_since}
        active = [row[0] for row in self.ctx.conn.execute(query("active_among"), params)]
        if active:
            warmed = CacheReport()
            write_tops(self.ctx, [user_feed(u) for u in active], warmed, "fan-out warm failed")
            self.report.feeds_warmed += warmed.feeds_written
            self.report.redis_failures += warmed.redis_failures
            self.report.feeds_marked_for_repair += warmed.redis_failures

    def remove(self, feeds: list[FeedRef], post_ids: list[int]) -> None:
        """Remove the posts from these feeds: the same fenced write as `upsert` (a post
        PostgreSQL no longer has in a feed is removed from its cached copy)."""
        with self._marked_on_failure(feeds, len(feeds) * len(post_ids)):
            self._require_redis()
            outcome = write_entries(self.ctx, [(feed, post_ids) for feed in feeds])
            self._fenced_out(outcome.fenced_out)

    def _fenced_out(self, feeds: list[FeedRef]) -> None:
        mark_fenced_out(self.ctx, feeds, self.report, "fan-out write")
        self.report.feeds_marked_for_repair += len(feeds)

    def _require_redis(self) -> None:
        """After the first failed write of a batch the others are not tried: they fail at
        once, so their feeds are marked without waiting on a server that is down."""
        if self.redis_down:
            raise RedisUnavailable("a Redis write of this batch failed already")

    @contextmanager
    def _marked_on_failure(self, feeds: list[FeedRef], entries: int) -> Iterator[None]:
        """The block's Redis writes, through the one failure handler (`entries` counted,
        the feeds marked for repair)."""
        with repair_marks.marked_on_failure(
            self.ctx.conn, feeds, "fan-out write failed", self.report, failures=entries
        ) as write:
            yield
        if write.failed:
            self.redis_down = True
            self.report.feeds_marked_for_repair += len(feeds)


def write_cache(ctx: Context, work: RedisWork, report: CacheTally, shard: Shard = EVERYONE) -> None:
    """Apply one batch's cache writes (Redis failures are counted and marked): of a shard,
    the feeds of its users and of its communities only."""
    writer = CacheWriter(ctx, report)
    for community_id, posts in work.created.items():
        if holds(shard, community_id):
            writer.upsert([community_feed(community_id)], posts)
        if community_id in work.pulled:
            continue
        for users in _members(ctx, community_id, shard):
            writer.upsert([user_feed(u) for u in users], posts)
    for community_id, post_ids in work.deleted.items():
        if holds(shard, community_id):
            writer.remove([community_feed(community_id)], post_ids)
        if community_id in work.pulled:
            # A member's cached feed may still hold a post fanned out before the community
            # was pulled: the page check finds it gone and reads PostgreSQL (and refills).
            continue
        for users in _members(ctx, community_id, shard):
            writer.remove([user_feed(u) for u in users], post_ids)
    if work.refresh:
        refreshed = CacheReport()
        refresh_cached(ctx, [user_feed(u) for u in sorted(work.refresh)], refreshed)
        report.redis_failures += refreshed.redis_failures
        report.feeds_marked_for_repair += refreshed.redis_failures


def _members(ctx: Context, community_id: int, shard: Shard) -> Iterator[list[int]]:
    """A community's members of one shard, in pages."""
    for users in member_pages(ctx.conn, community_id):
        mine = users if shard.count == 1 else [u for u in users if holds(shard, u)]
        if mine:
            yield mine


@dataclasses.dataclass(frozen=True)
class _Committed:
    work: RedisWork
    txid: str  # the position the batch advanced to
    event_id: int


class CacheStage:
    """Writes committed batches to Redis on its own thread and PostgreSQL connection, one
    batch behind the database side; `submit` waits while a batch is still queued, so memory
    holds at most two batches' work."""

    def __init__(self, worker: Alongside[_Committed]) -> None:
        self.worker = worker

    def submit(self, work: RedisWork, txid: str, event_id: int) -> None:
        self.worker.put(_Committed(work, txid, event_id))


@contextmanager
def cache_stage(
    ctx: Context, consumer: str, report: CacheTally, shard: Shard = EVERYONE
) -> Iterator[CacheStage]:
    """A running CacheStage; leaving the block waits for every submitted batch."""
    with ctx.second_connection() as conn:
        own = dataclasses.replace(ctx, conn=conn)

        def write(item: _Committed) -> None:
            started = time.perf_counter()
            write_cache(own, item.work, report, shard)
            params = {"consumer": consumer, "txid": item.txid, "event_id": item.event_id}
            own.conn.execute(query("close_cache_pending_through"), params)
            report.seconds_cache += time.perf_counter() - started

        with alongside(write, depth=1, name="feedctl-fanout-cache") as worker:
            yield CacheStage(worker)
