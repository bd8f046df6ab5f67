"""What a reader must know to serve a page from Redis alone (docs/decisions/0029).

A cached feed equals PostgreSQL's feed at the snapshot its last write read (fenced writes,
docs/decisions/0028) unless a write is still in flight or was lost. PostgreSQL knows both:
every writer records, in the transaction that changes feeds, that its Redis writes are owed
(fan-out's pending range, rank's pending posts, an unfinished rebuild or backfill), and a
write that failed marks its feeds for repair. A reader asks once per interval, in one
query, and keeps the answer (`CacheState`): its snapshot, whether any write is owed, the
feeds marked for repair, and the posts deleted that fan-out has not removed yet.

A cached feed is then served from Redis alone when no write was owed at that snapshot,
the feed is not marked, and the snapshot its entries were read at is within the state's
(`CacheState.covers`): the cached feed is then exactly PostgreSQL's at the state's snapshot,
and that snapshot pins the walk the page begins.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import datetime
from typing import Any

import psycopg

from feedctl.cache.keys import FeedRef
from feedctl.db.sql_blocks import query
from feedctl.read.cursor import MAX_IN_PROGRESS, Pin

LISTED = 10_000  # marked feeds or unprocessed deletions beyond this: no page from Redis alone
OWED = {  # the writers that record owed cache writes, and what clears them
    "fanout": "fan-out owes cache writes (a batch in flight, or a run that died: the next "
    "fanout run does them)",
    "rank": "rank owes cache writes (new scores in flight, or a run that died: the next "
    "rank run does them)",
    "rebuild": "a rebuild run is unfinished (resume it: feedctl rebuild)",
    "backfill": "a backfill is unfinished (resume it: feedctl rank backfill)",
}


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """A PostgreSQL snapshot (pg_snapshot's text form `xmin:xmax:xip,...`)."""

    xmin: int
    xmax: int
    in_progress: frozenset[int]

    @classmethod
    def parse(cls, text: str) -> Snapshot | None:
        try:
            xmin, xmax, listed = text.split(":")
            return cls(int(xmin), int(xmax), frozenset(int(x) for x in listed.split(",") if x))
        except ValueError:
            return None

    def within(self, outer: Snapshot) -> bool:
        """Whether every transaction this snapshot sees is seen by `outer` too."""
        if self.xmax > outer.xmax:
            return False
        return all(x in self.in_progress for x in outer.in_progress if x < self.xmax)


@dataclasses.dataclass(frozen=True)
class CacheState:
    """One answer of PostgreSQL about the cache (see the module's docstring)."""

    snapshot: Snapshot
    pin: Pin
    owed: tuple[str, ...]  # the writers that owe cache writes (keys of OWED)
    in_flight: bool  # some write is owed, or the snapshot is too wide for a pin
    marked: frozenset[tuple[str, int]]
    deleted: frozenset[int]
    listed_all: bool  # the marked feeds and deletions were all listed (not cut at LISTED)
    pulled: bool  # some community is pulled: user feeds merge it from PostgreSQL
    at: datetime  # the database clock at the snapshot
    taken: float  # time.monotonic() when it was asked

    def serves(self, feed: FeedRef) -> bool:
        """Whether a page of `feed` may come from Redis alone under this state."""
        return (
            not self.in_flight
            and self.listed_all
            and (feed.kind, feed.id) not in self.marked
            and not (self.pulled and feed.kind == "user")
        )

    def pauses(self) -> list[str]:
        """Why no page (or no user page) may come from Redis alone now; empty when any may,
        feeds marked for repair aside."""
        reasons = [OWED[writer] for writer in self.owed]
        if self.in_flight and not self.owed:
            reasons.append(f"over {MAX_IN_PROGRESS} transactions in progress")
        if not self.listed_all:
            reasons.append(f"over {LISTED} feeds marked for repair or deletions not fanned out")
        if self.pulled:
            reasons.append("user feeds: a community is pulled (its posts merge from PostgreSQL)")
        return reasons

    def covers(self, read_at: str) -> bool:
        """Whether a cached feed whose entries were read at `read_at` holds nothing this
        state's snapshot does not see (it is then that snapshot's feed exactly)."""
        inner = Snapshot.parse(read_at) if read_at else None
        return inner is not None and inner.within(self.snapshot)


class CacheWatch:
    """The latest CacheState, asked again when older than `interval` seconds. Shared by
    the readers of one process (thread-safe); an interval of 0 serves nothing from Redis
    alone (every cached page is checked against PostgreSQL)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._state: CacheState | None = None
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.interval > 0

    def current(self, conn: psycopg.Connection[Any], *, newer_than: float = 0.0) -> CacheState:
        """The state, asked on `conn` when the one kept is older than the interval or was
        asked before `newer_than` (a time.monotonic() value)."""
        state = self._state
        now = time.monotonic()
        if state is not None and state.taken >= newer_than and now - state.taken < self.interval:
            return state
        fresh = ask(conn)
        with self._lock:
            if self._state is None or self._state.taken < fresh.taken:
                self._state = fresh
        return fresh


def ask(conn: psycopg.Connection[Any]) -> CacheState:
    """PostgreSQL's answer now (one query)."""
    taken = time.monotonic()
    row = conn.execute(query("cache_state"), {"limit": LISTED + 1}).fetchone()
    assert row is not None
    text, at, owed, marked, deleted, pulled = row
    snapshot = Snapshot.parse(text)
    assert snapshot is not None
    pairs = (m.split(":") for m in marked)
    return CacheState(
        snapshot=snapshot,
        pin=Pin.of_snapshot(text, at),
        owed=tuple(owed),
        # a pin that cannot carry every transaction in progress sees less than the snapshot
        in_flight=bool(owed) or len(snapshot.in_progress) > MAX_IN_PROGRESS,
        marked=frozenset((kind, int(feed_id)) for kind, feed_id in pairs),
        deleted=frozenset(deleted),
        listed_all=len(marked) <= LISTED and len(deleted) <= LISTED,
        pulled=bool(pulled),
        at=at,
        taken=taken,
    )
