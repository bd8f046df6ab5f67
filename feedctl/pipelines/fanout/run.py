"""Fan-out: consume feed_events past a consumer's committed position into feeds.

Each batch of events is applied to PostgreSQL and the position advanced in one
transaction; cached feeds in Redis are written after the commit, by a stage that runs one
batch behind on its own connection (feedctl.pipelines.fanout.cache_writes). A Redis write that
fails is counted and its feeds are marked for repair: PostgreSQL stays the truth.

With `shard` i/N (feedctl.pipelines.fanout.shards), the run reads every event but writes only
the feeds of users with user_id mod N = i, under its own position (docs/decisions/0033).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from itertools import groupby
from typing import Any

import polars as pl
import psycopg
import psycopg.errors

from feedctl.context import Context
from feedctl.db.locks import advisory_lock
from feedctl.db.retry import in_transaction_retrying
from feedctl.db.sql_blocks import query
from feedctl.faults import checkpoint
from feedctl.pipelines.fanout.cache_writes import CacheStage, RedisWork, cache_stage, write_cache
from feedctl.pipelines.fanout.shards import (
    EVERYONE,
    Position,
    Shard,
    holds,
    layout_lock,
    position_name,
    shard_params,
)
from feedctl.pipelines.ranking.scores import read_inputs, stage_scores, store_scores
from feedctl.progress import SILENT, Progress
from feedctl.rank.scoring import score_frame

DEFAULT_CONSUMER = "default"
PHASE = "fan-out (events)"
# Entries one batch may write, at most (one post to a larger community is one batch).
ENTRIES_PER_BATCH = 500_000
# A batch that lost a deadlock to another shard (both scoring one post) is retried this often.
DEADLOCK_RETRIES = 5


@dataclasses.dataclass(frozen=True)
class Event:
    id: int
    kind: str
    post_id: int | None
    community_id: int
    user_id: int | None
    txid: str


@dataclasses.dataclass
class FanoutReport:
    """What one fan-out run did."""

    consumer: str = DEFAULT_CONSUMER
    shard: str = "0/1"  # i/N: this run wrote the feeds of users with user_id mod N = i
    events: int = 0
    batches: int = 0
    entries_written: int = 0
    entries_removed: int = 0
    redis_failures: int = 0
    feeds_marked_for_repair: int = 0
    lag_events: int = 0
    lag_seconds: float | None = None
    seconds_database: float = 0.0  # reading events and writing PostgreSQL, commits included
    seconds_cache: float = 0.0  # writing Redis after the commits
    cache_batches_replayed: int = 0  # cache writes redone after a run died before them
    feeds_warmed: int = 0  # uncached feeds of active users, filled from PostgreSQL
    stopped: bool = False  # a stop request ended the run between batches
    batches_retried: int = 0  # batches PostgreSQL aborted (a deadlock: decision 0037), redone
    dry_run: bool = False


def run_fanout(
    ctx: Context,
    *,
    consumer: str = DEFAULT_CONSUMER,
    max_events: int | None = None,
    batch_size: int | None = None,
    dry_run: bool = False,
    progress: Progress = SILENT,
    follow: bool = False,
    poll_interval: float = 1.0,
    stop: threading.Event | None = None,
    shard: Shard = EVERYONE,
    until: Position | None = None,
) -> FanoutReport:
    """Consume events until none are ready (or `max_events`); see the module docstring.

    With `follow`, keep polling every `poll_interval` seconds until `stop` is set; a stop
    takes effect between batches, so the batch under way always finishes. `shard` must
    match the consumer's layout (BadInputError otherwise); `until` reads no event past
    that position (what a reshard uses to bring shards to one position).
    """
    report = FanoutReport(consumer=consumer, shard=str(shard), dry_run=dry_run)
    batch = batch_size or ctx.settings.batch_size
    stop = stop or threading.Event()
    conn = ctx.conn
    base, consumer = consumer, position_name(consumer, shard)
    with (
        layout_lock(conn, base, shard),
        advisory_lock(conn, f"feedctl.fanout:{consumer}"),
        _dry_run_scope(conn, dry_run),
    ):
        conn.execute(query("ensure_consumer"), {"consumer": consumer})
        if not dry_run:
            _replay_pending_cache_writes(ctx, consumer, batch, report, shard)
        _start_phase(conn, consumer, max_events, follow, report, progress)
        with _cache_side(ctx, consumer, report, shard) as stage:
            while max_events is None or report.events < max_events:
                if stop.is_set():
                    report.stopped = True
                    break
                limit = batch if max_events is None else min(batch, max_events - report.events)
                events = report.events
                committed = _run_batch(ctx, consumer, limit, report, shard, until)
                if committed is not None:
                    if stage is not None:
                        stage.submit(*committed)
                    progress.advance(report.events - events)
                    progress.status(_status(report))
                    continue
                if not follow or until is not None:
                    break
                _measure_lag(conn, consumer, report)
                progress.advance(0)  # idle: nothing done, but a guard may check its time
                progress.status(_status(report))
                stop.wait(poll_interval)
        _measure_lag(conn, consumer, report)
    return report


def _start_phase(
    conn: psycopg.Connection[Any],
    consumer: str,
    max_events: int | None,
    follow: bool,
    report: FanoutReport,
    progress: Progress,
) -> None:
    """Start the progress phase, with the backlog as its total unless following."""
    if follow:
        progress.phase(PHASE, None)
        return
    _measure_lag(conn, consumer, report)
    backlog = report.lag_events
    progress.phase(PHASE, backlog if max_events is None else min(backlog, max_events))


def _status(report: FanoutReport) -> str:
    rate = report.entries_written / max(report.seconds_database, 1e-9)
    return f"{rate:,.0f} entries/s, lag {report.lag_events} events"


@contextlib.contextmanager
def _cache_side(
    ctx: Context, consumer: str, report: FanoutReport, shard: Shard
) -> Iterator[CacheStage | None]:
    """The stage that writes Redis alongside; none in a dry run (nothing is written)."""
    if report.dry_run:
        yield None
        return
    with cache_stage(ctx, consumer, report, shard) as stage:
        yield stage


def measure_lag(
    ctx: Context, consumer: str = DEFAULT_CONSUMER, shard: Shard = EVERYONE
) -> tuple[int, float]:
    """Events a consumer (or one shard of it) has still to read, and the age in seconds of
    the oldest."""
    consumer = position_name(consumer, shard)
    report = FanoutReport(consumer=consumer)
    ctx.conn.execute(query("ensure_consumer"), {"consumer": consumer})
    _measure_lag(ctx.conn, consumer, report)
    return report.lag_events, report.lag_seconds or 0.0


def _run_batch(
    ctx: Context,
    consumer: str,
    limit: int,
    report: FanoutReport,
    shard: Shard,
    until: Position | None,
) -> tuple[RedisWork, str, int] | None:
    """One batch in one PostgreSQL transaction; returns the cache work it calls for and
    the position it committed, or None when no event was ready. A batch PostgreSQL aborted
    (a deadlock with another shard or another writer; it wrote nothing then) is run again
    by feedctl.db.retry, counted in `batches_retried`."""
    started = time.perf_counter()
    written, removed = report.entries_written, report.entries_removed

    def retried() -> None:
        report.entries_written, report.entries_removed = written, removed
        report.batches_retried += 1

    done = in_transaction_retrying(
        ctx.conn,
        lambda: _batch(ctx, consumer, limit, report, shard, until),
        what="fan-out batch",
        on_retry=retried,
        attempts=DEADLOCK_RETRIES + 1,
    )
    if done is None:
        return None
    events, work = done
    checkpoint("fanout.after_commit")
    report.seconds_database += time.perf_counter() - started
    report.events += len(events)
    report.batches += 1
    return work, events[-1].txid, events[-1].id


def _batch(
    ctx: Context,
    consumer: str,
    limit: int,
    report: FanoutReport,
    shard: Shard,
    until: Position | None,
) -> tuple[list[Event], RedisWork] | None:
    """The statements of one batch, inside its transaction."""
    conn = ctx.conn
    position = _position(conn, consumer)
    params: dict[str, Any] = {"txid": position[0], "event_id": position[1]}
    if until is None:
        events = _read_events(conn, "next_events", params, limit)
    else:
        bound = {"until_txid": str(until.txid), "until_event_id": until.event_id}
        events = _read_events(conn, "next_events_through", {**params, **bound}, limit)
    if not events:
        return None
    events = _bounded(conn, events, ctx.cap, ctx.settings.pull_threshold)
    checkpoint("fanout.after_read")
    work = apply_events(ctx, events, report, shard)
    checkpoint("fanout.after_write")
    _advance(conn, consumer, events)
    if not report.dry_run:
        params = {"consumer": consumer, "txid": position[0], "event_id": position[1]}
        conn.execute(query("open_cache_pending"), params)
    return events, work


def _replay_pending_cache_writes(
    ctx: Context, consumer: str, batch: int, report: FanoutReport, shard: Shard
) -> None:
    """Redo the cache writes of batches committed by a run that died before writing Redis.

    Every cache write is idempotent, so writing some of them twice is harmless.
    """
    row = ctx.conn.execute(query("cache_pending_range"), {"consumer": consumer}).fetchone()
    if row is None:
        return
    bounds = {"last_txid": str(row[2]), "last_event_id": row[3]}
    after = (str(row[0]), row[1])
    while True:
        params = {"txid": after[0], "event_id": after[1], **bounds}
        events = _read_events(ctx.conn, "events_in_range", params, batch)
        if not events:
            break
        write_cache(ctx, _work_of(ctx, events, shard), report, shard)
        after = (events[-1].txid, events[-1].id)
    ctx.conn.execute(query("close_cache_pending"), {"consumer": consumer})
    report.cache_batches_replayed += 1


def _work_of(ctx: Context, events: list[Event], shard: Shard) -> RedisWork:
    """The cache writes that committed events call for, from PostgreSQL as it is now."""
    work = RedisWork()
    created = [e.post_id for e in events if e.kind == "post_created" and e.post_id is not None]
    params = {"post_ids": created, "since": ctx.retained_since()}
    rows = ctx.conn.execute(query("post_scores"), params).fetchall()
    for post_id, community_id, score in rows:
        work.created[community_id].append((post_id, score))
    for event in events:
        if event.kind == "post_deleted" and event.post_id is not None:
            work.deleted[event.community_id].append(event.post_id)
        elif event.kind in ("member_joined", "member_left") and event.user_id is not None:
            work.refresh.add(event.user_id)
    if shard.count > 1:
        work.refresh = {u for u in work.refresh if holds(shard, u)}
    work.pulled = _pulled(ctx, sorted({*work.created, *work.deleted}), switch=False)
    return work


@contextlib.contextmanager
def _dry_run_scope(conn: psycopg.Connection[Any], dry_run: bool) -> Iterator[None]:
    """In a dry run, everything happens inside one transaction that is rolled back."""
    if not dry_run:
        yield
        return
    with conn.transaction(force_rollback=True):
        yield


def _bounded(
    conn: psycopg.Connection[Any], events: list[Event], cap: int, pull_threshold: int
) -> list[Event]:
    """The longest head of `events` whose estimated entries stay within ENTRIES_PER_BATCH
    (at least one event), so that a transaction's size does not grow with communities."""
    communities = sorted({e.community_id for e in events if e.kind == "post_created"})
    sizes = dict(conn.execute(query("community_sizes"), {"ids": communities}).fetchall())
    pulled = {c for c, size in sizes.items() if size > pull_threshold}  # no entries written
    total = 0
    for index, event in enumerate(events):
        if event.kind != "post_created":
            total += cap
        elif event.community_id not in pulled:
            total += sizes.get(event.community_id, 0)
        if total > ENTRIES_PER_BATCH and index > 0:
            return events[:index]
    return events


