"""Benchmark: feed pages and cache warming through the library, against this machine's own
limits measured in the same run.

    .venv/bin/python bench/read.py [--entries N] [--pages N] [--cold N] [--cap N] [--json]

1. Seeds at least --entries feed entries (default 5,000,000) into a fresh database: 60,000
   users and 600 communities from feedctl.synth, every post scored by `run_rank`, and
   feed_entry written in one INSERT ... SELECT sorted by (user_id, post_id), indexes after.
2. Warms every user's feed into an empty Redis with `cache_ops.warm` (feeds/s, entries/s,
   peak memory), and checks a sample of cached feeds against PostgreSQL with `cache verify`.
3. The limit: pipelined multi-member ZADD (redis-py, one ZADD per feed key) of 1,000,000 of
   the same members into fresh keys; with a private Redis, also `redis-benchmark` ZADD -P 64.
4. Cached pages: --pages random users' first page of 20 and the page after it, through
   `FeedReader` (every item checked against PostgreSQL, as in production). Floor: a raw
   ZREVRANGE of 20 members.
5. Cold pages: --cold random users whose cached feed is deleted first; the page comes from
   PostgreSQL and the read fills the cache, as in production. Floor: a raw indexed SELECT
   of 20 feed_entry rows.

Servers: FEEDCTL_BENCH_DATABASE_URL / FEEDCTL_BENCH_REDIS_URL (admin URLs: a private
database and key prefix are created and removed), else private embedded servers in a
temporary folder, stopped at the end. Targets print PASS or MISS; the exit code is 0 either
way, and non-zero only when a result is wrong or a server cannot be used.
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
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import psycopg
import redis
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from feedctl.config import Settings
from feedctl.context import Context, open_context
from feedctl.db.migrations import upgrade
from feedctl.pipelines import cache_ops
from feedctl.pipelines.cache_verify import verify
from feedctl.pipelines.rank import run_rank
from feedctl.read.pages import FeedReader
from feedctl.services import EmbeddedPostgres, EmbeddedRedis
from feedctl.synth import SeedReport, SeedSpec, seed

DATABASE_ENV: Final = "FEEDCTL_BENCH_DATABASE_URL"
REDIS_ENV: Final = "FEEDCTL_BENCH_REDIS_URL"
SEED_NOW: Final = datetime(2026, 1, 1, tzinfo=UTC)
USERS: Final = 60_000
COMMUNITIES: Final = 600
POSTS_GUESS: Final = 3_000  # gives about 7M entries with the synth's shape
SEED_ATTEMPTS: Final = 4
PAGE: Final = 20
LIMIT_MEMBERS: Final = 1_000_000
ZADD_MEMBERS: Final = 1_000  # members per ZADD command
ZADD_PIPELINE_MEMBERS: Final = 10_000  # members per pipeline execute
VERIFY_SAMPLE: Final = 500
WARM_TARGET: Final = 0.5
CACHED_P99_MS: Final = 2.0
COLD_P99_MS: Final = 20.0


class BenchFailure(Exception):
    """A result is wrong: the benchmark exits non-zero."""


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=5_000_000, help="feed entries to seed")
    parser.add_argument("--pages", type=int, default=3_000, help="cached first pages timed")
    parser.add_argument("--cold", type=int, default=1_000, help="cold pages timed")
    parser.add_argument("--cap", type=int, default=5_000, help="items kept per cached feed")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args(argv)
    for name in ("entries", "pages", "cold", "cap"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return args


# ------------------------------------------------------------------------------- servers


@dataclasses.dataclass(frozen=True)
class Target:
    database_url: str
    redis_url: str
    prefix: str
    postgres_source: str
    redis_source: str


@contextlib.contextmanager
def _postgres(workdir: Path) -> Iterator[tuple[str, str]]:
    configured = os.environ.get(DATABASE_ENV)
    if configured:
        yield configured, "external"
        return
    server = EmbeddedPostgres(workdir / "postgres")
    url = server.start()
    note(f"started a private PostgreSQL in {server.data_dir}")
    try:
        yield url, "embedded"
    finally:
        server.stop()


@contextlib.contextmanager
def _redis(workdir: Path) -> Iterator[tuple[str, str]]:
    configured = os.environ.get(REDIS_ENV)
    if configured:
        yield configured, "external"
        return
    server = EmbeddedRedis(workdir / "redis")
    url = server.start()
    note(f"started a private Redis in {server.data_dir}")
    try:
        yield url, "embedded"
    finally:
        server.stop()


@contextlib.contextmanager
def _database(admin_url: str, name: str) -> Iterator[str]:
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        params = conninfo_to_dict(admin_url)
        params["dbname"] = name
        yield make_conninfo(**params)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            admin.execute(drop.format(sql.Identifier(name)))


def delete_keys(client: redis.Redis, prefix: str) -> None:
    """Delete every key under `prefix`, walking with SCAN (never KEYS)."""
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            client.unlink(*batch)
            batch.clear()
    if batch:
        client.unlink(*batch)


@contextlib.contextmanager
def bench_target() -> Iterator[Target]:
    token = secrets.token_hex(4)
    with tempfile.TemporaryDirectory(prefix="feedctl-bench-read-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o711)  # PostgreSQL, run as another account under root, must enter it
        with (
            _postgres(workdir) as (admin_url, pg_source),
            _redis(workdir) as (redis_url, redis_source),
            _database(admin_url, f"feedctl_bench_read_{token}") as database_url,
        ):
            prefix = f"feedctl_bench_read_{token}:"
            try:
                yield Target(database_url, redis_url, prefix, pg_source, redis_source)
            finally:
                client = redis.Redis.from_url(redis_url)
                delete_keys(client, prefix)
                client.close()


# ---------------------------------------------------------------------------------- data


@dataclasses.dataclass(frozen=True)
class Data:
    seeded: SeedReport
    entries: int
    users_with_feed: int
    mean_feed: float
    max_feed: int
    seconds: float


def seed_entries(ctx: Context, target: int) -> Data:
    started = time.perf_counter()
    upgrade(ctx.conn)
    seeded = _seed_enough(ctx.conn, target)
    run_rank(ctx, everything=True, include_unscored=True, chunk_size=10_000)
    entries = _write_feed_entries(ctx.conn)
    if entries != seeded.fanout_entries:
        raise BenchFailure(
            f"feed_entry has {entries} rows, the seed promised {seeded.fanout_entries}"
        )
    row = ctx.conn.execute(
        "SELECT count(*), avg(n), max(n) "
        "FROM (SELECT count(*) AS n FROM feed_entry GROUP BY user_id) f"
    ).fetchone()
    assert row is not None
    return Data(
        seeded, entries, int(row[0]), float(row[1]), int(row[2]), time.perf_counter() - started
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


def _write_feed_entries(conn: psycopg.Connection[Any]) -> int:
    """Every member gets every scored post of their communities: what fan-out would write,
    in one statement, with the indexes of migration 0013 built afterwards."""
    conn.execute("ALTER TABLE feed_entry DROP CONSTRAINT feed_entry_pkey")
    conn.execute("DROP INDEX feed_entry_rank_idx")
    conn.execute("DROP INDEX feed_entry_post_idx")
    written = conn.execute(
        "INSERT INTO feed_entry (user_id, post_id, community_id, author_id, score, created_at) "
        "SELECT m.user_id, p.id, p.community_id, p.author_id, ps.score, p.created_at "
        "FROM posts p JOIN post_score ps ON ps.post_id = p.id "
        "JOIN memberships m ON m.community_id = p.community_id "
        "WHERE p.deleted_at IS NULL ORDER BY m.user_id, p.id"
    ).rowcount
    conn.execute("ALTER TABLE feed_entry ADD PRIMARY KEY (user_id, post_id)")
    conn.execute(
        "CREATE INDEX feed_entry_rank_idx ON feed_entry (user_id, score DESC, post_id DESC)"
    )
    conn.execute("CREATE INDEX feed_entry_post_idx ON feed_entry (post_id)")
    conn.execute("VACUUM ANALYZE")
    return written


# ---------------------------------------------------------------------------------- warm


@dataclasses.dataclass(frozen=True)
class Warm:
    feeds: int
    entries: int
    seconds: float
    rss_before_mb: float
    peak_rss_mb: float | None  # VmHWM during the warm (None when it cannot be reset)
    verified: int

    @property
    def feeds_per_second(self) -> float:
        return self.feeds / self.seconds

    @property
    def entries_per_second(self) -> float:
        return self.entries / self.seconds


def warm_all(ctx: Context) -> Warm:
    users = [row[0] for row in ctx.conn.execute("SELECT id FROM users ORDER BY id")]
    rss_before = _rss_mb("VmRSS")
    reset = _reset_peak_rss()
    started = time.perf_counter()
    report = cache_ops.warm(ctx, "user", users)
    seconds = time.perf_counter() - started
    peak = _rss_mb("VmHWM") if reset else None
    if report.redis_failures or report.feeds_written != len(users):
        raise BenchFailure(f"warm wrote {report.feeds_written} of {len(users)} feeds: {report}")
    checked = verify(ctx, VERIFY_SAMPLE, seed=1)
    if checked.mismatches:
        raise BenchFailure(f"cached feeds disagree with PostgreSQL: {checked.mismatches[:3]}")
    return Warm(
        len(users), report.entries_written, seconds, rss_before, peak, checked.feeds_compared
    )


def _rss_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


# --------------------------------------------------------------------------------- limit


def zadd_limit(ctx: Context) -> tuple[int, float]:
    """Pipelined multi-member ZADD of LIMIT_MEMBERS entries (top-cap of users in id order)
    into fresh keys; the members are read from PostgreSQL before the clock starts."""
    rows = ctx.conn.execute(
        "SELECT user_id, post_id, score FROM feed_entry "
        "WHERE user_id <= (SELECT max(user_id) FROM (SELECT user_id FROM feed_entry "
        "ORDER BY user_id LIMIT %s) f) ORDER BY user_id",
        (LIMIT_MEMBERS,),
    ).fetchall()
    users = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    posts = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
    scores = np.fromiter((r[2] for r in rows), dtype=np.float64, count=len(rows))
    del rows
    bounds = [0, *(np.flatnonzero(np.diff(users)) + 1).tolist(), len(users)]
    prefix = f"{ctx.prefix}limit:"
    started = time.perf_counter()
    with ctx.redis.pipeline(transaction=False) as pipe:
        pending = 0
        for first, end in itertools.pairwise(bounds):
            key = f"{prefix}{int(users[first])}"
            for start in range(first, end, ZADD_MEMBERS):
                stop = min(start + ZADD_MEMBERS, end)
                pairs = zip(scores[start:stop].tolist(), posts[start:stop].tolist(), strict=True)
                pipe.execute_command("ZADD", key, *itertools.chain.from_iterable(pairs))
                pending += stop - start
            if pending >= ZADD_PIPELINE_MEMBERS:
                pipe.execute()
                pending = 0
        pipe.execute()
    seconds = time.perf_counter() - started
    delete_keys(ctx.redis, prefix)
    return len(users), seconds


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


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def sample_users(ctx: Context, count: int, rng: random.Random) -> list[int]:
    rows = ctx.conn.execute(
        "SELECT user_id FROM feed_entry GROUP BY user_id HAVING count(*) > %s ORDER BY 1",
        (2 * PAGE,),
    ).fetchall()
    users = [row[0] for row in rows]
    if not users:
        raise BenchFailure(f"no feed has more than {2 * PAGE} entries: seed more (--entries)")
    return [rng.choice(users) for _ in range(count)]


def cached_pages(ctx: Context, users: list[int]) -> tuple[Latency, Latency, int]:
    reader = FeedReader(ctx.conn, ctx.cache, ctx.settings.cursor_secret)
    for user_id in users[:200]:  # untimed: plans, connections, caches
        reader.user_feed(user_id, PAGE)
    first: list[float] = []
    after: list[float] = []
    from_database = 0
    for user_id in users:
        seconds, page = timed(lambda u=user_id: reader.user_feed(u, PAGE))
        first.append(seconds)
        seconds, second = timed(lambda u=user_id, c=page.next_cursor: reader.user_feed(u, PAGE, c))
        after.append(seconds)
        from_database += (page.source != "cache") + (second.source != "cache")
        if len(page.items) != PAGE or len(second.items) != PAGE:
            raise BenchFailure(
                f"user {user_id}: pages of {len(page.items)} and {len(second.items)}"
            )
    return Latency("first page", first), Latency("next page", after), from_database


def cold_pages(ctx: Context, users: list[int]) -> tuple[Latency, int]:
    reader = FeedReader(ctx.conn, ctx.cache, ctx.settings.cursor_secret)
    samples: list[float] = []
    filled = 0
    for user_id in users:
        key = f"{ctx.prefix}feed:u:{user_id}"
        ctx.redis.delete(key)
        seconds, page = timed(lambda u=user_id: reader.user_feed(u, PAGE))
        samples.append(seconds)
        filled += bool(ctx.redis.exists(key))
        if page.source != "database" or len(page.items) != PAGE:
            raise BenchFailure(
                f"user {user_id}: cold page from {page.source}, {len(page.items)} items"
            )
    return Latency("cold page", samples), filled


def raw_floors(ctx: Context, users: list[int]) -> tuple[Latency, Latency]:
    """What a page costs at the least: one ZREVRANGE of 20, one indexed SELECT of 20."""
    redis_samples: list[float] = []
    pg_samples: list[float] = []
    for user_id in users:
        key = f"{ctx.prefix}feed:u:{user_id}"
        seconds, _ = timed(
            lambda k=key: ctx.redis.zrange(k, 0, PAGE - 1, desc=True, withscores=True)
        )
        redis_samples.append(seconds)
        seconds, _ = timed(
            lambda u=user_id: ctx.conn.execute(
                "SELECT post_id, community_id, author_id, created_at, score FROM feed_entry "
                "WHERE user_id = %s ORDER BY score DESC, post_id DESC LIMIT 20",
                (u,),
            ).fetchall()
        )
        pg_samples.append(seconds)
    return Latency("raw ZREVRANGE of 20", redis_samples), Latency("raw SELECT of 20", pg_samples)


# ------------------------------------------------------------------------------- report


def verdict(passed: bool) -> str:
    return "PASS" if passed else "MISS"


def server_facts(ctx: Context) -> dict[str, str]:
    row = ctx.conn.execute("SHOW server_version").fetchone()
    facts = {"postgres_version": str(row[0]) if row else "?"}
    for name in ("fsync", "shared_buffers"):
        setting = ctx.conn.execute("SELECT current_setting(%s)", (name,)).fetchone()
        facts[name] = str(setting[0]) if setting else "?"
    facts["redis_version"] = str(ctx.redis.info("server").get("redis_version", "?"))
    return facts


def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(20261126)
    with bench_target() as target:
        settings = Settings(
            database_url=target.database_url,
            redis_url=target.redis_url,
            redis_key_prefix=target.prefix,
            feed_cap=args.cap,
            home=Path(tempfile.gettempdir()) / "feedctl-bench-home",
        )
        with open_context(settings) as ctx:
            note("seeding ...")
            data = seed_entries(ctx, args.entries)
            note(f"seeded {data.entries:,} entries in {data.seconds:.0f} s; warming ...")
            warm = warm_all(ctx)
            note("measuring the ZADD limit ...")
            limit_members, limit_seconds = zadd_limit(ctx)
            private = target.redis_source == "embedded"
            server_limit = redis_benchmark_limit(target.redis_url, private, warm.feeds)
            note("timing cached pages ...")
            users = sample_users(ctx, args.pages, rng)
            first, after, fallbacks = cached_pages(ctx, users)
            zrange, select = raw_floors(ctx, users[: args.cold])
            note("timing cold pages ...")
            cold, filled = cold_pages(ctx, sample_users(ctx, args.cold, rng))
            facts = server_facts(ctx)
    return {
        "servers": {"postgres": target.postgres_source, "redis": target.redis_source, **facts},
        "data": data,
        "warm": warm,
        "zadd_limit_members_per_second": limit_members / limit_seconds,
        "zadd_limit_members": limit_members,
        "redis_benchmark_zadd_per_second": server_limit,
        "cached": (first, after, fallbacks),
        "floors": (zrange, select),
        "cold": (cold, filled),
    }


def print_report(result: dict[str, Any], cap: int) -> dict[str, Any]:
    data: Data = result["data"]
    warm: Warm = result["warm"]
    client_limit: float = result["zadd_limit_members_per_second"]
    server_limit: float | None = result["redis_benchmark_zadd_per_second"]
    limit = max(client_limit, server_limit or 0.0)
    first, after, fallbacks = result["cached"]
    zrange, select = result["floors"]
    cold, filled = result["cold"]
    cached = Latency("cached page", first.samples + after.samples)
    servers = result["servers"]
    warm_ratio = warm.entries_per_second / limit
    print("feedctl read benchmark")
    print(
        f"  servers: PostgreSQL {servers['postgres_version']} ({servers['postgres']}; fsync "
        f"{servers['fsync']}, shared_buffers {servers['shared_buffers']}), Redis "
        f"{servers['redis_version']} ({servers['redis']}), {os.cpu_count()} cores"
    )
    print(
        f"  data: {data.entries:,} feed entries, {data.seeded.users:,} users "
        f"({data.users_with_feed:,} with a feed: {data.mean_feed:.0f} entries on average, "
        f"{data.max_feed:,} at most), {data.seeded.communities} communities, "
        f"{data.seeded.posts:,} posts; cap {cap:,}; seeded in {data.seconds:.0f} s"
    )
    print(
        f"  warm: {warm.feeds:,} feeds, {warm.entries:,} entries in {warm.seconds:.1f} s = "
        f"{warm.feeds_per_second:,.0f} feeds/s, {warm.entries_per_second:,.0f} entries/s; "
        f"peak RSS {_mb(warm.peak_rss_mb)} (before {warm.rss_before_mb:.0f} MB); "
        f"{warm.verified} cached feeds verified against PostgreSQL"
    )
    print(
        f"  ZADD limits: redis-py pipelined multi-member ZADD ({result['zadd_limit_members']:,} "
        f"of the same members, fresh keys): {client_limit:,.0f} members/s"
    )
    if server_limit:
        print(
            f"    redis-benchmark -P 64, one member per ZADD over {warm.feeds:,} keys (the "
            f"server alone): {server_limit:,.0f} members/s"
        )
    else:
        print("    redis-benchmark: not run (not installed, or the Redis is not private)")
    print(
        f"    warm / ZADD limit (the higher, {limit:,.0f}/s) = {warm_ratio:.2f}  "
        f"(target >= {WARM_TARGET:.2f})  {verdict(warm_ratio >= WARM_TARGET)}; "
        f"warm / redis-py limit = {warm.entries_per_second / client_limit:.2f}"
    )
    print(
        f"  cached page of {PAGE}, {len(first.samples):,} first + {len(after.samples):,} next "
        f"pages: p50 {cached.p50_ms:.2f} ms, p99 {cached.p99_ms:.2f} ms "
        f"(target p99 < {CACHED_P99_MS:g} ms)  {verdict(cached.p99_ms < CACHED_P99_MS)}"
    )
    for part in (first, after):
        print(f"    {part.label}: p50 {part.p50_ms:.2f} ms, p99 {part.p99_ms:.2f} ms")
    print(f"    pages PostgreSQL answered instead of the cache: {fallbacks}")
    print(
        f"    floor, {zrange.label}: p50 {zrange.p50_ms:.2f} ms, p99 {zrange.p99_ms:.2f} ms; "
        f"cached page / floor: p50 {cached.p50_ms / zrange.p50_ms:.1f}x, "
        f"p99 {cached.p99_ms / zrange.p99_ms:.1f}x"
    )
    print(
        f"  cold page of {PAGE} (PostgreSQL, then the read fills the cache), "
        f"{len(cold.samples):,} pages: p50 {cold.p50_ms:.2f} ms, p99 {cold.p99_ms:.2f} ms "
        f"(target p99 < {COLD_P99_MS:g} ms)  {verdict(cold.p99_ms < COLD_P99_MS)}; "
        f"{filled:,} feeds filled"
    )
    print(
        f"    floor, {select.label}: p50 {select.p50_ms:.2f} ms, p99 {select.p99_ms:.2f} ms; "
        f"cold page / floor: p50 {cold.p50_ms / select.p50_ms:.1f}x, "
        f"p99 {cold.p99_ms / select.p99_ms:.1f}x"
    )
    return {
        "servers": servers,
        "entries": data.entries,
        "warm_feeds_per_second": warm.feeds_per_second,
        "warm_entries_per_second": warm.entries_per_second,
        "zadd_limit_members_per_second": limit,
        "redis_py_zadd_members_per_second": client_limit,
        "warm_ratio": warm_ratio,
        "redis_benchmark_zadd_per_second": server_limit,
        "warm_peak_rss_mb": warm.peak_rss_mb,
        "cached_p50_ms": cached.p50_ms,
        "cached_p99_ms": cached.p99_ms,
        "cold_p50_ms": cold.p50_ms,
        "cold_p99_ms": cold.p99_ms,
        "floor_zrange_p99_ms": zrange.p99_ms,
        "floor_select_p99_ms": select.p99_ms,
    }


def _mb(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.0f} MB"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = run(args)
    except BenchFailure as failure:
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
