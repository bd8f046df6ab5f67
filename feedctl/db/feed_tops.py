"""Reading whole feeds (their best cap entries) out of PostgreSQL, for the cache."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Collection, Iterator, Sequence
from datetime import timedelta
from typing import Any

import psycopg

from feedctl.cache.keys import FeedKind, FeedRef
from feedctl.db.sql_blocks import query

_TOPS_QUERY = {"user": "user_feed_tops", "community": "community_feed_tops"}
_TEXT_TOPS_QUERY = {"user": "user_feed_tops_text", "community": "community_feed_tops_text"}


@dataclasses.dataclass(frozen=True)
class FeedTop:
    """The best entries of one feed, and whether the feed has more than those."""

    feed: FeedRef
    entries: list[tuple[int, float]]  # (post id, score), best first
    truncated: bool


def load_tops(
    conn: psycopg.Connection[Any],
    kind: FeedKind,
    ids: Sequence[int],
    cap: int,
    retention: timedelta | None,
) -> list[FeedTop]:
    """The top `cap` retained entries of each feed, in one query; empty feeds included."""
    found: dict[int, list[tuple[int, float]]] = defaultdict(list)
    params = {"ids": list(ids), "limit": cap + 1, "retention": retention}
    rows = conn.execute(query(_TOPS_QUERY[kind]), params)
    for feed_id, post_id, score in rows:
        found[feed_id].append((post_id, score))
    tops = []
    for feed_id in ids:
        entries = found.get(feed_id, [])
        tops.append(FeedTop(FeedRef(kind, feed_id), entries[:cap], len(entries) > cap))
    return tops


@dataclasses.dataclass(frozen=True)
class TextTop:
    """The best entries of one feed as text: "score post_id details ..." best first (the
    details "community:author:created_us", see `post_details`), and the PostgreSQL
    snapshot they were read at."""

    feed: FeedRef
    text: str
    entries: int
    truncated: bool
    read_at: str = ""


def text_top_batches(
    conn: psycopg.Connection[Any],
    kind: FeedKind,
    ids: Sequence[int],
    cap: int,
    batch: int,
    retention: timedelta | None,
) -> Iterator[list[TextTop]]:
    """The top `cap` entries of each feed, `batch` feeds at a time, as text ready for Redis.

    One query, read through a server-side cursor: memory holds one batch, whatever the
    number of feeds. Scores are PostgreSQL's exact (shortest round-trip) float8 text, so
    Redis parses back the very same doubles without a Python float in between.
    """
    with conn.transaction(), conn.cursor(name="feedctl_text_tops") as cursor:
        conn.execute(query("exact_float_text"))
        params = {"ids": list(ids), "limit": cap + 1, "retention": retention}
        cursor.execute(query(_TEXT_TOPS_QUERY[kind]), params)
        while rows := cursor.fetchmany(batch):
            yield [_text_top(kind, f, n, text, at, cap) for f, n, text, at in rows]


def text_top(
    conn: psycopg.Connection[Any], feed: FeedRef, cap: int, retention: timedelta | None
) -> TextTop:
    """The top `cap` entries of one feed as text ready for Redis (one short transaction:
    exact float text is set for it alone)."""
    with conn.transaction():
        conn.execute(query("exact_float_text"))
        params = {"ids": [feed.id], "limit": cap + 1, "retention": retention}
        row = conn.execute(query(_TEXT_TOPS_QUERY[feed.kind]), params).fetchone()
    assert row is not None
    return _text_top(feed.kind, row[0], row[1], row[2], row[3], cap)


def _text_top(
    kind: FeedKind, feed_id: int, entries: int, text: str | None, read_at: str, cap: int
) -> TextTop:
    feed = FeedRef(kind, feed_id)
    if entries > cap:  # the query reads one entry past the cap to tell: drop it
        return TextTop(feed, (text or "").rsplit(" ", 3)[0], cap, True, read_at)
    return TextTop(feed, text or "", entries, False, read_at)


def member_pages(
    conn: psycopg.Connection[Any], community_id: int, page: int = 5000
) -> Iterator[list[int]]:
    """A community's member ids in pages, so memory does not grow with its size."""
    after = 0
    while True:
        rows = conn.execute(
            query("member_ids_page"),
            {"community_id": community_id, "after": after, "limit": page},
        ).fetchall()
        if not rows:
            return
        yield [row[0] for row in rows]
        after = rows[-1][0]


_ENTRIES_QUERY = {"user": "user_entries_of", "community": "community_entries_of"}


@dataclasses.dataclass(frozen=True)
class CurrentEntries:
    """Entries of some feeds as PostgreSQL holds them now (see `current_entries`)."""

    scores: dict[tuple[int, int], float]  # (feed id, post id) -> score
    details: dict[int, str]  # post id -> "community:author:created_us"
    read_at: str  # the snapshot they were read at ('' when nothing was read)


def current_entries(
    conn: psycopg.Connection[Any],
    kind: FeedKind,
    feed_ids: Collection[int],
    post_ids: Collection[int],
    retention: timedelta | None,
) -> CurrentEntries:
    """The current score of every entry of these feeds among these posts, by (feed id,
    post id); a pair not in the map is not in its feed (deleted, expired, never fanned out).

    One query, through the primary key's index (never a scan of a partition): what fan-out
    asks is the cross product of its feeds and posts, rank's pairs nearly so."""
    if not feed_ids or not post_ids:
        return CurrentEntries({}, {}, "")
    posts = sorted(post_ids)
    params = {"feed_ids": sorted(feed_ids), "post_ids": posts, "retention": retention}
    with conn.transaction():
        conn.execute(query("rank_prefer_indexes"))
        rows = conn.execute(query(_ENTRIES_QUERY[kind]), params).fetchall()
    # a post's details never change: read once per post, not per (feed, post) entry
    details = conn.execute(query("post_details"), {"ids": posts}).fetchall()
    return CurrentEntries(
        scores={(f, p): score for snapshot, f, p, score in rows if snapshot is None},
        details=dict(details),
        read_at=next(snapshot for snapshot, *_ in rows if snapshot is not None),
    )


def text_tops(
    conn: psycopg.Connection[Any],
    kind: FeedKind,
    ids: Sequence[int],
    cap: int,
    retention: timedelta | None,
) -> list[TextTop]:
    """The top `cap` entries of each feed as text, in the order of `ids` (all in memory:
    for a bounded number of feeds)."""
    if not ids:
        return []
    return [
        top
        for batch in text_top_batches(conn, kind, ids, cap, len(ids), retention)
        for top in batch
    ]