def _position(conn: psycopg.Connection[Any], consumer: str) -> tuple[str, int]:
    row = conn.execute(query("consumer_position"), {"consumer": consumer}).fetchone()
    assert row is not None
    return str(row[0]), int(row[1])


def _read_events(
    conn: psycopg.Connection[Any], name: str, params: dict[str, Any], limit: int
) -> list[Event]:
    rows = conn.execute(query(name), {**params, "limit": limit}).fetchall()
    return [Event(r[0], r[1], r[2], r[3], r[4], str(r[5])) for r in rows]


def _advance(conn: psycopg.Connection[Any], consumer: str, events: list[Event]) -> None:
    last = events[-1]
    conn.execute(
        query("advance_consumer"),
        {"consumer": consumer, "txid": last.txid, "event_id": last.id, "events": len(events)},
    )


def apply_events(
    ctx: Context, events: list[Event], report: FanoutReport, shard: Shard = EVERYONE
) -> RedisWork:
    """Apply events in order, consecutive events of one kind as one set-based statement.

    Posts created before the retention cutoff (taken once, by the transaction's clock) are
    scored but written into no feed: a feed keeps only what `feed_retention` allows.
    """
    work = RedisWork()
    since = ctx.retained_since()
    lock_rows(ctx.conn, events, shard)
    for kind, run in groupby(events, key=lambda e: e.kind):
        _APPLIERS[kind](ctx, list(run), report, work, since, shard)
    return work


