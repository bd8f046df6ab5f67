"""Benchmark: the memory and time of fanning one post out to a million members.

    .venv/bin/python bench/fanout_memory.py [--members N] [--active-share F] [--json]

Seeds with COPY: N users, one community with all of them as members, one post and one
post_created event. Every 10th user's feed is cached (empty), so the Redis path runs
too; a share of users were active within the last day, so the fan-out's warming of
active users' uncached feeds runs as well (--active-share 0 turns that off). Then
times `run_fanout` and reports this process's peak RSS (target < 400 MB) against the
RSS measured just before the fan-out.

The exit code is 0 whether the target is met or not (a benchmark reports); it is
non-zero only when the fan-out's result is wrong or a server cannot be used.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import polars as pl
import psycopg
from benchlib.measure import (
    checkpoint,
    current_rss_mb,
    hwm_rss_mb,
    peak_rss_mb,
    postgres_facts,
    rate,
    redis_facts,
    reset_peak_rss,
    stopwatch,
    verdict,
)
from benchlib.servers import BenchTarget, bench_target, note
from psycopg import sql

from feedctl.cache.keys import user_feed
from feedctl.config import Settings
from feedctl.context import Context, open_context
from feedctl.db.migrations import upgrade
from feedctl.pipelines.fanout.run import FanoutReport, run_fanout

COMMUNITY_ID: Final = 1
POST_ID: Final = 1
CACHED_EVERY: Final = 10  # users whose id is a multiple of this have a cached feed
USER_CHUNK: Final = 100_000  # rows per COPY chunk: keeps the seeding's memory small
CACHE_CHUNK: Final = 5_000  # feeds per replace_many / ZCARD pipeline
RSS_TARGET_MB: Final = 400.0


class BenchFailure(Exception):
    """The fan-out's result is wrong: the benchmark exits non-zero."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000, help="community size")
    parser.add_argument(
        "--active-share",
        type=float,
        default=0.3,
        help="share of users active within the last day (the seed's default share)",
    )
    parser.add_argument("--cap", type=int, default=5000, help="items kept per cached feed")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args(argv)
    if args.members < 1 or args.cap < 1:
        parser.error("--members and --cap must be at least 1")
    if not 0.0 <= args.active_share <= 1.0:
        parser.error("--active-share must be between 0 and 1")
    return args


# ------------------------------------------------------------------------------ seeding


