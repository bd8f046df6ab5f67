"""Backfill: every score recomputed under a heuristic, in checkpointed chunks.

A backfill has three phases; each chunk commits its rows and its checkpoint together, so a
run killed anywhere and resumed ends exactly where one uninterrupted run would:

1. posts: `post_score` (one row per post) rescored in chunks of posts. Done once per
   backfill, by whichever shard gets there first; the other shards wait for it. From its
   first chunk on, fan-out copies the new scores into new feed entries.
2. communities: every cached community feed rewritten from PostgreSQL.
3. entries, one shard at a time, by one of two methods (chosen when the post phase is done,
   docs/decisions/0032):
   - swap (many scores changed, feed_entry partitioned): each of the shard's partitions
     (`--shard i/N`: remainders mod N = i) is rewritten into a new table with its posts'
     stored scores and swapped in, then its users' cached feeds are rewritten;
   - in place (few changed): the feed entries of a chunk of the shard's users (user_id
     mod N = i) take their post's stored score, then their cached feeds are rewritten.

Because every entry copies `post_score`, which the nightly rank and fan-out also keep up
to date, an entry is right whenever it is synced, however long the backfill takes.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import polars as pl
import psycopg
import psycopg.errors
from psycopg.types.json import Jsonb

from feedctl.cache.keys import FeedRef, community_feed, user_feed
from feedctl.context import Context
from feedctl.db.locks import advisory_lock
from feedctl.db.retry import in_transaction_retrying
from feedctl.db.sql_blocks import query
from feedctl.errors import BadInputError, FeedctlError, LockedError
from feedctl.faults import checkpoint
from feedctl.pipelines.alongside import alongside
from feedctl.pipelines.cache.writes import CacheReport, chunked, refresh_cached
from feedctl.pipelines.ranking import versions as heuristic_versions
from feedctl.pipelines.ranking.backfill.shards import Shard
from feedctl.pipelines.ranking.backfill.swap import (
    METHODS,
    Partition,
    abandon_leftovers,
    choose_method,
    feed_partitions,
    shard_partitions,
    swap_in,
    swap_rewrite,
)
from feedctl.pipelines.ranking.backfill.throttle import Throttle, check_rate
from feedctl.pipelines.ranking.nightly import RANK_LOCK
from feedctl.pipelines.ranking.scores import inputs_frame, stage_scores
from feedctl.progress import SILENT, Progress
from feedctl.rank.heuristic import Heuristic, heuristic_from_record
from feedctl.rank.scoring import score_frame

POSTS_LOCK = "feedctl.rank.backfill.posts"
START = -(2**63)  # before every id
END = 2**63 - 1  # after every id
FIRST_USERS = 64  # users in the first entry chunk; later chunks adapt to --chunk-rows
MAX_USERS = 20_000  # users per entry chunk, at most
FEEDS_PER_WRITE = 50  # cached feeds rewritten per MULTI/EXEC, at most ...
MEMBERS_PER_WRITE = 100_000  # ... and about this many members (Redis blocks while it runs)
LOCK_POLL_SECONDS = 1.0
DEADLOCK_ATTEMPTS = 5

T = TypeVar("T")


class BackfillReplacedError(FeedctlError):
    """Another run replaced the backfill this run works on."""


@dataclasses.dataclass(frozen=True)
class BackfillOptions:
    """How to run a backfill; validated on creation (bad values are exit 2)."""

    shard: Shard = dataclasses.field(default_factory=Shard)
    resume: bool = False
    replace: bool = False
    rate_limit: float | None = None  # rows written per second, at most
    chunk_rows: int = 20_000  # rows (posts, or feed entries) per transaction, about
    method: str = "auto"  # how entries are written: auto, swap or in-place (at the start)

    def __post_init__(self) -> None:
        check_rate(self.rate_limit)
        if self.method not in METHODS:
            choices = ", ".join(METHODS)
            raise BadInputError(f"--method must be one of {choices}, got {self.method!r}")
        if self.chunk_rows < 1:
            raise BadInputError("--chunk-rows must be at least 1")
        if self.resume and self.replace:
            raise BadInputError("--resume and --replace exclude each other")


@dataclasses.dataclass
class BackfillReport:
    """What one backfill run (one shard) did, and where the whole backfill stands."""

    backfill_id: int
    heuristic_version: str
    shard: str
    resumed: bool = False
    posts_rescored: int = 0
    posts_changed: int = 0  # of the whole backfill: posts whose score changed
    method: str = ""  # how entries are written: swap or in_place (once the posts are done)
    entries_updated: int = 0  # in place: entries changed; swap: entries rewritten
    partitions_swapped: int = 0
    entries_replayed: int = 0  # swap: keys written meanwhile, replayed into the new tables
    users_covered: int = 0  # users of this shard whose entries this run synced
    chunks: int = 0
    feeds_rewritten: int = 0  # cached feeds rewritten from PostgreSQL
    redis_failures: int = 0  # feeds whose rewrite failed (marked for repair)
    shard_done: bool = False
    shards_done: int = 0
    shard_count: int = 1
    backfill_done: bool = False
    stopped: bool = False  # a signal stopped the run between chunks: resume it
    transactions_retried: int = 0  # chunks PostgreSQL aborted (deadlock, serialization), redone
    seconds: float = 0.0
    seconds_waiting: float = 0.0  # for another shard's post phase, or the rate limit
    seconds_cache: float = 0.0


@dataclasses.dataclass(frozen=True)
class _Run:
    """One process's part of a backfill."""

    ctx: Context
    backfill_id: int
    heuristic: Heuristic
    shard: Shard
    options: BackfillOptions
    report: BackfillReport
    throttle: Throttle
    stop: threading.Event
    progress: Progress