def lock_rows(conn: psycopg.Connection[Any], events: list[Event], shard: Shard) -> None:
    """Lock every existing row the batch may change, in the order every writer keeps
    (decision 0037): post_score rows in post order, then the shard's feed entries in
    (user_id, post_id) order, each by one statement. The events' statements then only
    write rows this transaction holds already or rows no other transaction can see (new
    entries), so they never wait on a rank or backfill in an order of their own (events
    run in stream order: users and posts come in any order).

    The post_score rows are those the batch deletes, and, unsharded, those it rescores
    (a shard only adds scores no post has yet, so shards do not queue on each other's)."""
    rescored = _POST_KINDS if shard.count == 1 else frozenset({"post_deleted"})
    scores = sorted({e.post_id for e in events if e.post_id is not None and e.kind in rescored})
    posts = sorted({e.post_id for e in events if e.post_id is not None and e.kind in _POST_KINDS})
    pairs = sorted(
        {
            (e.user_id, e.community_id)
            for e in events
            if e.user_id is not None and e.kind in _MEMBER_KINDS and holds(shard, e.user_id)
        }
    )
    if scores:
        conn.execute(query("fanout_lock_post_scores"), {"post_ids": scores})
    if posts or pairs:
        params = {
            "post_ids": posts,
            "user_ids": [user for user, _ in pairs],
            "community_ids": [community for _, community in pairs],
            **shard_params(shard),
        }
        conn.execute(query("fanout_lock_entries"), params)


