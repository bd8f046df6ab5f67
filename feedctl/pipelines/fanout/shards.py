"""Sharded fan-out: `fanout --shard i/N` and changing N (docs/decisions/0033).

Shard i/N writes the feeds of users with user_id mod N = i (the non-negative modulo, as
`rank backfill --shard` splits users), and the cached community feeds of communities with
community_id mod N = i, so each feed has exactly one writer and sees the stream in order.
Every shard reads the whole stream under its own position, the row '<consumer>#i/N' of
feed_offset_state; a consumer with N = 1 keeps its plain row, as before shards.

How many shards a consumer runs as is recorded in feed_fanout_layout. A run whose --shard
does not match is refused. Every run holds the layout lock shared; `reshard` takes it
exclusively (so only when no shard of the consumer runs), brings every shard to the
furthest shard's position, and replaces the N positions with M positions there, in one
transaction.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Iterator
from typing import Any

import psycopg

from feedctl.context import Context
from feedctl.db.locks import advisory_lock
from feedctl.db.sql_blocks import query
from feedctl.errors import BadInputError, FeedctlError
from feedctl.pipelines.ranking.backfill.shards import Shard, parse_shard
from feedctl.progress import SILENT, Progress

__all__ = [
    "EVERYONE",
    "Position",
    "ReshardReport",
    "Shard",
    "holds",
    "layout_lock",
    "parse_shard",
    "position_name",
    "reshard",
    "shard_params",
]

EVERYONE = Shard(0, 1)


@dataclasses.dataclass(frozen=True, order=True)
class Position:
    """A point of the event stream: (txid, id)."""

    txid: int
    event_id: int


def holds(shard: Shard, feed_id: int) -> bool:
    """Whether the shard writes this user's (or community's) feeds: id mod N = i, the same
    non-negative modulo as the SQL in `shard_params`' queries."""
    return feed_id % shard.count == shard.index


def shard_params(shard: Shard) -> dict[str, int]:
    """The parameters of the fan-out queries that take a shard (0 of 1 is everyone)."""
    return {"shard": shard.index, "shards": shard.count}


def position_name(consumer: str, shard: Shard) -> str:
    """The feed_offset_state row of one shard: the consumer's own row when N = 1."""
    return consumer if shard.count == 1 else f"{consumer}#{shard.index}/{shard.count}"


def layout_name(consumer: str) -> str:
    return f"feedctl.fanout-layout:{consumer}"


def shard_count(conn: psycopg.Connection[Any], consumer: str) -> int:
    row = conn.execute(query("fanout_layout"), {"consumer": consumer}).fetchone()
    return int(row[0]) if row else 1


@contextlib.contextmanager
def layout_lock(conn: psycopg.Connection[Any], consumer: str, shard: Shard) -> Iterator[None]:
    """Hold the consumer's layout shared for a run of one shard, after checking that the
    consumer runs as `shard.count` shards (BadInputError, exit 2, when it does not)."""
    with advisory_lock(conn, layout_name(consumer), shared=True):
        count = shard_count(conn, consumer)
        if count != shard.count:
            how = "unsharded" if count == 1 else f"as {count} shards (--shard i/{count})"
            raise BadInputError(
                f"fan-out consumer {consumer!r} runs {how}, not --shard {shard}; "
                f"change it with `feedctl fanout reshard {shard.count}` once every shard is stopped"
            )
        yield


@dataclasses.dataclass
class ReshardReport:
    """What one `fanout reshard` did."""

    consumer: str = "default"
    shards_before: int = 1
    shards_after: int = 1
    position_txid: int = 0  # the common position every new shard starts from
    position_event_id: int = 0
    events_caught_up: int = 0  # events old shards read to reach that position
    entries_written: int = 0
    entries_removed: int = 0
    redis_failures: int = 0
    stopped: bool = False  # a stop request ended it before the change (nothing changed)
    dry_run: bool = False


def reshard(
    ctx: Context,
    count: int,
    *,
    consumer: str = "default",
    dry_run: bool = False,
    progress: Progress = SILENT,
    stop: threading.Event | None = None,
) -> ReshardReport:
    """Change the number of shards a fan-out consumer runs as, from N to `count`.

    Refused (LockedError, exit 75) while any shard of the consumer runs. Each old shard
    first fans out up to the furthest old shard's position (and replays cache writes a
    killed run left), so that all N stand at one position; then, in one transaction, the
    N positions are replaced by `count` positions there. Entries and cached feeds are not
    touched by the change itself: which shard writes a feed changes from the next event on.
    A dry run only reports the positions it would use. A set `stop` ends it between the
    old shards' batches, before the change: run it again to finish.
    """
    from feedctl.pipelines.fanout.run import run_fanout  # run imports this module

    new = Shard(0, count)  # validates count
    conn = ctx.conn
    report = ReshardReport(consumer=consumer, shards_after=new.count, dry_run=dry_run)
    with advisory_lock(conn, layout_name(consumer)):
        old_count = shard_count(conn, consumer)
        report.shards_before = old_count
        old = [Shard(i, old_count) for i in range(old_count)]
        names = [position_name(consumer, s) for s in old]
        if old_count == 1:
            conn.execute(query("ensure_consumer"), {"consumer": consumer})
        rows = _positions(conn, names)
        target = max(position for position, _, _ in rows.values())
        report.position_txid, report.position_event_id = target.txid, target.event_id
        if dry_run:
            return report
        progress.phase("reshard: old shards to one position", len(old))
        for shard in old:
            caught = run_fanout(ctx, consumer=consumer, shard=shard, until=target, stop=stop)
            report.events_caught_up += caught.events
            report.entries_written += caught.entries_written
            report.entries_removed += caught.entries_removed
            report.redis_failures += caught.redis_failures
            progress.advance(1)
            if caught.stopped:
                report.stopped = True
                return report
        with conn.transaction():
            rows = _positions(conn, names)
            behind = [n for n, (p, pending, _) in rows.items() if p != target or pending]
            if behind:
                raise FeedctlError(
                    f"shards {', '.join(behind)} could not reach the position "
                    f"{target.txid}/{target.event_id} (a transaction open on the server holds "
                    "events back?); nothing was changed, run the reshard again"
                )
            processed = max(done for _, _, done in rows.values())
            conn.execute(query("drop_consumers"), {"consumers": names})
            for shard in (Shard(i, new.count) for i in range(new.count)):
                params = {
                    "consumer": position_name(consumer, shard),
                    "txid": str(target.txid),
                    "event_id": target.event_id,
                    "events": processed,
                }
                conn.execute(query("place_consumer"), params)
            conn.execute(query("set_fanout_layout"), {"consumer": consumer, "shards": new.count})
    return report


def _positions(
    conn: psycopg.Connection[Any], names: list[str]
) -> dict[str, tuple[Position, bool, int]]:
    """Each named position, whether its cache writes are pending, and its events read."""
    rows = conn.execute(query("fanout_positions"), {"consumers": names}).fetchall()
    found = {r[0]: (Position(int(str(r[1])), int(r[2])), bool(r[3]), int(r[4])) for r in rows}
    missing = [n for n in names if n not in found]
    if missing:
        raise FeedctlError(f"fan-out positions {', '.join(missing)} are missing")
    return found
