"""One writer of the cache race test, as a process of its own: `python race_worker.py ROLE
CONTROL_DIR SEED`, with the test's settings in FEEDCTL_* variables.

Roles: `app` (posts created and deleted, reactions, members joining and leaving, as the app
does them: rows and an event in one transaction), `fanout`, `rank`, `warm` (every feed,
forced), `reads` (a feed read, often evicted first: the miss fills it; sometimes a second
page).
Each loops until CONTROL_DIR/stop exists. While CONTROL_DIR/pause holds a number N, it
finishes its round, writes N into CONTROL_DIR/idle-ROLE and waits: the test then has a
quiescent moment (no writer between a read of PostgreSQL and its write of Redis).
"""

from __future__ import annotations

import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from feedctl.cache.keys import community_feed, user_feed
from feedctl.config import load_settings
from feedctl.context import Context, open_context
from feedctl.pipelines.cache.warm import warm
from feedctl.pipelines.fanout.run import run_fanout
from feedctl.pipelines.ranking.nightly import run_rank
from feedctl.read.pages import FeedReader

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def ids(conn: psycopg.Connection[Any], table: str) -> list[int]:
    return [row[0] for row in conn.execute(f"SELECT id FROM {table} ORDER BY id")]


def app_round(ctx: Context, rng: random.Random) -> None:
    conn = ctx.conn
    action = rng.random()
    communities = ids(conn, "communities")
    if action < 0.45:
        community = rng.choice(communities)
        with conn.transaction():
            row = conn.execute("SELECT max(id) + 1 FROM posts").fetchone()
            assert row is not None
            created = NOW - timedelta(hours=rng.uniform(-24, 10 * 24))
            conn.execute(
                "INSERT INTO posts (id, community_id, author_id, created_at, reactions_count) "
                "VALUES (%s, %s, 1, %s, %s)",
                (row[0], community, created, rng.randrange(0, 3000)),
            )
            conn.execute(
                "INSERT INTO feed_events (kind, post_id, community_id) "
                "VALUES ('post_created', %s, %s)",
                (row[0], community),
            )
    elif action < 0.55:
        with conn.transaction():
            row = conn.execute(
                "UPDATE posts SET deleted_at = now() WHERE id = (SELECT id FROM posts "
                "WHERE deleted_at IS NULL ORDER BY random() LIMIT 1) RETURNING id, community_id"
            ).fetchone()
            if row is not None:
                conn.execute(
                    "INSERT INTO feed_events (kind, post_id, community_id) "
                    "VALUES ('post_deleted', %s, %s)",
                    row,
                )
    elif action < 0.9:
        conn.execute(
            "UPDATE posts SET reactions_count = (random() * 5000)::int WHERE id IN "
            "(SELECT id FROM posts WHERE deleted_at IS NULL ORDER BY random() LIMIT 6)"
        )
    else:
        user, community = rng.choice(ids(conn, "users")), rng.choice(communities)
        with conn.transaction():
            left = conn.execute(
                "DELETE FROM memberships WHERE community_id = %s AND user_id = %s",
                (community, user),
            ).rowcount
            if not left:
                conn.execute(
                    "INSERT INTO memberships (community_id, user_id) VALUES (%s, %s)",
                    (community, user),
                )
            conn.execute(
                "INSERT INTO feed_events (kind, community_id, user_id) VALUES (%s, %s, %s)",
                ("member_left" if left else "member_joined", community, user),
            )
    time.sleep(0.02)


def reads_round(ctx: Context, reader: FeedReader, rng: random.Random) -> None:
    """Half the user feeds and one community feed are read (a cached page read also
    rewrites a feed it finds stale; the other feeds keep what the writers left)."""
    if rng.random() < 0.8:
        feed = user_feed(rng.choice([u for u in ids(ctx.conn, "users") if u % 2 == 0]))
    else:
        feed = community_feed(ids(ctx.conn, "communities")[0])
    if rng.random() < 0.5:
        ctx.cache.delete([feed.key(ctx.prefix)])  # evicted: the read below misses and fills
    page = reader.page(feed, 10, None)
    if page.next_cursor and rng.random() < 0.5:
        reader.page(feed, 10, page.next_cursor)
    time.sleep(0.02)


def warm_round(ctx: Context, users: list[int], communities: list[int], rng: random.Random) -> None:
    """`cache warm --force` of a random quarter of the feeds, now and then."""
    warm(ctx, "user", sorted(rng.sample(users, len(users) // 4)), force=True)
    warm(ctx, "community", [rng.choice(communities)], force=True)
    time.sleep(0.3)


def pause_number(control: Path) -> str | None:
    """The number of the pause the test asked for, or None when it asked for none (the test
    removes the file at any moment, so existence and contents are read in one step)."""
    try:
        return (control / "pause").read_text()
    except FileNotFoundError:
        return None


def main(role: str, control: Path, seed: int) -> None:
    rng = random.Random(seed)
    with open_context(load_settings()) as ctx:
        reader = FeedReader.for_settings(ctx.conn, ctx.cache, ctx.settings)
        users, communities = ids(ctx.conn, "users"), ids(ctx.conn, "communities")
        rounds = deadlocks = 0
        while not (control / "stop").exists():
            paused = pause_number(control)
            if paused is not None:
                (control / f"idle-{role}").write_text(paused)
                time.sleep(0.01)
                continue
            try:
                one_round(role, ctx, reader, users, communities, rng)
            except psycopg.errors.DeadlockDetected:
                # fan-out and rank both write feed_entry rows, in different orders: PostgreSQL
                # aborts one of them now and then; nothing of it was committed, and the next
                # round does its work again (as cron would)
                if ctx.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    ctx.conn.rollback()
                deadlocks += 1
                continue
            rounds += 1
        (control / f"rounds-{role}").write_text(f"{rounds} {deadlocks}")


def one_round(
    role: str,
    ctx: Context,
    reader: FeedReader,
    users: list[int],
    communities: list[int],
    rng: random.Random,
) -> None:
    if role == "app":
        app_round(ctx, rng)
    elif role == "fanout":
        run_fanout(ctx)
    elif role == "rank":
        run_rank(ctx)
    elif role == "warm":
        warm_round(ctx, users, communities, rng)
    elif role == "reads":
        reads_round(ctx, reader, rng)
    else:
        raise SystemExit(f"unknown role {role!r}")


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]))