_POST_KINDS = frozenset({"post_created", "post_deleted"})
_MEMBER_KINDS = frozenset({"member_joined", "member_left"})


def _apply_created(
    ctx: Context,
    run: list[Event],
    report: FanoutReport,
    work: RedisWork,
    since: datetime | None,
    shard: Shard,
) -> None:
    post_ids = sorted({e.post_id for e in run if e.post_id is not None})
    seen = {row[0] for row in ctx.conn.execute(query("scored_post_ids"), {"post_ids": post_ids})}
    if shard.count > 1:
        _score_unscored(ctx, [p for p in post_ids if p not in seen])
        params = {"post_ids": post_ids, "since": since}
        scores = ctx.conn.execute(query("post_scores"), params).fetchall()
    else:
        inputs = read_inputs(ctx.conn, post_ids)
        scored, _ = store_scores(ctx.conn, inputs, ctx.heuristic, update_entries=False)
        if since is not None:
            scored = scored.filter(pl.col("created_at") >= since.astimezone(UTC))
        scores = scored.select("post_id", "community_id", "score").rows()
    if not scores:
        return
    pulled = _pulled(ctx, sorted({community_id for _, community_id, _ in scores}), switch=True)
    work.pulled |= pulled
    fanned = {post_id for post_id, community_id, _ in scores if community_id not in pulled}
    new = [p for p in post_ids if p not in seen and p in fanned]
    old = [p for p in sorted(seen) if p in fanned]
    report.entries_written += _insert_entries(ctx.conn, new, since, shard)
    report.entries_written += _insert_entries(ctx.conn, old, since, shard, may_exist=True)
    for post_id, community_id, score in scores:
        work.created[community_id].append((post_id, score))