def run_backfill(
    ctx: Context,
    heuristic: Heuristic | None,
    options: BackfillOptions,
    *,
    stop: threading.Event | None = None,
    progress: Progress = SILENT,
) -> BackfillReport:
    """Start (or join, or resume) a backfill towards `heuristic` and do this shard's part.

    Returns when the shard is done or `stop` is set (then `report.stopped`).
    """
    started = time.perf_counter()
    stop = stop or threading.Event()
    with _shared_rank_lock(ctx), _shard_lock(ctx, options.shard):
        backfill_id, target, resumed = _open(ctx.conn, heuristic, options)
        report = BackfillReport(
            backfill_id=backfill_id,
            heuristic_version=target.version,
            shard=str(options.shard),
            resumed=resumed,
            shard_count=options.shard.count,
        )
        throttle = Throttle(options.rate_limit, stop.wait)
        run = _Run(
            ctx, backfill_id, target, options.shard, options, report, throttle, stop, progress
        )
        if _post_phases(run) and not stop.is_set():
            _, _, _, _, method, changed = _posts_state(run)
            report.method, report.posts_changed = method, changed
            if method == "swap":
                _swap_phase(run)
            else:
                _entry_phase(run)
        report.stopped = stop.is_set() and not report.shard_done
        _finish(run)
    report.seconds = time.perf_counter() - started
    return report


# ------------------------------------------------------------------------------ locks


@contextmanager
def _shared_rank_lock(ctx: Context) -> Iterator[None]:
    try:
        with advisory_lock(ctx.conn, RANK_LOCK, shared=True):
            yield
    except LockedError:
        raise LockedError("a nightly `feedctl rank` run is running (lock 'feedctl.rank')") from None


@contextmanager
def _shard_lock(ctx: Context, shard: Shard) -> Iterator[None]:
    name = f"feedctl.rank.backfill.shard:{shard}"
    try:
        with advisory_lock(ctx.conn, name):
            yield
    except LockedError:
        raise LockedError(f"another backfill run is working on shard {shard}") from None


# ------------------------------------------------------------------------------ setup


