"""Nightly rank: rescore the posts whose inputs changed, in PostgreSQL and then in caches.

Rank keys are time-invariant (see feedctl.rank.scoring), so time passing changes nothing:
only posts whose counters, author reputation or heuristic version differ from those their
stored score came from are rescored. The cost follows the changed posts and their
audiences: finding them reads `posts` and `post_score` (one row per post), and each
changed post's feed entries are reached through the post index.

Each chunk of posts commits its scores (post_score and feed_entry) together with a note
of the posts whose cached feeds still need the new scores; the note is cleared once Redis
has them, and a run killed in between has them written by the next run.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC
from typing import Any

import polars as pl
import psycopg

from feedctl.context import Context
from feedctl.db.locks import advisory_lock
from feedctl.db.retry import in_transaction_retrying
from feedctl.db.sql_blocks import query
from feedctl.errors import BadInputError, FeedctlError, LockedError
from feedctl.faults import checkpoint
from feedctl.pipelines.ranking import cache_writes as rank_cache
from feedctl.pipelines.ranking import versions as heuristic_versions
from feedctl.pipelines.ranking.scores import INPUT_SCHEMA, stage_scores
from feedctl.progress import SILENT, Progress, stopping
from feedctl.rank.heuristic import Heuristic
from feedctl.rank.scoring import score_frame

RANK_LOCK = "feedctl.rank"  # nightly rank holds it alone; backfill shards share it
CHANGED_SCHEMA = pl.Schema({**INPUT_SCHEMA, "old_score": pl.Float64()})
PENDING_PAGE = 1_000


@dataclasses.dataclass
class RankReport:
    """What one rank run did."""

    heuristic_version: str
    posts_rescored: int = 0
    posts_fallen: int = 0  # rescored posts whose score went down
    entries_updated: int = 0
    feeds_touched: int = 0  # feeds holding rescored posts
    feeds_cached: int = 0  # of those, cached: the new scores were written to them
    feeds_refreshed: int = 0  # truncated cached feeds a falling post left short, rewritten
    redis_failures: int = 0
    feeds_marked_for_repair: int = 0
    posts_replayed: int = 0  # cache writes redone for a run that died before them
    transactions_retried: int = 0  # chunks PostgreSQL aborted (deadlock, serialization), redone
    chunks: int = 0
    stopped: bool = False  # a signal stopped the run between chunks
    seconds: float = 0.0
    seconds_database: float = 0.0
    seconds_cache: float = 0.0


@contextmanager
def rank_lock(ctx: Context) -> Iterator[None]:
    """The nightly run's lock: no other rank run and no backfill shard at the same time."""
    try:
        with advisory_lock(ctx.conn, RANK_LOCK):
            yield
    except LockedError:
        raise LockedError(
            "another `feedctl rank` run or a backfill shard is running (lock 'feedctl.rank')"
        ) from None


def run_rank(
    ctx: Context,
    *,
    everything: bool = False,
    include_unscored: bool = False,
    chunk_size: int | None = None,
    progress: Progress = SILENT,
    stop: threading.Event | None = None,
) -> RankReport:
    """Rescore changed posts (or `everything`) chunk by chunk, one transaction each.

    Posts never fanned out have no score yet; they are fan-out's to score, unless
    `include_unscored`. A set `stop` ends the run after the chunk under way.
    """
    started = time.perf_counter()
    report = RankReport(heuristic_version=ctx.heuristic.version)
    size = chunk_size or ctx.settings.batch_size
    with rank_lock(ctx):
        require_current(ctx.conn, ctx.heuristic)
        require_no_backfill_in_posts(ctx.conn)
        _replay_pending(ctx, report)
        after = -(2**63)
        progress.phase("rank (posts)", None)
        while True:
            if stopping(stop):
                report.stopped = True
                break
            params = {
                "after": after,
                "limit": size,
                "version": ctx.heuristic.version,
                "everything": everything,
                "include_unscored": include_unscored,
            }
            rows = ctx.conn.execute(query("rank_changed_posts"), params).fetchall()
            if not rows:
                break
            after = rows[-1][0]
            rescored = report.posts_rescored
            _rescore_chunk(ctx, pl.DataFrame(rows, schema=CHANGED_SCHEMA, orient="row"), report)
            progress.advance(report.posts_rescored - rescored)
            progress.status(f"{report.entries_updated:,} entries updated")
    report.seconds = time.perf_counter() - started
    return report