def _csv(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_csv(buffer, include_header=False)
    return buffer.getvalue()


def _copy(
    conn: psycopg.Connection[Any], table: str, columns: Sequence[str], chunks: Iterator[bytes]
) -> None:
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with conn.cursor() as cur, cur.copy(statement) as copy:
        for chunk in chunks:
            copy.write(chunk)


def _id_chunks(members: int) -> Iterator[npt.NDArray[np.int64]]:
    for start in range(1, members + 1, USER_CHUNK):
        yield np.arange(start, min(start + USER_CHUNK, members + 1), dtype=np.int64)


def _user_chunks(members: int, active: npt.NDArray[np.bool_], now: datetime) -> Iterator[bytes]:
    """Users; the active ones were last seen an hour ago, the others never (NULL)."""
    seen = pl.lit(now - timedelta(hours=1), dtype=pl.Datetime("us", "UTC"))
    for ids in _id_chunks(members):
        frame = pl.DataFrame({"id": ids, "reputation": np.full(len(ids), 10.0)})
        yield _csv(
            frame.with_columns(
                last_active_at=pl.when(pl.Series(active[ids - 1])).then(seen).otherwise(None)
            )
        )


def _membership_chunks(members: int, now: datetime) -> Iterator[bytes]:
    joined = pl.lit(now - timedelta(days=30), dtype=pl.Datetime("us", "UTC"))
    for ids in _id_chunks(members):
        frame = pl.DataFrame({"community_id": np.full(len(ids), COMMUNITY_ID), "user_id": ids})
        yield _csv(frame.with_columns(joined_at=joined))


def active_mask(members: int, share: float) -> npt.NDArray[np.bool_]:
    """Which users (index = id - 1) were active recently: a fixed random `share`."""
    mask: npt.NDArray[np.bool_] = np.random.default_rng(1).random(members) < share
    return mask


def seed_one_post(
    conn: psycopg.Connection[Any], members: int, active: npt.NDArray[np.bool_]
) -> None:
    """Users, one community with all of them as members, one post and its event."""
    now = datetime.now(UTC)
    with conn.transaction():
        _copy(
            conn,
            "users",
            ("id", "reputation", "last_active_at"),
            _user_chunks(members, active, now),
        )
        _copy(conn, "communities", ("id", "name"), iter([f"{COMMUNITY_ID},everyone\n".encode()]))
        _copy(
            conn,
            "memberships",
            ("community_id", "user_id", "joined_at"),
            _membership_chunks(members, now),
        )
        post = f"{POST_ID},{COMMUNITY_ID},1,{(now - timedelta(minutes=1)).isoformat()},25,4,\n"
        _copy(
            conn,
            "posts",
            (
                "id",
                "community_id",
                "author_id",
                "created_at",
                "reactions_count",
                "comments_count",
                "deleted_at",
            ),
            iter([post.encode()]),
        )
        event = f"post_created,{POST_ID},{COMMUNITY_ID},1,{now.isoformat()}\n"
        _copy(
            conn,
            "feed_events",
            ("kind", "post_id", "community_id", "user_id", "created_at"),
            iter([event.encode()]),
        )


def cached_user_ids(members: int) -> list[int]:
    return list(range(CACHED_EVERY, members + 1, CACHED_EVERY))


def cache_empty_feeds(ctx: Context, user_ids: list[int]) -> None:
    for start in range(0, len(user_ids), CACHE_CHUNK):
        chunk = user_ids[start : start + CACHE_CHUNK]
        ctx.cache.replace_many((user_feed(u).key(ctx.prefix), [], False) for u in chunk)


# ------------------------------------------------------------------------------ fan-out


@dataclasses.dataclass(frozen=True)
class MemoryRun:
    report: FanoutReport
    wall_seconds: float
    peak_rss_before_mb: float  # ru_maxrss before the fan-out (seeding and all)
    rss_before_mb: float  # resident just before the fan-out: the baseline
    peak_rss_after_mb: float  # ru_maxrss after the fan-out
    peak_rss_during_mb: float | None  # VmHWM, reset just before the fan-out
    rss_after_mb: float


def time_fanout(ctx: Context) -> MemoryRun:
    checkpoint(ctx.conn)
    peak_before = peak_rss_mb()
    was_reset = reset_peak_rss()
    baseline = current_rss_mb()
    with stopwatch() as elapsed:
        report = run_fanout(ctx)
    return MemoryRun(
        report=report,
        wall_seconds=elapsed(),
        peak_rss_before_mb=peak_before,
        rss_before_mb=baseline,
        peak_rss_after_mb=peak_rss_mb(),
        peak_rss_during_mb=hwm_rss_mb() if was_reset else None,
        rss_after_mb=current_rss_mb(),
    )


def check(ctx: Context, run: MemoryRun, members: int, cached: list[int]) -> dict[str, int]:
    """Every member got the entry in PostgreSQL; every cached feed got it in Redis."""
    row = ctx.conn.execute("SELECT count(*) FROM feed_entry").fetchone()
    in_table = int(row[0]) if row else -1
    if not in_table == run.report.entries_written == members:
        raise BenchFailure(
            f"count(*) feed_entry = {in_table}, entries_written = "
            f"{run.report.entries_written}, members = {members}: they must be equal"
        )
    if run.report.redis_failures:
        raise BenchFailure(f"fan-out reported {run.report.redis_failures} Redis failures")
    holding = 0
    for start in range(0, len(cached), CACHE_CHUNK):
        with ctx.redis.pipeline(transaction=False) as pipe:
            for user_id in cached[start : start + CACHE_CHUNK]:
                pipe.zscore(user_feed(user_id).key(ctx.prefix), str(POST_ID))
            holding += sum(score is not None for score in pipe.execute())
    if holding != len(cached):
        raise BenchFailure(f"{len(cached) - holding} of {len(cached)} cached feeds lack the post")
    return {"entries": in_table, "cached_feeds_holding_post": holding}


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
    note(f"seeding {args.members:,} members of one community ...")
    active = active_mask(args.members, args.active_share)
    with psycopg.connect(target.database_url, autocommit=True) as conn, stopwatch() as seeding:
        upgrade(conn)
        seed_one_post(conn, args.members, active)
        conn.execute("VACUUM ANALYZE")
    cached = cached_user_ids(args.members)
    population = {
        "members": args.members,
        "cached_feeds": len(cached),
        "active_users": int(active.sum()),
        # active users without a cached feed: the fan-out warms theirs
        "expected_warm": int(active.sum() - active[np.asarray(cached, dtype=np.int64) - 1].sum()),
        "seed_seconds": seeding(),
    }
    with open_context(settings_for(target, args.cap)) as ctx:
        cache_empty_feeds(ctx, cached)
        note(f"running the fan-out of one post to {args.members:,} members ...")
        fanout = time_fanout(ctx)
        checked = check(ctx, fanout, args.members, cached)
        facts = {"postgres": postgres_facts(ctx.conn), "redis": redis_facts(ctx.redis)}
    return document(args, target, population, fanout, checked, facts)


# ------------------------------------------------------------------------------ results


def document(
    args: argparse.Namespace,
    target: BenchTarget,
    population: dict[str, Any],
    fanout: MemoryRun,
    checked: dict[str, int],
    facts: dict[str, dict[str, str]],
) -> dict[str, Any]:
    report = fanout.report
    peak = fanout.peak_rss_after_mb
    return {
        "servers": {
            "postgres": {"source": target.postgres_source, **facts["postgres"]},
            "redis": {"source": target.redis_source, **facts["redis"]},
        },
        "arguments": {"members": args.members, "active_share": args.active_share, "cap": args.cap},
        "population": population,
        "fanout": {
            "entries_written": report.entries_written,
            "feeds_warmed": report.feeds_warmed,
            "seconds_wall": fanout.wall_seconds,
            "seconds_database": report.seconds_database,
            "seconds_cache": report.seconds_cache,
            "postgres_entries_per_second": rate(report.entries_written, report.seconds_database),
            "redis_stage_members_per_second": rate(args.members, report.seconds_cache),
            "overall_entries_per_second": rate(report.entries_written, fanout.wall_seconds),
            "redis_failures": report.redis_failures,
            "checked": checked,
        },
        "memory": {
            "baseline_rss_mb": fanout.rss_before_mb,
            "peak_rss_mb_before": fanout.peak_rss_before_mb,
            "peak_rss_mb": peak,
            "peak_rss_mb_during": fanout.peak_rss_during_mb,
            "rss_mb_after": fanout.rss_after_mb,
            "growth_mb": peak - fanout.rss_before_mb,
            "target_mb": RSS_TARGET_MB,
            "ratio_to_target": peak / RSS_TARGET_MB,
            "verdict": verdict(peak < RSS_TARGET_MB),
        },
    }


def _line(label: str, value: str, detail: str = "") -> str:
    return f"  {label:<52} {value:>14}  {detail}".rstrip()


def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} MB"


