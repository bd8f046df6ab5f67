"""Benchmark: feedctl ranking against this machine's own limits, measured in the same run.

    .venv/bin/python bench/rank.py [--entries N] [--scoring-rows N] [--json]

1. Pure scoring: `score_frame` over --scoring-rows rows of synthetic inputs (best of 3).
2. A world of at least --entries feed entries: the project's default synthetic shape,
   scaled; every post scored, every entry written in primary-key order, VACUUM ANALYZE,
   and the feeds of active users (and every community) cached, as fan-out leaves them.
3. The machine's limits for a whole-table rescore, on the same entries, their new scores
   computed untimed. In place: an identical table (same indexes, same load order); timed:
   COPY BINARY of (user_id, post_id, score) into a temporary table, ANALYZE, one
   UPDATE ... FROM. Rewrite and swap: timed: CREATE TABLE AS SELECT the entries with the
   new scores (joined from a table of post scores) in key order, its primary key and two
   indexes, ANALYZE, and a swap by rename in one transaction.
4. `feedctl rank backfill --heuristic v2` end to end in a child process: posts, cached
   community feeds, every feed entry (by partition swap: auto chooses it, every score
   changes), every cached user feed. Its rows/s over the rewrite-and-swap limit's.
5. Nightly `feedctl rank` after 1% of posts got new counters: its time over the backfill's.
6. Peak RSS (its own VmHWM) of the backfill child, and of in-place backfills (--method
   in-place) of one fifth of the users (--shard 0/5), with default chunks and with chunks 8
   times bigger; the first one's rows/s over the in-place limit's.

Targets print PASS or MISS; the exit code is 0 either way (a benchmark reports). It is
non-zero only when a result is wrong (scores that disagree) or a server cannot be used.

Servers: FEEDCTL_BENCH_DATABASE_URL (an admin URL: the run creates and drops its own
database) and FEEDCTL_BENCH_REDIS_URL (the run deletes its own keys), else private
embedded servers in a temporary folder, stopped at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
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
import polars as pl
import psycopg
from benchlib.measure import checkpoint
from benchlib.servers import BenchTarget, bench_target, note

from feedctl.config import Settings
from feedctl.context import Context, open_context
from feedctl.db.migrations import upgrade
from feedctl.pipelines.cache import warm as cache_warm
from feedctl.pipelines.ranking.nightly import run_rank
from feedctl.rank.heuristic import Heuristic, load_heuristic
from feedctl.rank.scoring import score_frame
from feedctl.synth import SeedSpec, seed

DEFAULT_SPEC: Final = SeedSpec()
DEFAULT_SPEC_ENTRIES: Final = 1_115_355  # fan-out entries of the default spec: a first guess
SEED_NOW: Final = datetime(2026, 1, 1, tzinfo=UTC)
CAP: Final = 5_000
SCORING_TARGET: Final = 10_000_000.0
BACKFILL_TARGET: Final = 0.5
NIGHTLY_TARGET: Final = 0.05
CHANGED_SHARE: Final = 0.01
SAMPLE_FEEDS: Final = 100
V2: Final = {
    "version": "bench-v2",
    "half_life_hours": 12.0,
    "reactions_weight": 1.5,
    "comments_weight": 4.0,
    "reputation_weight": 0.5,
}


class BenchFailure(Exception):
    """A result is wrong: the benchmark exits non-zero."""


def settings_for(target: BenchTarget, batch_size: int = 1_000) -> Settings:
    return Settings(
        database_url=target.database_url,
        redis_url=target.redis_url,
        redis_key_prefix=target.prefix,
        feed_retention="0",  # fixed-date worlds: keep every post
        home=target.workdir / "home",
        feed_cap=CAP,
        batch_size=batch_size,
    )


def server_facts(conn: psycopg.Connection[Any]) -> dict[str, str]:
    facts = {"version": str(conn.execute("SHOW server_version").fetchone()[0])}  # type: ignore[index]
    for name in ("fsync", "shared_buffers", "max_wal_size", "work_mem"):
        row = conn.execute("SELECT current_setting(%s)", (name,)).fetchone()
        facts[name] = str(row[0]) if row else "?"
    return facts


# ------------------------------------------------------------------------------ scoring


def measure_scoring(rows: int) -> dict[str, float]:
    """Best of 3 of score_frame over `rows` synthetic rows (frame built untimed)."""
    rng = np.random.default_rng(7)
    start_us = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp() * 1e6)
    frame = pl.DataFrame(
        {
            "created_at": pl.Series(
                rng.integers(start_us, start_us + 365 * 86_400 * 10**6, rows)
            ).cast(pl.Datetime("us", "UTC")),
            "reactions_count": rng.zipf(1.6, rows).astype(np.int64),
            "comments_count": rng.zipf(2.0, rows).astype(np.int64),
            "reputation": rng.pareto(1.5, rows) * 10.0,
        }
    )
    heuristic = load_heuristic()
    best = math.inf
    for _ in range(3):
        started = time.perf_counter()
        scored = score_frame(frame, heuristic)
        best = min(best, time.perf_counter() - started)
        if scored["score"].null_count() or not scored["score"].is_finite().all():
            raise BenchFailure("scoring produced a null or non-finite key")
    return {"rows": rows, "seconds": best, "rows_per_second": rows / best}


# -------------------------------------------------------------------------------- world


def _scaled_spec(entries: int) -> SeedSpec:
    scale = entries / DEFAULT_SPEC_ENTRIES
    return dataclasses.replace(
        DEFAULT_SPEC,
        users=round(DEFAULT_SPEC.users * scale),
        communities=max(1, round(DEFAULT_SPEC.communities * scale)),
        posts=round(DEFAULT_SPEC.posts * scale),
        now=SEED_NOW,
        join_events=False,
        deleted_share=0.0,
    )


def build_world(ctx: Context, entries: int) -> dict[str, Any]:
    """At least `entries` feed entries, scored, in PostgreSQL; active users' feeds cached."""
    started = time.perf_counter()
    conn = ctx.conn
    spec = _scaled_spec(entries)
    for _ in range(4):  # entries grow with posts: roll back and seed more, or fewer, posts
        with conn.transaction() as tx:
            seeded = seed(conn, spec)
            if entries <= seeded.fanout_entries <= entries * 1.25:
                break
            raise psycopg.Rollback(tx)
        grow = entries / max(seeded.fanout_entries, 1) * 1.05
        spec = dataclasses.replace(spec, posts=math.ceil(spec.posts * grow))
    else:
        raise BenchFailure(f"could not seed {entries} feed entries")
    run_rank(ctx, include_unscored=True)  # every post scored under the default heuristic
    conn.execute(
        "INSERT INTO feed_entry (user_id, post_id, community_id, author_id, score, created_at) "
        "SELECT m.user_id, p.id, p.community_id, p.author_id, ps.score, p.created_at "
        "FROM posts p JOIN post_score ps ON ps.post_id = p.id "
        "JOIN memberships m ON m.community_id = p.community_id "
        "WHERE p.deleted_at IS NULL ORDER BY m.user_id, p.id"
    )
    conn.execute("VACUUM ANALYZE")
    loaded = time.perf_counter()
    active = [  # active in the week before the seed's fixed clock, as fan-out would cache
        r[0]
        for r in conn.execute(
            "SELECT id FROM users WHERE last_active_at >= %s ORDER BY id",
            (SEED_NOW - timedelta(days=ctx.settings.active_window_days),),
        )
    ]
    users = cache_warm.warm(ctx, "user", active)
    community_ids = [r[0] for r in conn.execute("SELECT id FROM communities ORDER BY id")]
    communities = cache_warm.warm(ctx, "community", community_ids)
    counts = conn.execute(
        "SELECT (SELECT count(*) FROM feed_entry), (SELECT count(*) FROM posts), "
        "(SELECT count(*) FROM users), (SELECT count(*) FROM communities)"
    ).fetchone()
    assert counts is not None
    return {
        "entries": counts[0],
        "posts": counts[1],
        "users": counts[2],
        "communities": counts[3],
        "cached_user_feeds": users.feeds_written,
        "cached_members": users.entries_written + communities.entries_written,
        "seconds_load": loaded - started,
        "seconds_cache": time.perf_counter() - loaded,
    }