def require_current(conn: psycopg.Connection[Any], heuristic: Heuristic) -> None:
    """The run's heuristic must be the one the stored scores follow (the first run adopts).

    Changing versions is a backfill's job: a nightly run under an old version would
    quietly rescore every post back to it.
    """
    found = heuristic_versions.current(conn)
    if found is None:
        heuristic_versions.adopt(conn, heuristic)
        return
    if found.heuristic.version == heuristic.version:
        heuristic_versions.record(conn, heuristic)  # same name: the same coefficients?
    else:
        raise BadInputError(
            f"stored scores follow heuristic {found.heuristic.version!r} (adopted "
            f"{found.adopted_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC) but this run uses "
            f"{heuristic.version!r}: "
            f"point `heuristic` at the {found.heuristic.version!r} file, or change versions with "
            "`feedctl rank backfill --heuristic FILE`"
        )


def require_no_backfill_in_posts(conn: psycopg.Connection[Any]) -> None:
    """A backfill that has not finished rescoring post_score leaves mixed versions there."""
    with conn.transaction():
        row = conn.execute(query("backfill_unfinished")).fetchone()
    if row is not None and not row[4]:
        raise FeedctlError(
            f"backfill #{row[0]} towards heuristic {row[1]!r} has not finished rescoring posts: "
            "finish it with `feedctl rank backfill --resume` before the nightly rank runs"
        )


def _rescore_chunk(ctx: Context, inputs: pl.DataFrame, report: RankReport) -> None:
    started = time.perf_counter()
    scored = score_frame(inputs, ctx.heuristic)
    post_ids = scored["post_id"].to_list()
    falling = set(
        scored.filter(pl.col("old_score").is_not_null() & (pl.col("score") < pl.col("old_score")))[
            "post_id"
        ].to_list()
    )

    def retried() -> None:
        report.transactions_retried += 1

    updated = in_transaction_retrying(
        ctx.conn,
        lambda: store_chunk(ctx.conn, scored, ctx.heuristic.version),
        what="rank chunk",
        on_retry=retried,
    )
    checkpoint("rank.after_commit")
    committed = time.perf_counter()
    report.seconds_database += committed - started
    report.posts_rescored += scored.height
    report.posts_fallen += len(falling)
    report.entries_updated += updated
    report.chunks += 1
    _write_cache(ctx, post_ids, falling, report, replay=False)
    report.seconds_cache += time.perf_counter() - committed


def store_chunk(conn: psycopg.Connection[Any], scored: pl.DataFrame, version: str) -> int:
    """One chunk's scores into post_score and feed_entry, with its cache note; returns the
    feed entries updated. Runs inside the caller's transaction.

    Row locks follow the order every writer of feed_entry keeps (decision 0037): the
    chunk's post_score rows in post order, then its feed entries in (user_id, post_id)
    order, taken by one statement before the update.
    """
    conn.execute(query("rank_touched_create"))
    conn.execute(query("rank_touched_clear"))
    stage_scores(conn, scored)
    conn.execute(query("analyze_score_stage"))
    conn.execute(query("upsert_post_scores"), {"version": version})
    conn.execute(query("rank_prefer_indexes"))
    updated: int = conn.execute(query("rank_update_entry_scores")).rowcount
    conn.execute(query("rank_cache_pending_mark"), {"post_ids": scored["post_id"].to_list()})
    checkpoint("rank.before_commit")
    return updated


def _write_cache(
    ctx: Context, post_ids: Sequence[int], falling: set[int], report: RankReport, *, replay: bool
) -> None:
    writes = rank_cache.write_scores(ctx, post_ids, falling, replay=replay)
    report.feeds_touched += writes.feeds_touched
    report.feeds_cached += writes.feeds_cached
    report.feeds_refreshed += writes.feeds_refreshed
    report.redis_failures += writes.redis_failures
    report.feeds_marked_for_repair += writes.feeds_marked_for_repair
    ctx.conn.execute(query("rank_cache_pending_clear"), {"post_ids": list(post_ids)})


def _replay_pending(ctx: Context, report: RankReport) -> None:
    """Write the scores a killed run committed but never put into the cached feeds.

    Every write is idempotent; any of these posts may have fallen, so all are checked.
    """
    after = -(2**63)
    while True:
        rows = ctx.conn.execute(
            query("rank_cache_pending_page"), {"after": after, "limit": PENDING_PAGE}
        ).fetchall()
        if not rows:
            return
        post_ids = [row[0] for row in rows]
        _write_cache(ctx, post_ids, set(post_ids), report, replay=True)
        report.posts_replayed += len(post_ids)
        after = post_ids[-1]