def render(doc: dict[str, Any]) -> str:
    pg, rd = doc["servers"]["postgres"], doc["servers"]["redis"]
    pop, fo, mem = doc["population"], doc["fanout"], doc["memory"]
    return "\n".join(
        [
            "feedctl fan-out memory benchmark: one post to every member of one community",
            f"PostgreSQL {pg['server_version']} ({pg['source']}): fsync={pg['fsync']}, "
            f"shared_buffers={pg['shared_buffers']}, work_mem={pg['work_mem']} · "
            f"Redis {rd['version']} ({rd['source']})",
            f"members {pop['members']:,}; cached feeds {pop['cached_feeds']:,} (every "
            f"{CACHED_EVERY}th user); active users {pop['active_users']:,} "
            f"(seeded with COPY in {pop['seed_seconds']:.1f} s)",
            "",
            _line(
                "entries written (= count(*) feed_entry = members)", f"{fo['entries_written']:,}"
            ),
            _line(
                "cached feeds now holding the post",
                f"{fo['checked']['cached_feeds_holding_post']:,}",
            ),
            _line(
                "uncached active feeds warmed",
                f"{fo['feeds_warmed']:,}",
                f"expected {pop['expected_warm']:,}",
            ),
            _line(
                "fan-out wall time",
                f"{fo['seconds_wall']:.1f} s",
                f"{fo['overall_entries_per_second']:,.0f} entries/s",
            ),
            _line(
                "  PostgreSQL (seconds_database)",
                f"{fo['seconds_database']:.1f} s",
                f"{fo['postgres_entries_per_second']:,.0f} entries/s",
            ),
            _line(
                "  Redis and warming (seconds_cache)",
                f"{fo['seconds_cache']:.1f} s",
                f"{fo['redis_stage_members_per_second']:,.0f} members/s",
            ),
            "",
            _line(
                "baseline RSS just before the fan-out",
                _mb(mem["baseline_rss_mb"]),
                f"peak so far (seeding) {_mb(mem['peak_rss_mb_before'])}",
            ),
            _line(
                "peak RSS after the fan-out (ru_maxrss)",
                _mb(mem["peak_rss_mb"]),
                f"{mem['ratio_to_target']:.2f} of the {mem['target_mb']:.0f} MB target  "
                f"{mem['verdict']}",
            ),
            _line(
                "peak RSS during the fan-out (VmHWM, reset before it)",
                _mb(mem["peak_rss_mb_during"]),
                f"growth over baseline {mem['growth_mb']:,.0f} MB",
            ),
            _line("RSS after the fan-out", _mb(mem["rss_mb_after"])),
            "",
            f"runtime {doc['runtime_seconds']:.0f} s",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    try:
        with bench_target() as target:
            doc = run(args, target)
    except BenchFailure as exc:
        print(f"fanout_memory benchmark FAILED: {exc}", file=sys.stderr)
        return 1
    doc["runtime_seconds"] = time.perf_counter() - started
    print(json.dumps(doc, indent=2) if args.json else render(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
