"""Benchmark: feedctl fan-out end to end, against this machine's own limits, in one run.

    .venv/bin/python bench/fanout.py [--entries N] [--sample N] [--cap N] [--json]

1. Seeds a backlog of post_created events (at least --entries feed entries) into a fresh
   migrated database, caches an empty feed for every user (so every entry also goes to
   Redis), and times `run_fanout`. Checks the counts and a sample of cached feeds.
2. Raw COPY BINARY of the same rows into an identical empty table: in fan-out order
   (post by post, the primary comparison) and sorted by (user_id, post_id).
3. Pipelined ZADD of the same (user, post, score) members into fresh keys: 1,000
   one-member ZADDs per pipeline, and multi-member ZADD per key; the faster is the limit.
4. A naive loop on --sample entries: one INSERT ... ON CONFLICT DO NOTHING and commit per
   row, then one ZADD per round trip.
5. Peak RSS of this process after the fan-out.
6. Sharded fan-out (--shards, default 1,2,3): the same backlog fanned out again from an
   empty feed_entry by N concurrent `feedctl fanout --shard i/N` processes (process start
   included), for each N, against the raw COPY limit of step 2. On a machine with few
   cores the shards compete for the same CPUs, so the scaling shown is bounded by them.
7. Pull (--pull-members, default 1,000,000; 0 skips): a community of that many members
   (over `pull_threshold`, so pulled) and a small one each get --pull-posts posts; fan-out
   time per post in each, entries written, peak RSS; then the first page (and the next
   two) of members' feeds: members of the pulled community only (merged at read time)
   against members of the small one (a fanned-out feed of the same number of posts,
   cached), p50/p99 over many reads in the same run.

Targets are printed with PASS/MISS; the exit code is 0 either way (a benchmark reports).
It is non-zero only when the fan-out's result is wrong or a server cannot be used.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import numpy as np
import psycopg
import redis
from benchlib.measure import (
    checkpoint,
    current_rss_mb,
    hwm_rss_mb,
    peak_rss_mb,
    postgres_facts,
    rate,
    ratio,
    redis_facts,
    reset_peak_rss,
    stopwatch,
    verdict,
)
from benchlib.pgcopy import ENTRY_COLUMNS, Members, export_entries, load_entries, members_of
from benchlib.pgcopy import rows_of as copy_rows
from benchlib.servers import BenchTarget, bench_target, delete_keys, note

from feedctl.cache.keys import user_feed
from feedctl.config import Settings
from feedctl.context import Context, open_context
from feedctl.db.migrations import upgrade
from feedctl.pipelines.fanout.run import FanoutReport, run_fanout
from feedctl.synth import SeedReport, SeedSpec, seed

FANOUT_ORDER: Final = "post_id, user_id"  # the order fan-out produces rows: post by post
SORTED_ORDER: Final = "user_id, post_id"  # the primary key's order
DEFAULT_SPEC: Final = SeedSpec()  # the project's default shape (users, communities, posts)
DEFAULT_SPEC_ENTRIES: Final = 1_115_355  # its fanout_entries; only a first guess at scale
SEED_ATTEMPTS: Final = 4
SEED_SLACK: Final = 1.1  # accept a backlog of up to 10% more entries than asked
SEED_NOW: Final = datetime(2026, 1, 1, tzinfo=UTC)  # a fixed `now`: the same rows every run
SAMPLE_USERS: Final = 200
CACHE_CHUNK: Final = 5_000  # feeds per replace_many call when pre-creating caches
ZADD_BATCH: Final = 1_000  # one-member ZADDs per pipeline execute
ZADD_MEMBERS: Final = 1_000  # members per multi-member ZADD command
ZADD_PIPELINE_MEMBERS: Final = 10_000  # members per pipeline execute, multi-member ZADD
PG_EPOCH: Final = datetime(2000, 1, 1, tzinfo=UTC)  # binary COPY timestamps count from here
PG_TARGET: Final = 0.5
REDIS_TARGET: Final = 0.5
NAIVE_TARGET: Final = 20.0


class BenchFailure(Exception):
    """The fan-out's result is wrong: the benchmark exits non-zero."""


