"""Partition swaps: a backfill that rewrites feed_entry one hash partition at a time.

The work is done by SQL functions (sql/0024_feedctl_rank_backfill_swap.sql): a row trigger
logs the keys written to a partition while `feedctl_swap_build` rewrites it into a new
table with its posts' stored scores; `feedctl_swap_finish` then replays the log and swaps
the new table in, in one short transaction under feed_entry's lock. This module lists the
partitions, maps them to shards, chooses between swap and in place, and takes the lock
without ever queueing readers behind it for long (docs/decisions/0032).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any

import psycopg
import psycopg.errors

from feedctl.db.sql_blocks import query
from feedctl.errors import LockedError
from feedctl.faults import checkpoint
from feedctl.pipelines.ranking.backfill.shards import Shard

# A swap rewrites every row at about 7 times the in-place rate (MEASURED.md: 545k against
# 66-79k rows/s), and in place also reads every row to find the changed ones: in place
# wins only while fewer than about 1 in 8 rows change. Decided from the share of posts
# whose score changed (each post's entries change with it).
SWAP_SHARE = 0.1
METHODS = ("auto", "swap", "in-place")
LOCK_TIMEOUT = "500ms"  # the longest a reader waits behind a swap that waits for its lock
LOCK_ATTEMPTS = 40  # tries to take the lock, with growing pauses (about 2 minutes in all)


@dataclasses.dataclass(frozen=True)
class Partition:
    """One hash partition of feed_entry: users whose hash of user_id mod modulus = remainder."""

    name: str
    modulus: int
    remainder: int


def feed_partitions(conn: psycopg.Connection[Any]) -> list[Partition]:
    """feed_entry's partitions, by remainder (empty when the table is not partitioned)."""
    rows = conn.execute(query("feed_partitions")).fetchall()
    return [Partition(str(name), int(modulus), int(remainder)) for name, modulus, remainder in rows]


def shard_partitions(partitions: list[Partition], shard: Shard) -> list[Partition]:
    """`--shard i/N` in a swap backfill: the partitions whose remainder mod N = i."""
    return [p for p in partitions if p.remainder % shard.count == shard.index]


def choose_method(requested: str, *, partitioned: bool, changed: int, total: int) -> str:
    """'swap' or 'in_place' for a backfill in which `changed` of `total` posts change score."""
    if requested == "in-place" or not partitioned:
        return "in_place"
    if requested == "swap":
        return "swap"
    return "swap" if total > 0 and changed >= SWAP_SHARE * total else "in_place"


def swap_in(
    conn: psycopg.Connection[Any],
    partition: Partition,
    record: Callable[[], None],
    stop: threading.Event,
) -> int | None:
    """Swap the rewritten table in for `partition`, with `record` (the checkpoint) in the same
    transaction. Waits at most LOCK_TIMEOUT for feed_entry's lock each time, so readers
    queue behind it no longer than that; tries again after a pause. Returns the logged keys
    replayed, or None if `stop` was set while waiting (the next run redoes the rewrite)."""
    params = {"partition": partition.name, "timeout": LOCK_TIMEOUT}
    replayed = 0
    for attempt in range(LOCK_ATTEMPTS):
        try:
            with conn.transaction():
                conn.execute(query("swap_lock_timeout"), params)
                row = conn.execute(query("swap_finish"), params).fetchone()
                record()
                checkpoint("backfill.swap_before_commit")
            return replayed + (int(row[0]) if row else 0)
        except (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected):
            if stop.wait(min(5.0, 0.1 * 2**attempt)):
                return None
            replayed += _catch_up(conn, partition)  # less to replay under the lock
    raise LockedError(
        f"could not take feed_entry's lock to swap in partition {partition.name} "
        f"({LOCK_ATTEMPTS} tries): a long transaction holds it; resume the backfill later"
    )


def abandon_leftovers(conn: psycopg.Connection[Any]) -> int:
    """Drop the unfinished rewrites a killed or replaced swap backfill left (its triggers
    would otherwise log every write to their partitions). Only for a run that knows no
    swap is under way: an in-place backfill (at most one backfill is unfinished)."""
    names = [r[0] for r in conn.execute(query("swap_leftovers"))]
    for name in names:
        conn.execute(query("swap_abandon"), {"partition": name})
    return len(names)


def swap_rewrite(conn: psycopg.Connection[Any], partition: Partition) -> tuple[int, int]:
    """Log the partition's writes, rewrite it into its new table, replay what was logged so
    far (each step commits). Returns the rows written and the logged keys replayed."""
    params = {"partition": partition.name}
    conn.execute(query("swap_prepare"), params)
    checkpoint("backfill.swap_prepared")
    row = conn.execute(query("swap_build"), params).fetchone()
    checkpoint("backfill.swap_built")
    return (int(row[0]) if row else 0), _catch_up(conn, partition)


def _catch_up(conn: psycopg.Connection[Any], partition: Partition) -> int:
    row = conn.execute(query("swap_catch_up"), {"partition": partition.name}).fetchone()
    return int(row[0]) if row else 0