# -------------------------------------------------------------------------------- limit


def post_scores_under(conn: psycopg.Connection[Any], heuristic: Heuristic) -> pl.DataFrame:
    rows = conn.execute(
        "SELECT p.id, p.created_at, p.reactions_count, p.comments_count, "
        "coalesce(u.reputation, 0)::float8 FROM posts p LEFT JOIN users u ON u.id = p.author_id "
        "JOIN post_score ps ON ps.post_id = p.id"
    ).fetchall()
    frame = pl.DataFrame(
        rows,
        schema={
            "post_id": pl.Int64(),
            "created_at": pl.Datetime("us", "UTC"),
            "reactions_count": pl.Int64(),
            "comments_count": pl.Int64(),
            "reputation": pl.Float64(),
        },
        orient="row",
    )
    return score_frame(frame, heuristic).select("post_id", "score")


def measure_limit(
    conn: psycopg.Connection[Any], new_scores: pl.DataFrame, work: Path
) -> dict[str, Any]:
    """COPY of every entry's new score into a temporary table + one UPDATE ... FROM, on an
    identical copy of feed_entry."""
    conn.execute("CREATE TABLE feed_entry_limit (LIKE feed_entry INCLUDING ALL)")
    conn.execute("INSERT INTO feed_entry_limit SELECT * FROM feed_entry ORDER BY user_id, post_id")
    conn.execute("VACUUM ANALYZE feed_entry_limit")
    conn.execute("CREATE TEMP TABLE post_new (post_id bigint PRIMARY KEY, score float8)")
    with conn.cursor() as cur, cur.copy("COPY post_new FROM STDIN (FORMAT csv)") as copy:
        copy.write(new_scores.write_csv(include_header=False))
    path = work / "new_scores.bin"
    with (
        conn.cursor() as cur,
        cur.copy(
            "COPY (SELECT fe.user_id, fe.post_id, pn.score FROM feed_entry_limit fe "
            "JOIN post_new pn USING (post_id) ORDER BY fe.user_id, fe.post_id) "
            "TO STDOUT (FORMAT BINARY)"
        ) as copy,
        path.open("wb") as out,
    ):
        for data in copy:
            out.write(data)
    checkpoint(conn)
    started = time.perf_counter()
    with conn.transaction():
        conn.execute(
            "CREATE TEMP TABLE entry_new (user_id bigint, post_id bigint, score float8) "
            "ON COMMIT DROP"
        )
        with (
            conn.cursor() as cur,
            cur.copy("COPY entry_new FROM STDIN (FORMAT BINARY)") as copy,
            path.open("rb") as source,
        ):
            while chunk := source.read(1 << 20):
                copy.write(chunk)
        copied = time.perf_counter()
        conn.execute("ANALYZE entry_new")
        updated = conn.execute(
            "UPDATE feed_entry_limit fe SET score = en.score FROM entry_new en "
            "WHERE fe.user_id = en.user_id AND fe.post_id = en.post_id"
        ).rowcount
    seconds = time.perf_counter() - started
    conn.execute("DROP TABLE feed_entry_limit")
    path.unlink()
    checkpoint(conn)
    swap = measure_swap_limit(conn)
    conn.execute("DROP TABLE post_new")
    return {
        "rows": updated,
        "seconds": seconds,
        "seconds_copy": copied - started,
        "rows_per_second": updated / seconds,
        "swap": swap,
    }


