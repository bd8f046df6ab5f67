"""Fan-out: consume feed_events past a consumer's committed position into feeds.

Each batch of events is applied to PostgreSQL and the position advanced in one
transaction; cached feeds in Redis are written after the commit, by a stage that runs one
batch behind on its own connection (feedctl.pipelines.fanout.cache_writes). A Redis write that
fails is counted and its feeds are marked for repair: PostgreSQL stays the truth.
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
from feedctl.pipelines.ranking.scores import read_inputs, store_scores
from feedctl.progress import SILENT, Progress

DEFAULT_CONSUMER = "default"
PHASE = "fan-out (events)"
# Entries one batch may write, at most (one post to a larger community is one batch).
ENTRIES_PER_BATCH = 500_000


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
    transactions_retried: int = 0  # batches PostgreSQL aborted (deadlock, serialization), redone
    stopped: bool = False  # a stop request ended the run between batches
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
) -> FanoutReport:
    """Consume events until none are ready (or `max_events`); see the module docstring.

    With `follow`, keep polling every `poll_interval` seconds until `stop` is set; a stop
    takes effect between batches, so the batch under way always finishes.
    """
    report = FanoutReport(consumer=consumer, dry_run=dry_run)
    batch = batch_size or ctx.settings.batch_size
    stop = stop or threading.Event()
    conn = ctx.conn
    with advisory_lock(conn, f"feedctl.fanout:{consumer}"), _dry_run_scope(conn, dry_run):
        conn.execute(query("ensure_consumer"), {"consumer": consumer})
        if not dry_run:
            _replay_pending_cache_writes(ctx, consumer, batch, report)
        _start_phase(conn, consumer, max_events, follow, report, progress)
        with _cache_side(ctx, consumer, report) as stage:
            while max_events is None or report.events < max_events:
                if stop.is_set():
                    report.stopped = True
                    break
                limit = batch if max_events is None else min(batch, max_events - report.events)
                events = report.events
                committed = _run_batch(ctx, consumer, limit, report)
                if committed is not None:
                    if stage is not None:
                        stage.submit(*committed)
                    progress.advance(report.events - events)
                    progress.status(_status(report))
                    continue
                if not follow:
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
def _cache_side(ctx: Context, consumer: str, report: FanoutReport) -> Iterator[CacheStage | None]:
    """The stage that writes Redis alongside; none in a dry run (nothing is written)."""
    if report.dry_run:
        yield None
        return
    with cache_stage(ctx, consumer, report) as stage:
        yield stage


def measure_lag(ctx: Context, consumer: str = DEFAULT_CONSUMER) -> tuple[int, float]:
    """Events a consumer has still to read, and the age in seconds of the oldest."""
    report = FanoutReport(consumer=consumer)
    ctx.conn.execute(query("ensure_consumer"), {"consumer": consumer})
    _measure_lag(ctx.conn, consumer, report)
    return report.lag_events, report.lag_seconds or 0.0


def _run_batch(
    ctx: Context, consumer: str, limit: int, report: FanoutReport
) -> tuple[RedisWork, str, int] | None:
    """One batch in one PostgreSQL transaction; returns the cache work it calls for and
    the position it committed, or None when no event was ready."""
    conn = ctx.conn
    started = time.perf_counter()

    def batch() -> tuple[list[Event], RedisWork, FanoutReport] | None:
        position = _position(conn, consumer)
        events = _read_events(
            conn, "next_events", {"txid": position[0], "event_id": position[1]}, limit
        )
        if not events:
            return None
        events = _bounded(conn, events, ctx.cap)
        checkpoint("fanout.after_read")
        counts = FanoutReport(consumer=consumer, dry_run=report.dry_run)  # this attempt's
        work = apply_events(ctx, events, counts)
        checkpoint("fanout.after_write")
        _advance(conn, consumer, events)
        if not report.dry_run:
            params = {"consumer": consumer, "txid": position[0], "event_id": position[1]}
            conn.execute(query("open_cache_pending"), params)
        return events, work, counts

    def retried() -> None:
        report.transactions_retried += 1

    done = in_transaction_retrying(conn, batch, what="fan-out batch", on_retry=retried)
    if done is None:
        return None
    events, work, counts = done
    report.entries_written += counts.entries_written
    report.entries_removed += counts.entries_removed
    checkpoint("fanout.after_commit")
    report.seconds_database += time.perf_counter() - started
    report.events += len(events)
    report.batches += 1
    return work, events[-1].txid, events[-1].id


def _replay_pending_cache_writes(
    ctx: Context, consumer: str, batch: int, report: FanoutReport
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
        write_cache(ctx, _work_of(ctx, events), report)
        after = (events[-1].txid, events[-1].id)
    ctx.conn.execute(query("close_cache_pending"), {"consumer": consumer})
    report.cache_batches_replayed += 1


def _work_of(ctx: Context, events: list[Event]) -> RedisWork:
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
    return work


@contextlib.contextmanager
def _dry_run_scope(conn: psycopg.Connection[Any], dry_run: bool) -> Iterator[None]:
    """In a dry run, everything happens inside one transaction that is rolled back."""
    if not dry_run:
        yield
        return
    with conn.transaction(force_rollback=True):
        yield


def _bounded(conn: psycopg.Connection[Any], events: list[Event], cap: int) -> list[Event]:
    """The longest head of `events` whose estimated entries stay within ENTRIES_PER_BATCH
    (at least one event), so that a transaction's size does not grow with communities."""
    communities = sorted({e.community_id for e in events if e.kind == "post_created"})
    sizes = dict(conn.execute(query("community_sizes"), {"ids": communities}).fetchall())
    total = 0
    for index, event in enumerate(events):
        total += sizes.get(event.community_id, 0) if event.kind == "post_created" else cap
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


