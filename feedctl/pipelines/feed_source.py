"""Reading whole feeds (their best cap entries) out of PostgreSQL, for the cache."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg

from feedctl.cache.keys import FeedKind, FeedRef
from feedctl.db.sql_blocks import query

_TOPS_QUERY = {"user": "user_feed_tops", "community": "community_feed_tops"}


@dataclasses.dataclass(frozen=True)
class FeedTop:
    """The best entries of one feed, and whether the feed has more than those."""

    feed: FeedRef
    entries: list[tuple[int, float]]  # (post id, score), best first
    truncated: bool


def load_tops(
    conn: psycopg.Connection[Any], kind: FeedKind, ids: Sequence[int], cap: int
) -> list[FeedTop]:
    """The top `cap` entries of each feed, in one query; feeds with no entries included."""
    found: dict[int, list[tuple[int, float]]] = defaultdict(list)
    rows = conn.execute(query(_TOPS_QUERY[kind]), {"ids": list(ids), "limit": cap + 1})
    for feed_id, post_id, score in rows:
        found[feed_id].append((post_id, score))
    tops = []
    for feed_id in ids:
        entries = found.get(feed_id, [])
        tops.append(FeedTop(FeedRef(kind, feed_id), entries[:cap], len(entries) > cap))
    return tops


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