def _pulled(ctx: Context, communities: list[int], *, switch: bool) -> set[int]:
    """Which of these communities are pulled; with `switch`, those with more members than
    `pull_threshold` become pulled first (in this transaction, docs/decisions/0034)."""
    if not communities:
        return set()
    if switch:
        params = {"ids": communities, "threshold": ctx.settings.pull_threshold}
        rows = ctx.conn.execute(query("pull_new_communities"), params).fetchall()
    else:
        rows = ctx.conn.execute(query("pulled_among"), {"ids": communities}).fetchall()
    return {int(row[0]) for row in rows}


def _score_unscored(ctx: Context, post_ids: list[int]) -> None:
    """A shard scores only posts with no score yet, and keeps a score another shard stored
    first: rescoring a post would leave the other shards' entries with the old score, and
    `rank` (which finds changed inputs by the stored ones) would never revisit them."""
    scored = score_frame(read_inputs(ctx.conn, post_ids).sort("post_id"), ctx.heuristic)
    if scored.is_empty():
        return
    stage_scores(ctx.conn, scored)
    ctx.conn.execute(query("insert_new_post_scores"), {"version": ctx.heuristic.version})


def _insert_entries(
    conn: psycopg.Connection[Any],
    post_ids: list[int],
    since: datetime | None,
    shard: Shard,
    *,
    may_exist: bool = False,
) -> int:
    """Entries for every member (of the shard); a post never scored before cannot have any
    yet, so its rows skip the conflict check (if one exists after all, the batch falls back
    to it)."""
    if not post_ids:
        return 0
    conn.execute(query("raise_work_mem"))
    params = {"post_ids": post_ids, "since": since, **shard_params(shard)}
    if may_exist:
        return conn.execute(query("fan_out_posts"), params).rowcount
    try:
        with conn.transaction():
            return conn.execute(query("fan_out_new_posts"), params).rowcount
    except psycopg.errors.UniqueViolation:
        return conn.execute(query("fan_out_posts"), params).rowcount


def _apply_deleted(
    ctx: Context,
    run: list[Event],
    report: FanoutReport,
    work: RedisWork,
    since: datetime | None,
    shard: Shard,
) -> None:
    post_ids = sorted({e.post_id for e in run if e.post_id is not None})
    params = {"post_ids": post_ids, **shard_params(shard)}
    row = ctx.conn.execute(query("delete_post_entries"), params).fetchone()
    report.entries_removed += int(row[0]) if row else 0
    for event in run:
        if event.post_id is not None:
            work.deleted[event.community_id].append(event.post_id)


def _apply_joined(
    ctx: Context,
    run: list[Event],
    report: FanoutReport,
    work: RedisWork,
    since: datetime | None,
    shard: Shard,
) -> None:
    for event in run:
        if event.user_id is None or not holds(shard, event.user_id):
            continue
        params = {"user_id": event.user_id, "community_id": event.community_id, "since": since}
        report.entries_written += ctx.conn.execute(
            query("merge_community_into_feed"), params
        ).rowcount
        work.refresh.add(event.user_id)


def _apply_left(
    ctx: Context,
    run: list[Event],
    report: FanoutReport,
    work: RedisWork,
    since: datetime | None,
    shard: Shard,
) -> None:
    for event in run:
        if event.user_id is None or not holds(shard, event.user_id):
            continue
        params = {"user_id": event.user_id, "community_id": event.community_id}
        report.entries_removed += ctx.conn.execute(
            query("remove_community_from_feed"), params
        ).rowcount
        work.refresh.add(event.user_id)


Applier = Callable[[Context, list[Event], FanoutReport, RedisWork, datetime | None, Shard], None]
_APPLIERS: dict[str, Applier] = {
    "post_created": _apply_created,
    "post_deleted": _apply_deleted,
    "member_joined": _apply_joined,
    "member_left": _apply_left,
}


def _measure_lag(conn: psycopg.Connection[Any], consumer: str, report: FanoutReport) -> None:
    row = conn.execute(query("consumer_lag"), {"consumer": consumer}).fetchone()
    if row:
        report.lag_events = int(row[0])
        report.lag_seconds = float(row[1]) if row[1] is not None else 0.0
