"""Fenced cache writes under a real race (docs/decisions/0028): fan-out, rank, forced warms
and read-miss fills run as processes of their own, in loops over the same small world, while
the app creates, deletes and reacts to posts and members join and leave. At quiescent
moments along the way (every writer between two rounds) `cache verify` finds nothing, and
at the end every cached feed is exactly PostgreSQL's top."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from feedctl.cache.feeds import fence_keys
from feedctl.config import Settings
from feedctl.context import Context, open_context
from feedctl.faults import DELAY_ENV
from feedctl.pipelines.cache.verify import Mismatch, verify
from feedctl.pipelines.cache.warm import warm
from feedctl.pipelines.ranking.nightly import run_rank
from feedctl.synth import SeedSpec, seed

from drain import fan_out_everything
from processes import feedctl_env

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
ROLES = ("app", "fanout", "rank", "warm", "reads")
RACE_SECONDS = float(os.environ.get("RACE_SECONDS", "60"))
CHECK_EVERY = 12.0  # seconds between quiescent checks
WORKER = Path(__file__).with_name("race_worker.py")
WIDENED = "cache.tops_read=0.03,cache.entries_read=0.01"


@contextmanager
def workers(settings: Settings, control: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    # Every writer is held a random while between its read of PostgreSQL and its write of
    # Redis: the window a lost write needs, widened so that 60 seconds find it often.
    env = feedctl_env(settings, **{DELAY_ENV: WIDENED})
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), role, str(control), str(index)],
            env=env,
            stderr=subprocess.PIPE,
        )
        for index, role in enumerate(ROLES)
    ]
    try:
        yield procs
    finally:
        (control / "stop").touch()
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def quiescent(control: Path, number: int, procs: list[subprocess.Popen[bytes]]) -> Iterator[None]:
    """Every writer idle between two rounds (its writes done) for the block's duration."""
    (control / "pause").write_text(str(number))
    deadline = time.monotonic() + 60
    while not all(
        (control / f"idle-{role}").exists()
        and (control / f"idle-{role}").read_text() == str(number)
        for role in ROLES
    ):
        failed = [p for p in procs if p.poll() is not None]
        assert not failed, failed[0].stderr.read().decode() if failed[0].stderr else "failed"
        assert time.monotonic() < deadline, "the writers did not pause"
        time.sleep(0.02)
    try:
        yield
    finally:
        (control / "pause").unlink()


def explain(ctx: Context, mismatches: list[Mismatch]) -> str:
    """What a failed check needs to tell a lost write from a disagreement of the queries:
    per feed, its fence, its log and what it holds; per mismatched post, its row (deleted or
    not) and its events; and where fan-out stands (events not yet fanned out)."""
    client = ctx.cache.client
    lines = []
    for key in sorted({m.key for m in mismatches}):
        fence, log = fence_keys(key)
        lines.append(f"{key}: fence {client.hgetall(fence)} log {client.lrange(log, 0, -1)}")
        lines.append(f"  cached {client.zrange(key, 0, -1, withscores=True)}")
        for m in (m for m in mismatches if m.key == key):
            post = ctx.conn.execute(
                "SELECT community_id, created_at, deleted_at FROM posts WHERE id = %s",
                (m.post_id,),
            ).fetchone()
            events = ctx.conn.execute(
                "SELECT id, kind, txid FROM feed_events WHERE post_id = %s", (m.post_id,)
            ).fetchall()
            lines.append(f"  {m.kind} {m.post_id} cached {m.cached_score} database")
            lines.append(f"    {m.database_score} post {post} events {events}")
    positions = ctx.conn.execute("SELECT * FROM feed_offset_state").fetchall()
    lines.append(f"fan-out positions {positions}")
    return "\n".join(lines)


def assert_cache_is_exact(ctx: Context) -> int:
    """`cache verify` over every cached feed, with no settling: it must find nothing.
    Returns how many feeds it compared."""
    report = verify(ctx, 100_000, settle_seconds=0)
    assert report.mismatches == [], explain(ctx, report.mismatches)
    assert report.feeds_mismatched == 0
    marks = ctx.conn.execute("SELECT feed_kind, feed_id, reason FROM feed_repair").fetchall()
    assert marks == [], "writes were fenced out every time, or failed, and marked"
    return report.feeds_compared


def test_concurrent_writers_leave_every_cached_feed_exact(
    settings: Settings, tmp_path: Path
) -> None:
    small = dataclasses.replace(settings, feed_cap=15)
    control = tmp_path / "control"
    control.mkdir()
    with open_context(small) as ctx:
        seed(ctx.conn, SeedSpec(users=40, communities=3, posts=150, seed=3, now=NOW))
        run_rank(ctx, include_unscored=True)
        fan_out_everything(ctx)
        users = [r[0] for r in ctx.conn.execute("SELECT id FROM users ORDER BY id")]
        warm(ctx, "user", users, force=True)
        warm(ctx, "community", [r[0] for r in ctx.conn.execute("SELECT id FROM communities")])
        assert_cache_is_exact(ctx)

        checks = 0
        started = time.monotonic()
        with workers(small, control) as procs:
            while time.monotonic() - started < RACE_SECONDS:
                time.sleep(min(CHECK_EVERY, max(0.0, RACE_SECONDS - (time.monotonic() - started))))
                checks += 1
                with quiescent(control, checks, procs):
                    compared = assert_cache_is_exact(ctx)
                    assert compared > len(users) // 2  # the reads evict: most stay cached
        for proc in procs:
            assert proc.returncode == 0, proc.stderr.read().decode() if proc.stderr else ""
        rounds = {role: int((control / f"rounds-{role}").read_text().split()[0]) for role in ROLES}
        assert min(rounds.values()) >= 3, rounds  # every writer really raced

        fan_out_everything(ctx)  # the events the app wrote last
        assert_cache_is_exact(ctx)
        posts = ctx.conn.execute("SELECT count(*) FROM posts").fetchone()
        assert posts is not None and posts[0] > 150  # the app created posts meanwhile
        assert checks >= 4