# ---------------------------------------------------------------------------- arguments


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=2_000_000, help="target backlog size")
    parser.add_argument("--sample", type=int, default=20_000, help="rows for the naive loop")
    parser.add_argument("--cap", type=int, default=5000, help="items kept per cached feed")
    parser.add_argument(
        "--shards",
        default="1,2,3",
        help="shard counts to run concurrently, comma-separated ('' to skip)",
    )
    parser.add_argument(
        "--pull-members", type=int, default=1_000_000, help="members of the pulled community"
    )
    parser.add_argument("--pull-posts", type=int, default=300, help="posts in each community")
    parser.add_argument("--reads", type=int, default=400, help="page reads per kind of feed")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args(argv)
    try:
        args.shard_counts = [int(n) for n in args.shards.split(",") if n.strip()]
    except ValueError:
        parser.error("--shards must be comma-separated numbers, such as 1,2,3")
    if any(n < 1 for n in args.shard_counts):
        parser.error("--shards: every count must be at least 1")
    for name in ("entries", "sample", "cap"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return args


# ------------------------------------------------------------------------------ backlog


@dataclasses.dataclass(frozen=True)
class Backlog:
    spec: SeedSpec
    seeded: SeedReport
    seed_seconds: float


def _scaled_spec(target: int) -> SeedSpec:
    """The default shape, every count scaled so fanout_entries lands near `target`."""
    scale = target / DEFAULT_SPEC_ENTRIES
    return dataclasses.replace(
        DEFAULT_SPEC,
        users=max(1, round(DEFAULT_SPEC.users * scale)),
        communities=max(1, round(DEFAULT_SPEC.communities * scale)),
        posts=max(1, round(DEFAULT_SPEC.posts * scale)),
        now=SEED_NOW,
        join_events=False,  # post_created events only ...
        deleted_share=0.0,  # ... and no post_deleted events either
    )


def seed_backlog(conn: psycopg.Connection[Any], target: int) -> Backlog:
    """Seed at least `target` fan-out entries (and not far more): a miss is rolled back
    and seeded again with the post count scaled (entries grow in proportion to posts)."""
    spec = _scaled_spec(target)
    started = time.perf_counter()
    for attempt in range(1, SEED_ATTEMPTS + 1):
        with conn.transaction() as tx:
            seeded = seed(conn, spec)
            entries = seeded.fanout_entries
            close = entries <= target * SEED_SLACK or attempt == SEED_ATTEMPTS
            if entries >= target and close:
                return Backlog(spec, seeded, time.perf_counter() - started)
            raise psycopg.Rollback(tx)
        spec = dataclasses.replace(
            spec, posts=max(1, math.ceil(spec.posts * target * 1.01 / max(entries, 1)))
        )
    raise BenchFailure(f"could not seed {target} fan-out entries in {SEED_ATTEMPTS} attempts")


def prepare_database(conn: psycopg.Connection[Any], target: int) -> Backlog:
    upgrade(conn)
    backlog = seed_backlog(conn, target)
    conn.execute("VACUUM ANALYZE")  # fresh statistics; autovacuum has nothing left to do
    return backlog


def cache_empty_feeds(ctx: Context) -> int:
    """An empty cached feed (sentinel only) for every user: fan-out writes all of them."""
    user_ids = [row[0] for row in ctx.conn.execute("SELECT id FROM users ORDER BY id")]
    for start in range(0, len(user_ids), CACHE_CHUNK):
        chunk = user_ids[start : start + CACHE_CHUNK]
        ctx.cache.replace_many((user_feed(u).key(ctx.prefix), [], False) for u in chunk)
    return len(user_ids)


# ------------------------------------------------------------------------------ fan-out


@dataclasses.dataclass(frozen=True)
class FanoutRun:
    report: FanoutReport
    wall_seconds: float
    peak_rss_before_mb: float
    peak_rss_after_mb: float
    peak_rss_during_mb: float | None  # VmHWM, reset just before the fan-out
    rss_before_mb: float
    rss_after_mb: float
    batches: list[dict[str, float]]


class BatchTimes:
    """A Progress that notes the events done and the wall time at each committed batch."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.events = 0
        self.batches: list[dict[str, float]] = []

    def phase(self, name: str, total: int | None = None) -> None:
        self.started = time.perf_counter()

    def advance(self, done: int) -> None:
        if done:
            self.events += done
            seconds = time.perf_counter() - self.started
            self.batches.append({"events": self.events, "seconds": seconds})

    def status(self, text: str) -> None:
        pass


def time_fanout(ctx: Context) -> FanoutRun:
    progress = BatchTimes()
    batches = progress.batches
    checkpoint(ctx.conn)
    peak_before = peak_rss_mb()
    was_reset = reset_peak_rss()
    rss_before = current_rss_mb()
    with stopwatch() as elapsed:
        report = run_fanout(ctx, progress=progress)
    return FanoutRun(
        report=report,
        wall_seconds=elapsed(),
        peak_rss_before_mb=peak_before,
        peak_rss_after_mb=peak_rss_mb(),
        peak_rss_during_mb=hwm_rss_mb() if was_reset else None,
        rss_before_mb=rss_before,
        rss_after_mb=current_rss_mb(),
        batches=batches,
    )


def check_counts(conn: psycopg.Connection[Any], run: FanoutRun, backlog: Backlog) -> int:
    row = conn.execute("SELECT count(*) FROM feed_entry").fetchone()
    in_table = int(row[0]) if row else -1
    written, expected = run.report.entries_written, backlog.seeded.fanout_entries
    if not in_table == written == expected:
        raise BenchFailure(
            f"count(*) feed_entry = {in_table}, entries_written = {written}, "
            f"SeedReport.fanout_entries = {expected}: they must be equal"
        )
    if run.report.redis_failures:
        raise BenchFailure(f"fan-out reported {run.report.redis_failures} Redis failures")
    return in_table


def check_cached_sample(ctx: Context) -> dict[str, int]:
    """Sum of ZCARD - 1 over sampled users = sum of their feed_entry counts capped at cap."""
    user_ids = [row[0] for row in ctx.conn.execute("SELECT id FROM users ORDER BY id")]
    sample = random.Random(7).sample(user_ids, min(SAMPLE_USERS, len(user_ids)))
    rows = ctx.conn.execute(
        "SELECT user_id, count(*) FROM feed_entry WHERE user_id = ANY(%s) GROUP BY user_id",
        (sample,),
    ).fetchall()
    counts = {user_id: int(count) for user_id, count in rows}
    with ctx.redis.pipeline(transaction=False) as pipe:
        for user_id in sample:
            pipe.zcard(user_feed(user_id).key(ctx.prefix))
        cards = [int(card) for card in pipe.execute()]
    cached = sum(card - 1 for card in cards)
    expected = sum(min(counts.get(user_id, 0), ctx.cap) for user_id in sample)
    wrong = [
        (user_id, card - 1, min(counts.get(user_id, 0), ctx.cap))
        for user_id, card in zip(sample, cards, strict=True)
        if card - 1 != min(counts.get(user_id, 0), ctx.cap)
    ]
    if cached != expected or wrong:
        raise BenchFailure(
            f"cached feeds of {len(sample)} sampled users hold {cached} entries, feed_entry "
            f"capped at {ctx.cap} says {expected}; first wrong (user, cached, expected): "
            f"{wrong[:5]}"
        )
    return {"users": len(sample), "cached_entries": cached, "expected_entries": expected}


# ------------------------------------------------------------------------ COPY limits


@dataclasses.dataclass(frozen=True)
class CopyLimit:
    label: str
    rows: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return rate(self.rows, self.seconds)


def _timed_copy(
    conn: psycopg.Connection[Any], table: str, like: str, path: Path, rows: int
) -> float:
    """COPY a file into a new empty table (`like` says what it copies from feed_entry)."""
    conn.execute(f"CREATE TABLE {table} (LIKE feed_entry {like}) WITH (autovacuum_enabled = false)")
    checkpoint(conn)
    with stopwatch() as elapsed:
        load_entries(conn, table, path)
    row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    if not row or row[0] != rows:
        raise BenchFailure(f"{table} holds {row[0] if row else None} rows after COPY, not {rows}")
    conn.execute(f"DROP TABLE {table}")
    return elapsed()


def measure_copy(
    conn: psycopg.Connection[Any], fanout_file: Path, sorted_file: Path, rows: int
) -> dict[str, CopyLimit]:
    cases = {
        "fanout_order": ("feed_entry_copy", "INCLUDING ALL", fanout_file),
        "sorted": ("feed_entry_copy_sorted", "INCLUDING ALL", sorted_file),
        "no_indexes": ("feed_entry_copy_bare", "INCLUDING DEFAULTS", fanout_file),
    }
    labels = {
        "fanout_order": f"raw COPY BINARY, fan-out order ({FANOUT_ORDER})",
        "sorted": f"raw COPY BINARY, sorted by ({SORTED_ORDER})",
        "no_indexes": "raw COPY BINARY, no indexes (reference)",
    }
    return {
        name: CopyLimit(labels[name], rows, _timed_copy(conn, table, like, path, rows))
        for name, (table, like, path) in cases.items()
    }


# ------------------------------------------------------------------------ ZADD limits


@dataclasses.dataclass(frozen=True)
class ZaddLimit:
    label: str
    members: int
    seconds: float

    @property
    def members_per_second(self) -> float:
        return rate(self.members, self.seconds)


def zadd_one_member(client: redis.Redis, prefix: str, members: Members) -> float:
    """Fan-out order, 1,000 one-member ZADDs per pipeline execute."""
    with stopwatch() as elapsed, client.pipeline(transaction=False) as pipe:
        for start in range(0, len(members.user_id), ZADD_BATCH):
            stop = start + ZADD_BATCH
            for user_id, post_id, score in zip(
                members.user_id[start:stop].tolist(),
                members.post_id[start:stop].tolist(),
                members.score[start:stop].tolist(),
                strict=True,
            ):
                pipe.execute_command("ZADD", f"{prefix}{user_id}", score, post_id)
            pipe.execute()
    return elapsed()


def _by_user(members: Members) -> Members:
    order = np.argsort(members.user_id, kind="stable")
    return Members(members.user_id[order], members.post_id[order], members.score[order])


def zadd_multi_member(client: redis.Redis, prefix: str, grouped: Members) -> float:
    """One ZADD per key (at most 1,000 members each), pipelined; `grouped` is by user."""
    starts = np.flatnonzero(np.diff(grouped.user_id)) + 1
    bounds = [0, *starts.tolist(), len(grouped.user_id)]
    with stopwatch() as elapsed, client.pipeline(transaction=False) as pipe:
        pending = 0
        for first, end in itertools.pairwise(bounds):
            key = f"{prefix}{int(grouped.user_id[first])}"
            for start in range(first, end, ZADD_MEMBERS):
                stop = min(start + ZADD_MEMBERS, end)
                pairs = zip(
                    grouped.score[start:stop].tolist(),
                    grouped.post_id[start:stop].tolist(),
                    strict=True,
                )
                pipe.execute_command("ZADD", key, *itertools.chain.from_iterable(pairs))
                pending += stop - start
            if pending >= ZADD_PIPELINE_MEMBERS:
                pipe.execute()
                pending = 0
        pipe.execute()
    return elapsed()


def measure_zadd(client: redis.Redis, prefix: str, members: Members) -> dict[str, ZaddLimit]:
    count = len(members.user_id)
    one = zadd_one_member(client, f"{prefix}limit1:", members)
    delete_keys(client, f"{prefix}limit1:")
    grouped = _by_user(members)  # grouping is not timed: it only lowers the limit's cost
    multi = zadd_multi_member(client, f"{prefix}limitN:", grouped)
    delete_keys(client, f"{prefix}limitN:")
    return {
        "one_member": ZaddLimit(
            f"pipelined ZADD, {ZADD_BATCH:,} one-member ZADDs per execute", count, one
        ),
        "multi_member": ZaddLimit(
            f"pipelined ZADD, multi-member per key (<= {ZADD_MEMBERS:,} members)", count, multi
        ),
    }


# ---------------------------------------------------------------------------- naive loop


@dataclasses.dataclass(frozen=True)
class NaiveRun:
    rows: int
    seconds: float
    seconds_database: float
    seconds_cache: float

    @property
    def rows_per_second(self) -> float:
        return rate(self.rows, self.seconds)


def _sample_rows(path: Path, count: int) -> list[tuple[Any, ...]]:
    """The first `count` rows in fan-out order, as Python values."""
    rows = copy_rows(path)[:count]
    return [
        (
            int(row["user_id"]),
            int(row["post_id"]),
            int(row["community_id"]),
            int(row["author_id"]),
            float(row["score"]),
            PG_EPOCH + timedelta(microseconds=int(row["created_at"])),
        )
        for row in rows
    ]


def naive_loop(
    conn: psycopg.Connection[Any], client: redis.Redis, prefix: str, rows: list[tuple[Any, ...]]
) -> NaiveRun:
    """One INSERT + commit per row (autocommit) and one ZADD per round trip."""
    conn.execute("CREATE TABLE feed_entry_naive (LIKE feed_entry INCLUDING ALL)")
    insert = (
        f"INSERT INTO feed_entry_naive ({', '.join(ENTRY_COLUMNS)}) "
        "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (user_id, post_id) DO NOTHING"
    )
    checkpoint(conn)
    database = cache = 0.0
    with stopwatch() as elapsed:
        for row in rows:
            started = time.perf_counter()
            conn.execute(insert, row)
            inserted = time.perf_counter()
            client.zadd(f"{prefix}naive:{row[0]}", {str(row[1]): row[4]})
            cache += time.perf_counter() - inserted
            database += inserted - started
    conn.execute("DROP TABLE feed_entry_naive")
    delete_keys(client, f"{prefix}naive:")
    return NaiveRun(len(rows), elapsed(), database, cache)


# ------------------------------------------------------------------------------ the run


def settings_for(target: BenchTarget, cap: int) -> Settings:
    return Settings(
        database_url=target.database_url,
        redis_url=target.redis_url,
        redis_key_prefix=target.prefix,
        feed_retention="0",  # fixed-date worlds: keep every post
        feed_cap=cap,
        home=target.workdir / "home",
    )


def run(args: argparse.Namespace, target: BenchTarget) -> dict[str, Any]:
    note(f"seeding at least {args.entries:,} fan-out entries ...")
    with psycopg.connect(target.database_url, autocommit=True) as conn:
        backlog = prepare_database(conn, args.entries)
    note(f"seeded {backlog.seeded.fanout_entries:,} entries; caching empty feeds ...")
    with open_context(settings_for(target, args.cap)) as ctx:
        users_cached = cache_empty_feeds(ctx)
        note("running the fan-out ...")
        fanout = time_fanout(ctx)
        rows = check_counts(ctx.conn, fanout, backlog)
        sample = check_cached_sample(ctx)
        delete_keys(ctx.redis, f"{ctx.prefix}feed:")
        ctx.conn.execute("VACUUM ANALYZE feed_entry")  # keep autovacuum out of the limits
        facts = {"postgres": postgres_facts(ctx.conn), "redis": redis_facts(ctx.redis)}
        fanout_file, sorted_file = target.workdir / "fanout.copy", target.workdir / "sorted.copy"
        note("exporting the rows and measuring raw COPY ...")
        export_entries(ctx.conn, FANOUT_ORDER, fanout_file)
        export_entries(ctx.conn, SORTED_ORDER, sorted_file)
        copies = measure_copy(ctx.conn, fanout_file, sorted_file, rows)
        sorted_file.unlink()
        note("measuring pipelined ZADD ...")
        zadds = measure_zadd(ctx.redis, f"{ctx.prefix}bench:", members_of(fanout_file))
        note(f"running the naive loop on {min(args.sample, rows):,} rows ...")
        naive = naive_loop(
            ctx.conn, ctx.redis, f"{ctx.prefix}bench:", _sample_rows(fanout_file, args.sample)
        )
        sharded = [measure_shards(ctx, target, args.cap, n, rows) for n in args.shard_counts]
        pull = measure_pull(ctx, args) if args.pull_members > 0 else None
    doc = results(args, target, backlog, users_cached, fanout, sample, copies, zadds, naive, facts)
    doc["shards"] = shard_results(sharded, copies["fanout_order"].rows_per_second)
    doc["pull"] = pull
    return doc


# --------------------------------------------------------------------------------- pull

SMALL_MEMBERS: Final = 200


def _seed_pull_world(conn: psycopg.Connection[Any], members: int, posts: int) -> dict[str, int]:
    """A pulled-size community and a small one, `posts` posts each, as new ids; events."""
    row = conn.execute(
        "SELECT coalesce(max(id), 0) FROM users UNION ALL SELECT coalesce(max(id), 0) "
        "FROM communities UNION ALL SELECT coalesce(max(id), 0) FROM posts"
    ).fetchall()
    users, communities, post_base = (int(r[0]) for r in row)
    huge, small = communities + 1, communities + 2
    first, last = users + 1, users + members + SMALL_MEMBERS
    with conn.transaction():
        conn.execute(
            "INSERT INTO communities (id, name) VALUES (%s, 'huge'), (%s, 'small')", (huge, small)
        )
        conn.execute(
            "INSERT INTO users (id, reputation, last_active_at) "
            "SELECT g, 1, now() FROM generate_series(%s::bigint, %s::bigint) g",
            (first, last),
        )
        conn.execute(
            "INSERT INTO memberships (community_id, user_id) "
            "SELECT %s, g FROM generate_series(%s::bigint, %s::bigint) g",
            (huge, first, first + members - 1),
        )
        conn.execute(
            "INSERT INTO memberships (community_id, user_id) "
            "SELECT %s, g FROM generate_series(%s::bigint, %s::bigint) g",
            (small, first + members, last),
        )
        for community, offset in ((huge, 0), (small, posts)):
            conn.execute(
                "INSERT INTO posts (id, community_id, author_id, created_at, reactions_count) "
                "SELECT %s + g, %s, %s, now() - g * interval '1 minute', g %% 17 "
                "FROM generate_series(1, %s) g",
                (post_base + offset, community, first, posts),
            )
            conn.execute(
                "INSERT INTO feed_events (kind, post_id, community_id) "
                "SELECT 'post_created', %s + g, %s FROM generate_series(1, %s) g ORDER BY g",
                (post_base + offset, community, posts),
            )
    conn.execute("VACUUM ANALYZE")
    return {"huge": huge, "small": small, "first_user": first, "members": members}


def _page_latencies(
    reader: Any, user_ids: list[int], reads: int, pages: int = 3
) -> dict[str, float]:
    """p50/p99 milliseconds of each page read (first page, then `pages - 1` by cursor)."""
    rng = random.Random(11)
    times: list[float] = []
    for _ in range(reads):
        cursor = None
        user_id = rng.choice(user_ids)
        for _ in range(pages):
            started = time.perf_counter()
            page = reader.user_feed(user_id, 20, cursor)
            times.append((time.perf_counter() - started) * 1000)
            cursor = page.next_cursor
            if cursor is None:
                break
    ordered = sorted(times)
    return {
        "reads": len(ordered),
        "p50_ms": ordered[len(ordered) // 2],
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
    }


def _timed_fanout(ctx: Context, events: int) -> dict[str, Any]:
    """`events` events fanned out: entries, seconds, RSS before and its peak during."""
    checkpoint(ctx.conn)
    was_reset = reset_peak_rss()
    rss_before = current_rss_mb()
    with stopwatch() as elapsed:
        report = run_fanout(ctx, max_events=events)
    seconds = elapsed()
    return {
        "events": report.events,
        "entries_written": report.entries_written,
        "seconds_wall": seconds,
        "seconds_per_post": seconds / max(report.events, 1),
        "rss_mb_before": rss_before,
        "peak_rss_mb_during": hwm_rss_mb() if was_reset else None,
    }


def measure_pull(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    from feedctl.pipelines.fanout.shards import reshard
    from feedctl.read.pages import FeedReader

    note(f"pull: seeding a community of {args.pull_members:,} members ...")
    reshard(ctx, 1)  # the shard runs left the consumer sharded
    run_fanout(ctx)  # nothing left behind before the measured run
    world = _seed_pull_world(ctx.conn, args.pull_members, args.pull_posts)
    if args.pull_members <= ctx.settings.pull_threshold:
        note(f"pull: {args.pull_members:,} members is not over pull_threshold: not pulled")
    checkpoint(ctx.conn)
    note("pull: fanning out the pulled community's posts, then the small one's ...")
    run_fanout(ctx, max_events=1)  # the first post: the community switches to pull here
    huge_run = _timed_fanout(ctx, args.pull_posts - 1)  # the pulled community's other posts
    small_run = _timed_fanout(ctx, args.pull_posts)
    pulled = ctx.conn.execute(
        "SELECT community_id FROM feed_pull_community WHERE community_id = %s", (world["huge"],)
    ).fetchall()
    by_community = dict(
        ctx.conn.execute(
            "SELECT community_id, count(*) FROM feed_entry WHERE community_id = ANY(%s) GROUP BY 1",
            ([world["huge"], world["small"]],),
        ).fetchall()
    )
    if by_community.get(world["huge"], 0) != 0 and pulled:
        raise BenchFailure("the pulled community's posts were fanned out")
    if by_community.get(world["small"], 0) != SMALL_MEMBERS * args.pull_posts:
        raise BenchFailure("the small community's posts were not all fanned out")
    note(f"pull: reading pages ({args.reads} walks per kind) ...")
    ctx.conn.execute("VACUUM ANALYZE")
    reader = FeedReader.for_settings(ctx.conn, ctx.cache, ctx.settings)
    first = world["first_user"]
    pulled_members = list(range(first, first + args.pull_members))
    small_members = list(range(first + args.pull_members, first + args.pull_members + 200))
    _page_latencies(reader, small_members, len(small_members), pages=1)  # fill their caches
    small = _page_latencies(reader, small_members, args.reads)
    huge = _page_latencies(reader, pulled_members, args.reads)
    small_again = _page_latencies(reader, small_members, args.reads)
    return {
        "members": args.pull_members,
        "posts_per_community": args.pull_posts,
        "pulled": bool(pulled),
        "pull_threshold": ctx.settings.pull_threshold,
        "entries_of_pulled_community": by_community.get(world["huge"], 0),
        "entries_of_small_community": by_community.get(world["small"], 0),
        "fanout_pulled": huge_run,
        "fanout_small": small_run,
        "read_pulled_member": huge,
        "read_fanned_out_member": small,
        "read_fanned_out_member_again": small_again,
        "p50_ratio_pulled_vs_fanned_out": ratio(huge["p50_ms"], small_again["p50_ms"]),
        "p99_ratio_pulled_vs_fanned_out": ratio(huge["p99_ms"], small_again["p99_ms"]),
    }


# ------------------------------------------------------------------------------- shards


@dataclasses.dataclass(frozen=True)
class ShardedRun:
    shards: int
    entries: int
    seconds: float  # wall time, from starting the processes to the last one's exit
    batches_retried: int

    @property
    def entries_per_second(self) -> float:
        return rate(self.entries, self.seconds)


def _reset_fanout(ctx: Context) -> None:
    """Back to the seeded backlog: no entries, scores, positions or cached feeds."""
    ctx.conn.execute(
        "TRUNCATE feed_entry, post_score, post_score_change, feed_offset_state, feed_repair, "
        "feed_fanout_layout"
    )
    delete_keys(ctx.redis, f"{ctx.prefix}feed:")
    cache_empty_feeds(ctx)
    ctx.conn.execute("VACUUM ANALYZE feed_entry")
    checkpoint(ctx.conn)


def measure_shards(
    ctx: Context, target: BenchTarget, cap: int, count: int, expected: int
) -> ShardedRun:
    """The backlog fanned out by `count` concurrent `feedctl fanout --shard i/count`."""
    from feedctl.pipelines.fanout.shards import reshard

    note(f"fanning the backlog out again with {count} concurrent shard(s) ...")
    _reset_fanout(ctx)
    reshard(ctx, count)
    settings = settings_for(target, cap)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEEDCTL_")}
    env.update(
        FEEDCTL_DATABASE_URL=settings.database_url or "",
        FEEDCTL_REDIS_URL=settings.redis_url or "",
        FEEDCTL_REDIS_KEY_PREFIX=settings.redis_key_prefix,
        FEEDCTL_FEED_CAP=str(cap),
        FEEDCTL_FEED_RETENTION="0",
        FEEDCTL_HOME=str(settings.home),
    )
    command = [sys.executable, "-m", "feedctl", "--json", "fanout"]
    shard_args = [[] if count == 1 else ["--shard", f"{i}/{count}"] for i in range(count)]
    with stopwatch() as elapsed:
        processes = [
            subprocess.Popen([*command, *extra], env=env, stdout=subprocess.PIPE, text=True)
            for extra in shard_args
        ]
        outputs = [process.communicate()[0] for process in processes]
    seconds = elapsed()
    if any(process.returncode != 0 for process in processes):
        raise BenchFailure(f"a fan-out shard of {count} failed")
    reports = [json.loads(out) for out in outputs]
    row = ctx.conn.execute("SELECT count(*) FROM feed_entry").fetchone()
    entries = int(row[0]) if row else -1
    if entries != expected or sum(r["entries_written"] for r in reports) != expected:
        raise BenchFailure(f"{count} shards wrote {entries:,} entries, expected {expected:,}")
    retried = sum(int(r.get("batches_retried", 0)) for r in reports)
    return ShardedRun(count, entries, seconds, retried)


def shard_results(runs: list[ShardedRun], copy_rate: float) -> list[dict[str, Any]]:
    one = next((r.entries_per_second for r in runs if r.shards == 1), None)
    return [
        {
            "shards": r.shards,
            "entries": r.entries,
            "seconds_wall": r.seconds,
            "entries_per_second": r.entries_per_second,
            "vs_copy_fanout_order": ratio(r.entries_per_second, copy_rate),
            "speedup_vs_one_shard": ratio(r.entries_per_second, one) if one else None,
            "batches_retried": r.batches_retried,
            "cpus": os.cpu_count(),
        }
        for r in runs
    ]


# ------------------------------------------------------------------------------ results


def _targets(pg_ratio: float, redis_ratio: float, naive_ratio: float) -> list[dict[str, Any]]:
    return [
        {
            "name": "fan-out PostgreSQL rate / raw COPY rate (fan-out order)",
            "ratio": pg_ratio,
            "target": PG_TARGET,
            "verdict": verdict(pg_ratio >= PG_TARGET),
        },
        {
            "name": "fan-out Redis rate / best pipelined ZADD rate",
            "ratio": redis_ratio,
            "target": REDIS_TARGET,
            "verdict": verdict(redis_ratio >= REDIS_TARGET),
        },
        {
            "name": "fan-out overall rate / naive loop rate",
            "ratio": naive_ratio,
            "target": NAIVE_TARGET,
            "verdict": verdict(naive_ratio >= NAIVE_TARGET),
        },
    ]


def results(
    args: argparse.Namespace,
    target: BenchTarget,
    backlog: Backlog,
    users_cached: int,
    fanout: FanoutRun,
    sample: dict[str, int],
    copies: dict[str, CopyLimit],
    zadds: dict[str, ZaddLimit],
    naive: NaiveRun,
    facts: dict[str, dict[str, str]],
) -> dict[str, Any]:
    report = fanout.report
    written = report.entries_written
    pg_rate = rate(written, report.seconds_database)
    redis_rate = rate(written, report.seconds_cache)
    overall = rate(written, fanout.wall_seconds)
    best_zadd = max(zadds.values(), key=lambda z: z.members_per_second)
    copy_main = copies["fanout_order"].rows_per_second
    return {
        "servers": {
            "postgres": {"source": target.postgres_source, **facts["postgres"]},
            "redis": {"source": target.redis_source, **facts["redis"]},
        },
        "arguments": {"entries": args.entries, "sample": args.sample, "cap": args.cap},
        "backlog": {
            "spec": {
                k: getattr(backlog.spec, k)
                for k in ("users", "communities", "posts", "seed", "deleted_share")
            },
            "seed_report": dataclasses.asdict(backlog.seeded),
            "seed_seconds": backlog.seed_seconds,
            "feeds_cached_before": users_cached,
        },
        "fanout": {
            "events": report.events,
            "batches": report.batches,
            "entries_written": written,
            "seconds_wall": fanout.wall_seconds,
            "seconds_database": report.seconds_database,
            "seconds_cache": report.seconds_cache,
            "postgres_entries_per_second": pg_rate,
            "redis_entries_per_second": redis_rate,
            "overall_entries_per_second": overall,
            "redis_failures": report.redis_failures,
            "peak_rss_mb_before": fanout.peak_rss_before_mb,
            "peak_rss_mb_after": fanout.peak_rss_after_mb,
            "peak_rss_mb_during": fanout.peak_rss_during_mb,
            "rss_mb_before": fanout.rss_before_mb,
            "rss_mb_after": fanout.rss_after_mb,
            "per_batch": fanout.batches,
            "cached_sample": sample,
        },
        "limits": {
            **{
                f"copy_{name}": {
                    "label": c.label,
                    "rows": c.rows,
                    "seconds": c.seconds,
                    "rows_per_second": c.rows_per_second,
                }
                for name, c in copies.items()
            },
            **{
                f"zadd_{name}": {
                    "label": z.label,
                    "members": z.members,
                    "seconds": z.seconds,
                    "members_per_second": z.members_per_second,
                }
                for name, z in zadds.items()
            },
            "naive": {
                "rows": naive.rows,
                "seconds": naive.seconds,
                "seconds_database": naive.seconds_database,
                "seconds_cache": naive.seconds_cache,
                "rows_per_second": naive.rows_per_second,
                "database_rows_per_second": rate(naive.rows, naive.seconds_database),
                "cache_rows_per_second": rate(naive.rows, naive.seconds_cache),
            },
        },
        "ratios": {
            "postgres_vs_copy_fanout_order": ratio(pg_rate, copy_main),
            "postgres_vs_copy_sorted": ratio(pg_rate, copies["sorted"].rows_per_second),
            "postgres_vs_copy_no_indexes": ratio(pg_rate, copies["no_indexes"].rows_per_second),
            "redis_vs_best_zadd": ratio(redis_rate, best_zadd.members_per_second),
            "redis_best_zadd": best_zadd.label,
            "overall_vs_naive": ratio(overall, naive.rows_per_second),
        },
        "targets": _targets(
            ratio(pg_rate, copy_main),
            ratio(redis_rate, best_zadd.members_per_second),
            ratio(overall, naive.rows_per_second),
        ),
    }


def _line(label: str, value: str, detail: str = "") -> str:
    return f"  {label:<58} {value:>16}  {detail}".rstrip()


def _server_lines(doc: dict[str, Any]) -> list[str]:
    pg, rd = doc["servers"]["postgres"], doc["servers"]["redis"]
    return [
        f"PostgreSQL {pg['server_version']} ({pg['source']}): fsync={pg['fsync']}, "
        f"synchronous_commit={pg['synchronous_commit']}, shared_buffers={pg['shared_buffers']}, "
        f"max_wal_size={pg['max_wal_size']}, work_mem={pg['work_mem']}",
        f"Redis {rd['version']} ({rd['source']})",
    ]


def _fanout_lines(doc: dict[str, Any]) -> list[str]:
    fo, seeded = doc["fanout"], doc["backlog"]["seed_report"]
    spec = doc["backlog"]["spec"]
    return [
        f"backlog: SeedSpec(users={spec['users']:,}, communities={spec['communities']:,}, "
        f"posts={spec['posts']:,}, join_events=False, deleted_share=0) -> "
        f"fanout_entries {seeded['fanout_entries']:,}, {seeded['events']:,} post_created "
        f"events, {seeded['memberships']:,} memberships "
        f"(seeded in {doc['backlog']['seed_seconds']:.1f} s)",
        "",
        "feedctl fan-out, end to end (run_fanout)",
        _line(
            "entries written (= count(*) feed_entry = fanout_entries)",
            f"{fo['entries_written']:,}",
            f"{fo['events']:,} events, {fo['batches']} batches",
        ),
        _line(
            "into PostgreSQL (entries_written / seconds_database)",
            f"{fo['postgres_entries_per_second']:,.0f} /s",
            f"{fo['seconds_database']:.1f} s",
        ),
        _line(
            "into Redis (entries_written / seconds_cache)",
            f"{fo['redis_entries_per_second']:,.0f} /s",
            f"{fo['seconds_cache']:.1f} s",
        ),
        _line(
            "overall (entries / wall time)",
            f"{fo['overall_entries_per_second']:,.0f} /s",
            f"{fo['seconds_wall']:.1f} s",
        ),
        _line(
            "events/s, first batch -> last batch (wall time)",
            f"{_batch_rate(fo['per_batch'], 0)} /s",
            f"-> {_batch_rate(fo['per_batch'], -1)} /s",
        ),
        _line(
            "peak RSS after the fan-out (ru_maxrss)",
            f"{fo['peak_rss_mb_after']:,.0f} MB",
            f"before the fan-out: peak {fo['peak_rss_mb_before']:,.0f} MB, "
            f"current {fo['rss_mb_before']:,.0f} MB",
        ),
        _line(
            "peak RSS during the fan-out (VmHWM, reset just before it)",
            _mb(fo["peak_rss_mb_during"]),
            f"current after it {fo['rss_mb_after']:,.0f} MB",
        ),
        _line(
            f"cached sample: sum(ZCARD-1) over {fo['cached_sample']['users']} users",
            f"{fo['cached_sample']['cached_entries']:,}",
            f"= sum(min(count, cap)) {fo['cached_sample']['expected_entries']:,}: OK",
        ),
        _line("Redis failures", f"{fo['redis_failures']}"),
    ]


def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} MB"


def _batch_rate(batches: list[dict[str, float]], index: int) -> str:
    """The events/s of one batch, from the running totals before and after it."""
    position = index % len(batches)
    after = batches[position]
    before = batches[position - 1] if position else dict.fromkeys(after, 0.0)
    events = int(after["events"] - before["events"])
    return f"{rate(events, after['seconds'] - before['seconds']):,.0f}"


def _limit_lines(doc: dict[str, Any]) -> list[str]:
    limits = doc["limits"]
    lines = ["", "limits measured in this run (same rows, same servers)"]
    for name in ("copy_fanout_order", "copy_sorted", "copy_no_indexes"):
        c = limits[name]
        lines.append(_line(c["label"], f"{c['rows_per_second']:,.0f} /s", f"{c['seconds']:.1f} s"))
    for name in ("zadd_one_member", "zadd_multi_member"):
        z = limits[name]
        lines.append(
            _line(z["label"], f"{z['members_per_second']:,.0f} /s", f"{z['seconds']:.1f} s")
        )
    nv = limits["naive"]
    lines.append(
        _line(
            f"naive loop, {nv['rows']:,} rows: INSERT+commit, then ZADD, per row",
            f"{nv['rows_per_second']:,.0f} /s",
            f"INSERT {nv['database_rows_per_second']:,.0f} /s, "
            f"ZADD {nv['cache_rows_per_second']:,.0f} /s",
        )
    )
    return lines


def _ratio_lines(doc: dict[str, Any]) -> list[str]:
    r = doc["ratios"]
    lines = ["", "ratios (feedctl / limit)"]
    lines.append(
        _line(
            "PostgreSQL / raw COPY, sorted by (user_id, post_id)",
            f"{r['postgres_vs_copy_sorted']:.2f}",
            "(reference)",
        )
    )
    lines.append(
        _line(
            "PostgreSQL / raw COPY, no indexes",
            f"{r['postgres_vs_copy_no_indexes']:.2f}",
            "(reference)",
        )
    )
    lines.append("")
    lines.append("targets")
    for t in doc["targets"]:
        shown = f"{t['ratio']:.1f}x" if t["target"] >= 10 else f"{t['ratio']:.2f}"
        wanted = f">= {t['target']:.0f}x" if t["target"] >= 10 else f">= {t['target']:.2f}"
        lines.append(_line(t["name"], shown, f"{wanted}  {t['verdict']}"))
    lines.append(f"  (best ZADD limit: {r['redis_best_zadd']})")
    return lines


def _shard_lines(doc: dict[str, Any]) -> list[str]:
    if not doc["shards"]:
        return []
    cpus = doc["shards"][0]["cpus"]
    lines = [
        "",
        f"sharded fan-out: N concurrent `feedctl fanout --shard i/N` processes, wall time "
        f"with process start, {cpus} CPUs",
    ]
    for r in doc["shards"]:
        speedup = r["speedup_vs_one_shard"]
        lines.append(
            _line(
                f"{r['shards']} shard(s): {r['entries']:,} entries in {r['seconds_wall']:.1f} s",
                f"{r['entries_per_second']:,.0f} /s",
                f"{r['vs_copy_fanout_order']:.2f} of raw COPY (fan-out order)"
                + (f", {speedup:.2f}x one shard" if speedup is not None else "")
                + (f", {r['batches_retried']} batches retried" if r["batches_retried"] else ""),
            )
        )
    return lines


def _pull_lines(doc: dict[str, Any]) -> list[str]:
    pull = doc.get("pull")
    if not pull:
        return []
    state = "pulled" if pull["pulled"] else "NOT pulled"
    huge, small = pull["read_pulled_member"], pull["read_fanned_out_member"]
    again = pull["read_fanned_out_member_again"]
    lines = [
        "",
        f"pull: a community of {pull['members']:,} members ({state}, pull_threshold "
        f"{pull['pull_threshold']:,}) and one of {SMALL_MEMBERS}, {pull['posts_per_community']} "
        "posts each",
    ]
    for label, run in (
        (f"fan-out, pulled community ({pull['members']:,} members)", pull["fanout_pulled"]),
        (f"fan-out, small community ({SMALL_MEMBERS} members)", pull["fanout_small"]),
    ):
        lines.append(
            _line(
                f"{label}: {run['events']} posts",
                f"{run['seconds_wall']:.2f} s",
                f"{run['entries_written']:,} entries, "
                f"{run['seconds_per_post'] * 1000:.2f} ms/post; "
                f"RSS {_mb(run['rss_mb_before'])} before, peak {_mb(run['peak_rss_mb_during'])}",
            )
        )
    return [
        *lines,
        _line(
            "page of 20, member of the pulled community: p50 / p99",
            f"{huge['p50_ms']:.2f} / {huge['p99_ms']:.2f} ms",
            f"{huge['reads']} reads (merged at read time, PostgreSQL)",
        ),
        _line(
            "page of 20, fanned-out feed of the same size: p50 / p99",
            f"{small['p50_ms']:.2f} / {small['p99_ms']:.2f} ms",
            f"then {again['p50_ms']:.2f} / {again['p99_ms']:.2f} ms (cached)",
        ),
        _line(
            "pulled / fanned out (cached, second run): p50, p99",
            f"{pull['p50_ratio_pulled_vs_fanned_out']:.2f}x, "
            f"{pull['p99_ratio_pulled_vs_fanned_out']:.2f}x",
        ),
    ]


def render(doc: dict[str, Any]) -> str:
    lines = ["feedctl fan-out benchmark", *_server_lines(doc), *_fanout_lines(doc)]
    lines += [*_limit_lines(doc), *_ratio_lines(doc), *_shard_lines(doc), *_pull_lines(doc)]
    lines.append(f"\nruntime {doc['runtime_seconds']:.0f} s")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    try:
        with bench_target() as target:
            doc = run(args, target)
    except BenchFailure as exc:
        print(f"fanout benchmark FAILED: {exc}", file=sys.stderr)
        return 1
    doc["runtime_seconds"] = time.perf_counter() - started
    print(json.dumps(doc, indent=2) if args.json else render(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