def _open(
    conn: psycopg.Connection[Any], heuristic: Heuristic | None, options: BackfillOptions
) -> tuple[int, Heuristic, bool]:
    """The backfill this run works on: (id, its heuristic, whether this is a resume)."""
    for attempt in range(3):
        try:
            with conn.transaction():
                return _open_in_transaction(conn, heuristic, options)
        except psycopg.errors.UniqueViolation:  # two shards created a backfill at once
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _open_in_transaction(
    conn: psycopg.Connection[Any], heuristic: Heuristic | None, options: BackfillOptions
) -> tuple[int, Heuristic, bool]:
    shard = options.shard
    row = conn.execute(query("backfill_unfinished")).fetchone()
    unfinished = None
    if row is not None:
        unfinished = (row[0], heuristic_from_record(row[1], row[2], f"backfill #{row[0]}"), row[3])
    if options.resume:
        if unfinished is None:
            raise BadInputError("there is no unfinished backfill to resume")
        backfill_id, target, shard_count = unfinished
        if heuristic is not None and heuristic != target:
            raise BadInputError(
                f"backfill #{backfill_id} is towards heuristic {target.version!r}, not the "
                f"given {heuristic.version!r}: resume without --heuristic, or pass --replace"
            )
        _require_shard_count(backfill_id, shard_count, shard)
        conn.execute(
            query("backfill_shard_join"), {"backfill_id": backfill_id, "shard": shard.index}
        )
        return backfill_id, target, True
    if heuristic is None:
        raise BadInputError(
            "give --heuristic FILE to start a backfill, or --resume to continue one"
        )
    heuristic_versions.record(conn, heuristic)
    if options.method == "swap" and not feed_partitions(conn):
        raise BadInputError("--method swap needs a partitioned feed_entry (see docs/scaling.md)")
    if unfinished is not None and not options.replace:
        backfill_id, target, shard_count = unfinished
        if target != heuristic:
            raise BadInputError(
                f"backfill #{backfill_id} towards heuristic {target.version!r} is unfinished: "
                "finish it with --resume, or pass --replace to abandon it for this one"
            )
        _require_shard_count(backfill_id, shard_count, shard)
        params = {"backfill_id": backfill_id, "shard": shard.index}
        if conn.execute(query("backfill_shard_state"), params).fetchone() is not None:
            raise BadInputError(
                f"shard {shard} of backfill #{backfill_id} towards {target.version!r} has "
                "already started: pass --resume to continue it"
            )
        conn.execute(query("backfill_shard_join"), params)
        return backfill_id, target, False
    if unfinished is not None:
        conn.execute(query("backfill_replace"), {"backfill_id": unfinished[0]})
    heuristic_versions.adopt(conn, heuristic)
    created = conn.execute(
        query("backfill_create"),
        {
            "version": heuristic.version,
            "coefficients": Jsonb(heuristic.coefficients()),
            "shard_count": shard.count,
            "method": "in_place" if options.method == "in-place" else options.method,
        },
    ).fetchone()
    assert created is not None
    conn.execute(query("backfill_shard_join"), {"backfill_id": created[0], "shard": shard.index})
    return int(created[0]), heuristic, False


def _require_shard_count(backfill_id: int, shard_count: int, shard: Shard) -> None:
    if shard_count != shard.count:
        raise BadInputError(
            f"backfill #{backfill_id} is split into {shard_count} shard(s): pass --shard "
            f"i/{shard_count} (or --replace to start over with another split)"
        )


# ------------------------------------------------------------------ posts, communities


def _post_phases(run: _Run) -> bool:
    """Make sure post_score and cached community feeds are done; False if stopped first."""
    _, posts_done, _, communities_done, _, _ = _posts_state(run)
    if posts_done and communities_done:
        return True
    waited = time.perf_counter()
    waiting = False
    while True:
        try:
            with advisory_lock(run.ctx.conn, POSTS_LOCK):
                run.report.seconds_waiting += time.perf_counter() - waited
                return _post_phases_locked(run)
        except LockedError:
            if not waiting:  # for another shard's post phase
                run.progress.phase("waiting (posts)", None)
                waiting = True
            if run.stop.wait(LOCK_POLL_SECONDS):
                run.report.seconds_waiting += time.perf_counter() - waited
                return False


def _posts_state(run: _Run) -> tuple[int, bool, int, bool, str, int]:
    """(posts_after, posts done, communities_after, communities done, method, posts changed)."""
    row = run.ctx.conn.execute(query("backfill_state"), {"backfill_id": run.backfill_id}).fetchone()
    assert row is not None
    if row[0] == "replaced":
        raise BackfillReplacedError(f"backfill #{run.backfill_id} was replaced by a newer one")
    return int(row[1]), bool(row[2]), int(row[3]), bool(row[4]), str(row[5]), int(row[6])


def _post_phases_locked(run: _Run) -> bool:
    after, posts_done, communities_after, communities_done, _, _ = _posts_state(run)
    if not posts_done and not _rescore_posts(run, after):
        return False
    return communities_done or _rewrite_communities(run, communities_after)


