"""Rank: rescore the posts whose inputs changed, in PostgreSQL and then in cached feeds.

Rank keys are time-invariant (see feedctl.rank.scoring), so only posts whose counters,
author reputation or heuristic version changed need a new score.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable
from itertools import groupby

import polars as pl

from feedctl.cache.client import REDIS_ERRORS
from feedctl.cache.keys import community_feed, user_feed
from feedctl.context import Context
from feedctl.db.locks import advisory_lock
from feedctl.db.sql_blocks import query
from feedctl.pipelines import repair_marks
from feedctl.pipelines.scores import inputs_frame, store_scores


@dataclasses.dataclass
class RankReport:
    """What one rank run did."""

    heuristic_version: str
    posts_rescored: int = 0
    entries_updated: int = 0
    feeds_touched: int = 0
    redis_failures: int = 0
    chunks: int = 0


Progress = Callable[[RankReport], None]


def run_rank(
    ctx: Context,
    *,
    everything: bool = False,
    include_unscored: bool = False,
    chunk_size: int | None = None,
    progress: Progress | None = None,
) -> RankReport:
    """Rescore changed posts (or `everything`) chunk by chunk, one transaction each.

    Posts never fanned out have no score yet; they are fan-out's to score, unless
    `include_unscored`.
    """
    report = RankReport(heuristic_version=ctx.heuristic.version)
    size = chunk_size or ctx.settings.batch_size
    after = 0
    with advisory_lock(ctx.conn, "feedctl.rank"):
        while True:
            params = {
                "after": after,
                "limit": size,
                "version": ctx.heuristic.version,
                "everything": everything,
                "include_unscored": include_unscored,
            }
            rows = ctx.conn.execute(query("changed_post_inputs"), params).fetchall()
            if not rows:
                return report
            after = rows[-1][0]
            inputs = inputs_frame(rows)
            with ctx.conn.transaction():
                scored, updated = store_scores(ctx.conn, inputs, ctx.heuristic, update_entries=True)
            report.posts_rescored += scored.height
            report.entries_updated += updated
            report.chunks += 1
            _write_cache(ctx, scored, report)
            if progress:
                progress(report)


def _write_cache(ctx: Context, scored: pl.DataFrame, report: RankReport) -> None:
    """Upsert the new scores into every cached feed holding these posts."""
    post_ids = scored["post_id"].to_list()
    by_community: dict[int, list[tuple[int, float]]] = defaultdict(list)
    for post_id, community_id, score in scored.select("post_id", "community_id", "score").rows():
        by_community[community_id].append((post_id, score))
    rows = ctx.conn.execute(query("entries_of_posts"), {"post_ids": post_ids}).fetchall()
    by_user = [
        (user_feed(user_id), [(post_id, score) for _, post_id, score in group])
        for user_id, group in groupby(rows, key=lambda row: row[0])
    ]
    by_feed = [(community_feed(c), posts) for c, posts in by_community.items()] + by_user
    report.feeds_touched += len(by_feed)
    try:
        ctx.cache.upsert((feed.key(ctx.prefix), posts) for feed, posts in by_feed)
    except REDIS_ERRORS:
        report.redis_failures += sum(len(posts) for _, posts in by_feed)
        repair_marks.mark_feeds(ctx.conn, [feed for feed, _ in by_feed], "rank write failed")
