"""Fan-out and rank on the same feed entries at the same time never deadlock (decision 0037).

Two real connections run the jobs' own statements concurrently, in a loop, for a few
seconds: one a fan-out batch's (`apply_events`: members leave, posts are deleted, posts
are fanned out again, members join), the other a nightly rank chunk's (`store_chunk`:
post_score, then every entry of the chunk's posts). Each round is rolled back, so the
world stays the same and every round overlaps the other job's rows. Before every writer
took its row locks in one order, PostgreSQL aborted one of them with `deadlock detected`
within the first second.
"""

from __future__ import annotations

import functools
import random
import threading
import time
from collections.abc import Callable
from typing import Any, LiteralString

import polars as pl
import psycopg
import psycopg.errors
import pytest

from feedctl.config import Settings
from feedctl.context import Context, open_context
from feedctl.db.retry import ATTEMPTS, in_transaction_retrying
from feedctl.pipelines.fanout.run import Event, FanoutReport, apply_events
from feedctl.pipelines.fanout.shards import EVERYONE, Shard
from feedctl.pipelines.ranking.nightly import run_rank, store_chunk
from feedctl.pipelines.ranking.scores import STAGE_COLUMNS
from feedctl.synth import seed

from rank_world import SPEC

SECONDS = 4.0


def _world(ctx: Context) -> None:
    """The ranking tests' world: every live post scored, every member's entries written."""
    seed(ctx.conn, SPEC)
    run_rank(ctx, include_unscored=True)
    ctx.conn.execute(
        "INSERT INTO feed_entry (user_id, post_id, community_id, author_id, score, created_at) "
        "SELECT m.user_id, p.id, p.community_id, p.author_id, ps.score, p.created_at "
        "FROM posts p JOIN post_score ps ON ps.post_id = p.id "
        "JOIN memberships m ON m.community_id = p.community_id WHERE p.deleted_at IS NULL"
    )
    ctx.conn.execute("ANALYZE")


def _fanout_round(ctx: Context, rng: random.Random, shard: Shard) -> None:
    """One fan-out batch over a busy community, rolled back: members leave (in descending
    user order, as a stream may have them), posts are deleted, others fanned out again
    (their entries exist), and members join again."""
    conn = ctx.conn
    community = rng.choice([r[0] for r in conn.execute("SELECT id FROM communities")])
    members = [
        r[0]
        for r in conn.execute(
            "SELECT user_id FROM memberships WHERE community_id = %s", (community,)
        )
    ]
    posts = [
        r[0]
        for r in conn.execute(
            "SELECT post_id FROM post_score WHERE community_id = %s", (community,)
        )
    ]
    leaving = sorted(rng.sample(members, min(4, len(members))), reverse=True)
    chosen = rng.sample(posts, min(4, len(posts)))
    deleted, created = chosen[:2], chosen[2:]
    joining = sorted(rng.sample(members, min(3, len(members))), reverse=True)
    with conn.transaction(force_rollback=True):
        conn.execute(
            "DELETE FROM memberships WHERE community_id = %s AND user_id = ANY(%s)",
            (community, leaving),
        )
        events = [Event(0, "member_left", None, community, u, "0") for u in leaving]
        events += [Event(0, "post_deleted", p, community, None, "0") for p in deleted]
        events += [Event(0, "post_created", p, community, None, "0") for p in created]
        events += [Event(0, "member_joined", None, community, u, "0") for u in joining]
        apply_events(ctx, events, FanoutReport(), shard)


def _rank_round(ctx: Context, rng: random.Random) -> None:
    """One rank chunk that changes every post's score, rolled back."""
    conn = ctx.conn
    rows = conn.execute(
        "SELECT post_id, community_id, score, reactions_count, comments_count, reputation "
        "FROM post_score ORDER BY post_id"
    ).fetchall()
    scored = pl.DataFrame(rows, schema=list(STAGE_COLUMNS), orient="row").with_columns(
        pl.col("score") + rng.random()
    )
    with conn.transaction(force_rollback=True):
        store_chunk(conn, scored, ctx.heuristic.version)  # the statements, without the retry


def _loop(
    settings: Settings,
    round_: Callable[[Context, random.Random], None],
    seed_: int,
    until: float,
    start: threading.Barrier,
    outcome: dict[str, Any],
) -> None:
    rng = random.Random(seed_)
    with open_context(settings) as ctx:
        # Detect a deadlock quickly (the default waits a second before looking).
        ctx.conn.execute("SET deadlock_timeout = '20ms'")
        start.wait()
        while time.monotonic() < until:
            try:
                round_(ctx, rng)
                outcome["rounds"] += 1
            except psycopg.errors.DeadlockDetected:
                outcome["deadlocks"] += 1


@pytest.mark.parametrize("shard", [EVERYONE, Shard(1, 2)], ids=["unsharded", "shard-1-of-2"])
def test_fanout_and_rank_on_the_same_entries_never_deadlock(
    ctx: Context, settings: Settings, shard: Shard
) -> None:
    _world(ctx)
    start = threading.Barrier(2)
    until = time.monotonic() + SECONDS + 1.0  # a second to open the connections
    outcomes = {"fanout": {"rounds": 0, "deadlocks": 0}, "rank": {"rounds": 0, "deadlocks": 0}}
    threads = [
        threading.Thread(
            target=_loop,
            args=(
                settings,
                functools.partial(_fanout_round, shard=shard),
                1,
                until,
                start,
                outcomes["fanout"],
            ),
        ),
        threading.Thread(
            target=_loop,
            args=(settings, _rank_round, 2, until, start, outcomes["rank"]),
        ),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes["fanout"]["rounds"] >= 3 and outcomes["rank"]["rounds"] >= 3, outcomes
    deadlocks = outcomes["fanout"]["deadlocks"] + outcomes["rank"]["deadlocks"]
    assert deadlocks == 0, outcomes


ABORTS: dict[str, LiteralString] = {
    "40P01": "DO $$ BEGIN RAISE EXCEPTION 'aborted' USING ERRCODE = '40P01'; END $$",
    "40001": "DO $$ BEGIN RAISE EXCEPTION 'aborted' USING ERRCODE = '40001'; END $$",
}


def test_an_aborted_transaction_is_retried_a_bounded_number_of_times(ctx: Context) -> None:
    """The second line of defence: 40P01 or 40001 from the server redoes the transaction,
    counted, at most `attempts` times; nothing of an aborted attempt stays."""
    conn = ctx.conn
    conn.execute("CREATE TABLE retry_probe (attempt int)")
    attempts: list[int] = []
    retries: list[int] = []

    def work(failures: int, code: str) -> int:
        attempts.append(len(attempts) + 1)
        conn.execute("INSERT INTO retry_probe VALUES (%s)", (len(attempts),))
        if len(attempts) <= failures:
            conn.execute(ABORTS[code])
        return len(attempts)

    done = in_transaction_retrying(
        conn, lambda: work(2, "40P01"), what="probe", on_retry=lambda: retries.append(1)
    )
    assert done == 3 and len(retries) == 2
    assert [r[0] for r in conn.execute("SELECT attempt FROM retry_probe")] == [3]

    attempts.clear()
    retries.clear()
    with pytest.raises(psycopg.errors.SerializationFailure):
        in_transaction_retrying(
            conn, lambda: work(9, "40001"), what="probe", on_retry=lambda: retries.append(1)
        )
    assert len(attempts) == ATTEMPTS and len(retries) == ATTEMPTS - 1
    assert [r[0] for r in conn.execute("SELECT attempt FROM retry_probe")] == [3]