def measure_swap_limit(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """Rewrite every entry with its post's new score (from post_new) into a new table in key
    order, build its primary key and indexes, and swap it in for a stand-in by rename."""
    conn.execute("CREATE TABLE feed_entry_standin (LIKE feed_entry)")
    started = time.perf_counter()
    conn.execute(
        "CREATE TABLE feed_entry_rewrite AS "
        "SELECT fe.user_id, fe.post_id, fe.community_id, fe.author_id, "
        "coalesce(pn.score, fe.score) AS score, fe.created_at "
        "FROM feed_entry fe LEFT JOIN post_new pn USING (post_id) ORDER BY fe.user_id, fe.post_id"
    )
    rows = conn.execute("SELECT count(*) FROM feed_entry_rewrite").fetchone()
    written = time.perf_counter()
    conn.execute("ALTER TABLE feed_entry_rewrite ADD PRIMARY KEY (user_id, post_id)")
    conn.execute("CREATE INDEX ON feed_entry_rewrite (user_id, score DESC, post_id DESC)")
    conn.execute("CREATE INDEX ON feed_entry_rewrite (post_id)")
    conn.execute("ANALYZE feed_entry_rewrite")
    with conn.transaction():
        conn.execute("ALTER TABLE feed_entry_standin RENAME TO feed_entry_retired")
        conn.execute("ALTER TABLE feed_entry_rewrite RENAME TO feed_entry_standin")
        conn.execute("DROP TABLE feed_entry_retired")
    seconds = time.perf_counter() - started
    conn.execute("DROP TABLE feed_entry_standin")
    count = int(rows[0]) if rows else 0
    return {
        "rows": count,
        "seconds": seconds,
        "seconds_write": written - started,
        "rows_per_second": count / seconds,
    }


# ------------------------------------------------------------------------ feedctl runs


# Runs `feedctl` in the child process and, at exit, writes the child's own peak RSS (VmHWM,
# which exec resets; wait4's ru_maxrss would include what the child inherited from this
# benchmark by forking) to the file named by FEEDCTL_BENCH_HWM_FILE.
_CHILD = """
import atexit, os, runpy, sys

def report_peak():
    with open("/proc/self/status") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(os.environ["FEEDCTL_BENCH_HWM_FILE"], "w") as out:
        out.write(peak)

atexit.register(report_peak)
sys.argv = ["feedctl", *sys.argv[1:]]
runpy.run_module("feedctl", run_name="__main__")
"""


def run_child(target: BenchTarget, work: Path, *args: str) -> dict[str, Any]:
    """`feedctl --json ARGS` in a child process: its JSON report and its own peak RSS."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEEDCTL_")}
    env.update(
        FEEDCTL_DATABASE_URL=target.database_url,
        FEEDCTL_REDIS_URL=target.redis_url,
        FEEDCTL_REDIS_KEY_PREFIX=target.prefix,
        FEEDCTL_FEED_CAP=str(CAP),
        FEEDCTL_FEED_RETENTION="0",  # fixed-date worlds: keep every post
        FEEDCTL_HOME=str(target.workdir / "home"),
        FEEDCTL_BENCH_HWM_FILE=str(work / "child.hwm"),
    )
    out, err = work / "child.out", work / "child.err"
    started = time.perf_counter()
    with out.open("wb") as stdout, err.open("wb") as stderr:
        child = subprocess.run(
            [sys.executable, "-c", _CHILD, "--json", *args], env=env, stdout=stdout, stderr=stderr
        )
    wall = time.perf_counter() - started
    if child.returncode != 0:
        raise BenchFailure(
            f"feedctl {' '.join(args)} exited {child.returncode}: {err.read_text()[-2000:]}"
        )
    report: dict[str, Any] = json.loads(out.read_text())
    report["peak_rss_mb"] = int((work / "child.hwm").read_text()) / 1024  # VmHWM is in kB
    report["wall_seconds"] = wall
    return report


def write_heuristic(work: Path, coefficients: dict[str, Any]) -> Path:
    path = work / f"{coefficients['version']}.toml"
    body = "\n".join(
        f'version = "{v}"' if k == "version" else f"{k} = {v!r}" for k, v in coefficients.items()
    )
    path.write_text(body + "\n")
    return path


def check_consistent(ctx: Context, version: str) -> dict[str, int]:
    """Every entry carries its post's stored score, every stored score is `version`'s, and a
    sample of cached feeds equals the top `cap` of its PostgreSQL feed, score for score."""
    conn = ctx.conn
    row = conn.execute(
        "SELECT (SELECT count(*) FROM feed_entry fe JOIN post_score ps USING (post_id) "
        "WHERE fe.score <> ps.score), "
        "(SELECT count(*) FROM post_score WHERE heuristic_version <> %s)",
        (version,),
    ).fetchone()
    assert row is not None
    if row != (0, 0):
        raise BenchFailure(f"{row[0]} entries disagree with post_score; {row[1]} stale scores")
    users = [r[0] for r in conn.execute("SELECT id FROM users ORDER BY id")]
    checked = 0
    for user_id in random.Random(3).sample(users, min(len(users) // 2, SAMPLE_FEEDS * 3)):
        found = ctx.cache.members(f"{ctx.prefix}feed:u:{user_id}")
        if found is None:
            continue
        want = conn.execute(
            "SELECT post_id, score FROM feed_entry WHERE user_id = %s "
            "ORDER BY score DESC, post_id DESC LIMIT %s",
            (user_id, CAP),
        ).fetchall()
        if [tuple(w) for w in want] != found[0]:
            raise BenchFailure(f"cached feed of user {user_id} differs from PostgreSQL")
        checked += 1
        if checked == SAMPLE_FEEDS:
            break
    return {"cached_feeds_checked": checked}


def change_counters(conn: psycopg.Connection[Any]) -> int:
    ids = [r[0] for r in conn.execute("SELECT post_id FROM post_score ORDER BY post_id")]
    chosen = random.Random(11).sample(ids, max(1, round(len(ids) * CHANGED_SHARE)))
    conn.execute(
        "UPDATE posts SET reactions_count = reactions_count + 1 + id %% 17, "
        "comments_count = comments_count + id %% 3 WHERE id = ANY(%s)",
        (chosen,),
    )
    return len(chosen)


# ---------------------------------------------------------------------------------- run


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=5_000_000, help="feed entries, at least")
    parser.add_argument("--scoring-rows", type=int, default=10_000_000, help="rows to score")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args(argv)
    if args.entries < 1000 or args.scoring_rows < 1:
        parser.error("--entries must be at least 1000 and --scoring-rows at least 1")
    return args


def run(args: argparse.Namespace, target: BenchTarget) -> dict[str, Any]:
    work = target.workdir
    doc: dict[str, Any] = {
        "servers": f"PostgreSQL {target.postgres_source}, Redis {target.redis_source}"
    }
    note(f"scoring {args.scoring_rows:,} rows")
    doc["scoring"] = measure_scoring(args.scoring_rows)
    with open_context(settings_for(target)) as ctx:
        upgrade(ctx.conn)
        doc["postgres"] = server_facts(ctx.conn)
        note(f"building a world of at least {args.entries:,} feed entries")
        doc["world"] = build_world(ctx, args.entries)
        v2_path = write_heuristic(work, V2)
        v2 = load_heuristic(v2_path)
        note("measuring the limits: COPY + UPDATE ... FROM, and rewrite + indexes + swap")
        doc["limit"] = measure_limit(ctx.conn, post_scores_under(ctx.conn, v2), work)
        checkpoint(ctx.conn)
        note("full backfill")
        doc["backfill"] = run_child(target, work, "rank", "backfill", "--heuristic", str(v2_path))
        ctx.conn.execute("VACUUM ANALYZE feed_entry")
        doc["backfill_check"] = check_consistent(ctx, "bench-v2")
        doc["nightly_changed_posts"] = change_counters(ctx.conn)
        checkpoint(ctx.conn)
        note("nightly rank with 1% of posts changed")
        doc["nightly"] = run_child(target, work, "rank", "--heuristic", str(v2_path))
        doc["nightly_check"] = check_consistent(ctx, "bench-v2")
        note("memory: in-place backfills of one fifth of the users, default and 8x chunks")
        fifth = write_heuristic(work, {**V2, "version": "bench-v3", "half_life_hours": 30.0})
        doc["fifth"] = run_child(
            target, work, "rank", "backfill", "--heuristic", str(fifth), "--shard", "0/5",
            "--method", "in-place",
        )  # fmt: skip
        bigger = write_heuristic(work, {**V2, "version": "bench-v4", "half_life_hours": 40.0})
        doc["fifth_big_chunks"] = run_child(
            target, work, "rank", "backfill", "--heuristic", str(bigger), "--shard", "0/5",
            "--replace", "--chunk-rows", "160000", "--method", "in-place",
        )  # fmt: skip
    return doc


def ratios(doc: dict[str, Any]) -> list[dict[str, Any]]:
    backfill_rate = doc["backfill"]["entries_updated"] / doc["backfill"]["seconds"]
    doc["backfill"]["rows_per_second"] = backfill_rate
    nightly_share = doc["nightly"]["seconds"] / doc["backfill"]["seconds"]
    scoring = doc["scoring"]["rows_per_second"] / SCORING_TARGET
    backfill = backfill_rate / doc["limit"]["swap"]["rows_per_second"]
    fifth_rate = doc["fifth"]["entries_updated"] / doc["fifth"]["seconds"]
    doc["fifth"]["rows_per_second"] = fifth_rate
    in_place = fifth_rate / doc["limit"]["rows_per_second"]
    return [
        {"name": "pure scoring rows/s / 10M", "ratio": scoring, "target": ">= 1.00",
         "verdict": "PASS" if scoring >= 1 else "MISS"},
        {"name": "backfill (swap) rows/s / rewrite-and-swap limit rows/s", "ratio": backfill,
         "target": ">= 0.50", "verdict": "PASS" if backfill >= BACKFILL_TARGET else "MISS"},
        {"name": "in-place backfill (one fifth) rows/s / in-place limit", "ratio": in_place,
         "target": ">= 0.50", "verdict": "PASS" if in_place >= BACKFILL_TARGET else "MISS"},
        {"name": "nightly (1% of posts changed) time / backfill time", "ratio": nightly_share,
         "target": "<= 0.05", "verdict": "PASS" if nightly_share <= NIGHTLY_TARGET else "MISS"},
        {"name": "peak RSS, all users by swap / one fifth in place",
         "ratio": doc["backfill"]["peak_rss_mb"] / doc["fifth"]["peak_rss_mb"], "target": "~ 1",
         "verdict": ""},
        {"name": "peak RSS, one fifth: 8x chunks / default chunks",
         "ratio": doc["fifth_big_chunks"]["peak_rss_mb"] / doc["fifth"]["peak_rss_mb"],
         "target": "", "verdict": ""},
    ]  # fmt: skip


def _line(label: str, value: str, detail: str = "") -> str:
    return f"  {label:<58} {value:>16}  {detail}".rstrip()


def render(doc: dict[str, Any]) -> str:
    w, lim, bf, nt = doc["world"], doc["limit"], doc["backfill"], doc["nightly"]
    pg = doc["postgres"]
    lines = [
        "feedctl rank benchmark",
        f"  servers: {doc['servers']}; PostgreSQL {pg['version']} (fsync {pg['fsync']}, "
        f"shared_buffers {pg['shared_buffers']}, max_wal_size {pg['max_wal_size']}); "
        f"{os.cpu_count()} cores",
        "",
        "world",
        _line("feed entries", f"{w['entries']:,}",
              f"{w['posts']:,} posts, {w['users']:,} users, {w['communities']:,} communities"),
        _line("cached feeds (active users) / members", f"{w['cached_user_feeds']:,}",
              f"{w['cached_members']:,} members in Redis"),
        "",
        "pure scoring",
        _line(f"score_frame, {doc['scoring']['rows']:,} rows (best of 3)",
              f"{doc['scoring']['rows_per_second']:,.0f} /s", f"{doc['scoring']['seconds']:.2f} s"),
        "",
        "limits (same rows, same servers)",
        _line("in place: COPY into temp table + ANALYZE + UPDATE ... FROM",
              f"{lim['rows_per_second']:,.0f} /s",
              f"{lim['rows']:,} rows in {lim['seconds']:.1f} s (COPY {lim['seconds_copy']:.1f} s)"),
        _line("swap: CREATE TABLE AS + primary key + 2 indexes + rename",
              f"{lim['swap']['rows_per_second']:,.0f} /s",
              f"{lim['swap']['rows']:,} rows in {lim['swap']['seconds']:.1f} s "
              f"(write {lim['swap']['seconds_write']:.1f} s)"),
        "",
        "feedctl rank backfill (child process, end to end)",
        _line("entries updated / seconds", f"{bf['rows_per_second']:,.0f} /s",
              f"{bf['entries_updated']:,} entries, {bf['posts_rescored']:,} posts in "
              f"{bf['seconds']:.1f} s (Redis {bf['seconds_cache']:.1f} s, "
              f"{bf['feeds_rewritten']:,} cached feeds)"),
        _line("method / partitions swapped", f"{bf['method']}",
              f"{bf['partitions_swapped']} partitions, {bf['entries_replayed']:,} replayed"),
        _line("chunks", f"{bf['chunks']:,}"),
        _line("peak RSS", f"{bf['peak_rss_mb']:,.0f} MB"),
        _line("check: entries = post_score, cached feeds = top-cap", "OK",
              f"{doc['backfill_check']['cached_feeds_checked']} cached feeds compared"),
        "",
        f"feedctl rank (nightly, {doc['nightly_changed_posts']:,} posts = 1% changed)",
        _line("seconds", f"{nt['seconds']:.2f} s",
              f"{nt['posts_rescored']:,} posts, {nt['entries_updated']:,} entries "
              f"(database {nt['seconds_database']:.2f} s, Redis {nt['seconds_cache']:.2f} s)"),
        _line("check: entries = post_score, cached feeds = top-cap", "OK",
              f"{doc['nightly_check']['cached_feeds_checked']} cached feeds compared"),
        "",
        "memory (peak RSS of the child process, VmHWM)",
        _line(f"all users, default chunks ({bf['entries_updated']:,} entries)",
              f"{bf['peak_rss_mb']:,.0f} MB"),
        _line(f"in place, one fifth (--shard 0/5), default chunks "
              f"({doc['fifth']['entries_updated']:,})",
              f"{doc['fifth']['peak_rss_mb']:,.0f} MB",
              f"{doc['fifth']['seconds']:.1f} s, {doc['fifth']['rows_per_second']:,.0f} rows/s"),
        _line("one fifth, --chunk-rows 160000 (8x)",
              f"{doc['fifth_big_chunks']['peak_rss_mb']:,.0f} MB",
              f"{doc['fifth_big_chunks']['seconds']:.1f} s"),
        "",
        "ratios and targets",
    ]  # fmt: skip
    for item in doc["ratios"]:
        lines.append(
            _line(item["name"], f"{item['ratio']:.3f}", f"{item['target']}  {item['verdict']}")
        )
    lines.append(f"\nruntime {doc['runtime_seconds']:.0f} s")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    try:
        with bench_target() as target:
            doc = run(args, target)
    except BenchFailure as exc:
        print(f"rank benchmark FAILED: {exc}", file=sys.stderr)
        return 1
    doc["ratios"] = ratios(doc)
    doc["runtime_seconds"] = time.perf_counter() - started
    print(json.dumps(doc, indent=2, default=str) if args.json else render(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