def _rescore_posts(run: _Run, after: int) -> bool:
    conn = run.ctx.conn
    counts = conn.execute(query("backfill_count_posts"), {"after": after}).fetchone()
    total, done = (int(counts[0]), int(counts[1])) if counts else (None, 0)
    run.progress.phase("posts", None if total is None else total - done)
    run.throttle.restart()
    limit = run.throttle.chunk_rows(run.options.chunk_rows)
    while not run.stop.is_set():
        rows = conn.execute(query("backfill_post_inputs"), {"after": after, "limit": limit})
        inputs = inputs_frame(rows.fetchall())
        if inputs.is_empty():
            _posts_done(run)
            return True
        scored = score_frame(inputs, run.heuristic)
        last = int(scored["post_id"][-1])
        _retrying(run, functools.partial(_store_post_chunk, run, scored, last))
        checkpoint("backfill.posts_committed")
        after = last
        run.report.posts_rescored += scored.height
        run.progress.advance(scored.height)
        run.report.seconds_waiting += run.throttle.pace(scored.height)
    return False


def _posts_done(run: _Run) -> None:
    """Close the post phase and settle an 'auto' method from how many scores changed."""
    conn = run.ctx.conn
    with conn.transaction():
        row = conn.execute(query("backfill_state"), {"backfill_id": run.backfill_id}).fetchone()
        assert row is not None
        method = choose_method(
            "auto",
            partitioned=bool(feed_partitions(conn)),
            changed=int(row[6]),
            total=int(row[7]),
        )
        conn.execute(
            query("backfill_posts_done"), {"backfill_id": run.backfill_id, "method": method}
        )


def _store_post_chunk(run: _Run, scored: pl.DataFrame, last: int) -> None:
    conn = run.ctx.conn
    stage_scores(conn, scored)
    found = conn.execute(query("backfill_count_changed_posts")).fetchone()
    conn.execute(query("backfill_update_post_scores"), {"version": run.heuristic.version})
    params = {
        "backfill_id": run.backfill_id,
        "after": last,
        "rescored": scored.height,
        "changed": int(found[0]) if found else 0,
    }
    if conn.execute(query("backfill_advance_posts"), params).rowcount != 1:
        raise BackfillReplacedError(f"backfill #{run.backfill_id} was replaced by a newer one")
    checkpoint("backfill.posts_before_commit")


def _rewrite_communities(run: _Run, after: int) -> bool:
    """Rewrite every cached community feed from PostgreSQL (uncached ones stay cold)."""
    conn = run.ctx.conn
    run.progress.phase("communities", None)
    while not run.stop.is_set():
        params = {"after": after, "limit": _feeds_per_write(run)}
        ids = [row[0] for row in conn.execute(query("backfill_community_ids"), params)]
        if not ids:
            conn.execute(query("backfill_communities_done"), {"backfill_id": run.backfill_id})
            return True
        _rewrite_cached(run, [community_feed(i) for i in ids])
        checkpoint("backfill.communities_page")
        after = ids[-1]
        conn.execute(
            query("backfill_advance_communities"), {"backfill_id": run.backfill_id, "after": after}
        )
        run.progress.advance(len(ids))
    return False