def apply_events(ctx: Context, events: list[Event], report: FanoutReport) -> RedisWork:
    """Apply events in order, consecutive events of one kind as one set-based statement.

    Posts created before the retention cutoff (taken once, by the transaction's clock) are
    scored but written into no feed: a feed keeps only what `feed_retention` allows.
    """
    work = RedisWork()
    since = ctx.retained_since()
    lock_rows(ctx.conn, events)
    for kind, run in groupby(events, key=lambda e: e.kind):
        _APPLIERS[kind](ctx, list(run), report, work, since)
    return work


def lock_rows(conn: psycopg.Connection[Any], events: list[Event]) -> None:
    """Lock every existing row the batch may change, in the order every writer keeps
    (decision 0037): post_score rows in post order, then feed entries in (user_id, post_id)
    order, each by one statement. The events' statements then only write rows this
    transaction holds already or rows no other transaction can see (new entries), so they
    never wait on a rank or backfill in an order of their own (events run in stream order:
    users and posts come in any order)."""
    posts = sorted({e.post_id for e in events if e.post_id is not None and e.kind in _POST_KINDS})
    pairs = sorted(
        {
            (e.user_id, e.community_id)
            for e in events
            if e.user_id is not None and e.kind in _MEMBER_KINDS
        }
    )
    if posts:
        conn.execute(query("fanout_lock_post_scores"), {"post_ids": posts})
    if posts or pairs:
        params = {
            "post_ids": posts,
            "user_ids": [user for user, _ in pairs],
            "community_ids": [community for _, community in pairs],
        }
        conn.execute(query("fanout_lock_entries"), params)


_POST_KINDS = frozenset({"post_created", "post_deleted"})
_MEMBER_KINDS = frozenset({"member_joined", "member_left"})


def _apply_created(
    ctx: Context, run: list[Event], report: FanoutReport, work: RedisWork, since: datetime | None
) -> None:
    post_ids = sorted({e.post_id for e in run if e.post_id is not None})
    seen = {row[0] for row in ctx.conn.execute(query("scored_post_ids"), {"post_ids": post_ids})}
    inputs = read_inputs(ctx.conn, post_ids)
    scored, _ = store_scores(ctx.conn, inputs, ctx.heuristic, update_entries=False)
    if scored.is_empty():
        return
    new = [p for p in post_ids if p not in seen]
    report.entries_written += _insert_entries(ctx.conn, new, since)
    report.entries_written += _insert_entries(ctx.conn, sorted(seen), since, may_exist=True)
    if since is not None:
        scored = scored.filter(pl.col("created_at") >= since.astimezone(UTC))
    for post_id, community_id, score in scored.select("post_id", "community_id", "score").rows():
        work.created[community_id].append((post_id, score))


def _insert_entries(
    conn: psycopg.Connection[Any],
    post_ids: list[int],
    since: datetime | None,
    *,
    may_exist: bool = False,
) -> int:
    """Entries for every member; a post never scored before cannot have any yet, so its
    rows skip the conflict check (if one exists after all, the batch falls back to it)."""
    if not post_ids:
        return 0
    conn.execute(query("raise_work_mem"))
    params = {"post_ids": post_ids, "since": since}
    if may_exist:
        return conn.execute(query("fan_out_posts"), params).rowcount
    try:
        with conn.transaction():
            return conn.execute(query("fan_out_new_posts"), params).rowcount
    except psycopg.errors.UniqueViolation:
        return conn.execute(query("fan_out_posts"), params).rowcount


def _apply_deleted(
    ctx: Context, run: list[Event], report: FanoutReport, work: RedisWork, since: datetime | None
) -> None:
    post_ids = sorted({e.post_id for e in run if e.post_id is not None})
    row = ctx.conn.execute(query("delete_post_entries"), {"post_ids": post_ids}).fetchone()
    report.entries_removed += int(row[0]) if row else 0
    for event in run:
        if event.post_id is not None:
            work.deleted[event.community_id].append(event.post_id)


def _apply_joined(
    ctx: Context, run: list[Event], report: FanoutReport, work: RedisWork, since: datetime | None
) -> None:
    for event in run:
        if event.user_id is None:
            continue
        params = {"user_id": event.user_id, "community_id": event.community_id, "since": since}
        report.entries_written += ctx.conn.execute(
            query("merge_community_into_feed"), params
        ).rowcount
        work.refresh.add(event.user_id)


def _apply_left(
    ctx: Context, run: list[Event], report: FanoutReport, work: RedisWork, since: datetime | None
) -> None:
    for event in run:
        if event.user_id is None:
            continue
        params = {"user_id": event.user_id, "community_id": event.community_id}
        report.entries_removed += ctx.conn.execute(
            query("remove_community_from_feed"), params
        ).rowcount
        work.refresh.add(event.user_id)


Applier = Callable[[Context, list[Event], FanoutReport, RedisWork, datetime | None], None]
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