def _feeds_per_write(run: _Run) -> int:
    return max(1, min(FEEDS_PER_WRITE, MEMBERS_PER_WRITE // run.ctx.cap))


def _rewrite_cached(run: _Run, feeds: list[FeedRef]) -> None:
    started = time.perf_counter()
    report = CacheReport()
    refresh_cached(run.ctx, feeds, report)
    run.report.feeds_rewritten += report.feeds_written
    run.report.redis_failures += report.redis_failures
    run.report.seconds_cache += time.perf_counter() - started


# ------------------------------------------------------------------------------ entries


def _entry_phase(run: _Run) -> None:
    conn = run.ctx.conn
    abandon_leftovers(conn)
    params = _shard_params(run)
    row = conn.execute(query("backfill_shard_state"), params).fetchone()
    assert row is not None
    users_after, cache_after, done = int(row[0]), int(row[1]), bool(row[2])
    if cache_after < users_after:
        _rewrite_users_between(run, cache_after, users_after)
    if done:
        run.report.shard_done = True
        return
    counts = conn.execute(
        query("backfill_shard_user_count"), {**params, "after": users_after}
    ).fetchone()
    total, done_before = (int(counts[0]), int(counts[1])) if counts else (None, 0)
    run.progress.phase("users", None if total is None else total - done_before)
    run.throttle.restart()
    target = run.throttle.chunk_rows(run.options.chunk_rows)
    users = FIRST_USERS
    after = users_after
    while not run.stop.is_set():
        page = {**params, "after": after, "limit": users}
        ids = [r[0] for r in conn.execute(query("backfill_shard_users"), page)]
        upto = ids[-1] if ids else END
        sync = functools.partial(_sync_chunk, run, after, upto, last=not ids)
        updated = _retrying(run, sync)
        checkpoint("backfill.entries_committed")
        run.report.entries_updated += updated
        run.report.chunks += 1
        if not ids:
            run.report.shard_done = True
            return
        _rewrite_users(run, ids, upto)
        run.report.users_covered += len(ids)
        run.progress.advance(len(ids))
        run.progress.status(f"{run.report.entries_updated:,} entries")
        run.report.seconds_waiting += run.throttle.pace(updated)
        users = next_chunk_users(users, updated, target)
        after = upto


def _shard_params(run: _Run) -> dict[str, Any]:
    return {
        "backfill_id": run.backfill_id,
        "shard": run.shard.index,
        "shard_count": run.shard.count,
    }


def _sync_chunk(run: _Run, after: int, upto: int, *, last: bool) -> int:
    """One transaction: the entries of users in (after, upto] and the shard's position."""
    conn = run.ctx.conn
    params = {**_shard_params(run), "after": after, "upto": upto}
    conn.execute(query("rank_prefer_indexes"))  # a scan per chunk would be quadratic
    updated = conn.execute(query("backfill_sync_entries"), params).rowcount
    checkpoint("backfill.entries_before_commit")
    advance = {**params, "updated": updated}
    if conn.execute(query("backfill_advance_shard"), advance).rowcount != 1:
        raise BackfillReplacedError(f"backfill #{run.backfill_id} was replaced by a newer one")
    if last:
        conn.execute(query("backfill_advance_shard_cache"), params)
        conn.execute(query("backfill_shard_done"), params)
    return int(updated)


def _rewrite_users(run: _Run, ids: list[int], upto: int) -> None:
    """Rewrite the chunk's cached user feeds, then record that the cache has caught up."""
    for page in chunked(ids, _feeds_per_write(run)):
        _rewrite_cached(run, [user_feed(i) for i in page])
        checkpoint("backfill.users_page")
    params = {**_shard_params(run), "upto": upto}
    run.ctx.conn.execute(query("backfill_advance_shard_cache"), params)


def _rewrite_users_between(run: _Run, after: int, upto: int) -> None:
    """Redo the cache writes of a chunk whose commit a killed run never followed up."""
    conn = run.ctx.conn
    position = after
    while True:
        page = {**_shard_params(run), "after": position, "upto": upto, "limit": 5_000}
        ids = [r[0] for r in conn.execute(query("backfill_users_between"), page)]
        if not ids:
            break
        for chunk in chunked(ids, _feeds_per_write(run)):
            _rewrite_cached(run, [user_feed(i) for i in chunk])
        position = ids[-1]
    conn.execute(query("backfill_advance_shard_cache"), {**_shard_params(run), "upto": upto})


# ---------------------------------------------------------------------- partition swaps


PARTITION_USERS_PAGE = 2_000  # user ids read per page when rewriting a partition's caches


def _swap_phase(run: _Run) -> None:
    """Rewrite and swap in each of the shard's partitions; a worker thread on a second
    connection rewrites the cached feeds of each swapped partition's users meanwhile (the
    rewrite runs inside PostgreSQL, the cache writes in this process and Redis)."""
    conn = run.ctx.conn
    row = conn.execute(query("backfill_shard_state"), _shard_params(run)).fetchone()
    if row is not None and bool(row[2]):
        run.report.shard_done = True
        return
    partitions = shard_partitions(feed_partitions(conn), run.shard)
    run.progress.phase("partitions", len(partitions))
    run.throttle.restart()
    finished: list[str] = []
    with run.ctx.second_connection() as cache_conn:
        cache_run = dataclasses.replace(run, ctx=dataclasses.replace(run.ctx, conn=cache_conn))

        def caches(item: tuple[Partition, int]) -> None:
            partition, after = item
            if _rewrite_partition_users(cache_run, partition, after):
                params = {"backfill_id": run.backfill_id, "partition": partition.name}
                cache_conn.execute(query("backfill_partition_done"), params)
                finished.append(partition.name)

        with alongside(caches, depth=1, name="feedctl-backfill-caches") as worker:
            for partition in partitions:
                if run.stop.is_set():
                    break
                after = _swap_partition(run, partition)
                if after is None:
                    break
                if after != DONE:
                    worker.put((partition, after))
                else:
                    finished.append(partition.name)
                run.progress.advance(1)
    if len(finished) == len(partitions) and not run.stop.is_set():
        conn.execute(query("backfill_shard_done"), _shard_params(run))
        run.report.shard_done = True


DONE = END  # a partition's cache position once its cached feeds are all rewritten


def _swap_partition(run: _Run, partition: Partition) -> int | None:
    """Rewrite and swap in one partition unless a previous run did. Returns the user id
    after which its cached feeds still need rewriting (DONE: the partition is done), or
    None if stopped before the swap."""
    conn = run.ctx.conn
    params = {"backfill_id": run.backfill_id, "partition": partition.name}
    conn.execute(query("backfill_partition_join"), params)
    row = conn.execute(query("backfill_partition_state"), params).fetchone()
    assert row is not None
    swapped, cache_after, done = bool(row[0]), int(row[1]), bool(row[2])
    if done:
        return DONE
    if not swapped:
        rows, replayed = swap_rewrite(conn, partition)
        run.progress.status(f"{partition.name}: {rows:,} entries rewritten")

        def record() -> None:
            found = conn.execute(query("backfill_partition_swapped"), {**params, "rows": rows})
            if found.rowcount != 1:
                raise BackfillReplacedError(
                    f"backfill #{run.backfill_id} was replaced by a newer one"
                )

        replayed_later = swap_in(conn, partition, record, run.stop)
        if replayed_later is None:
            return None
        checkpoint("backfill.swap_committed")
        run.report.entries_updated += rows
        run.report.partitions_swapped += 1
        run.report.entries_replayed += replayed + replayed_later
        run.report.chunks += 1
        run.report.seconds_waiting += run.throttle.pace(rows)
    return cache_after


def _rewrite_partition_users(run: _Run, partition: Partition, after: int) -> bool:
    """Rewrite the cached feeds of a swapped partition's users after a user id."""
    conn = run.ctx.conn
    params = {"backfill_id": run.backfill_id, "partition": partition.name}
    bound = {"modulus": partition.modulus, "remainder": partition.remainder}
    while not run.stop.is_set():
        page = {**bound, "after": after, "limit": PARTITION_USERS_PAGE}
        ids = [r[0] for r in conn.execute(query("backfill_partition_users"), page)]
        if not ids:
            return True
        for chunk in chunked(ids, _feeds_per_write(run)):
            _rewrite_cached(run, [user_feed(i) for i in chunk])
            checkpoint("backfill.users_page")
        after = ids[-1]
        conn.execute(query("backfill_partition_cache"), {**params, "upto": after})
        run.report.users_covered += len(ids)
    return False


def next_chunk_users(users: int, updated: int, target: int) -> int:
    """Users in the next chunk so that it writes about `target` rows (at most x4 / 4)."""
    if updated <= 0:
        return min(MAX_USERS, users * 4)
    wanted = users * target / updated
    return max(1, min(MAX_USERS, users * 4, max(users // 4, round(wanted))))


# ------------------------------------------------------------------------------- finish


def _finish(run: _Run) -> None:
    conn = run.ctx.conn
    params = {"backfill_id": run.backfill_id}
    conn.execute(query("backfill_finish"), params)
    state = conn.execute(query("backfill_state"), params).fetchone()
    done = conn.execute(query("backfill_shards_done"), params).fetchone()
    run.report.backfill_done = state is not None and state[0] == "done"
    run.report.shards_done = int(done[0]) if done else 0


def _retrying(run: _Run, work: Callable[[], T]) -> T:
    """Run `work` in a transaction, again (counted) if PostgreSQL aborted it to break a
    deadlock or a serialization failure: feedctl.db.retry, the one mechanism for this."""

    def retried() -> None:
        run.report.transactions_retried += 1

    return in_transaction_retrying(
        run.ctx.conn, work, what="backfill chunk", on_retry=retried, attempts=DEADLOCK_ATTEMPTS
    )
