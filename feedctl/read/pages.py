"""Reading a page of a user's or a community's feed: Redis first, PostgreSQL on a miss.

Pages are ordered by (score desc, post id desc); a cursor names the last item shown,
so a page boundary neither repeats nor drops an item while the feed changes.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any, Literal

import psycopg

from feedctl.cache.client import REDIS_ERRORS
from feedctl.cache.feeds import CachedPage, FeedCache
from feedctl.cache.keys import FeedRef, community_feed, user_feed
from feedctl.db.sql_blocks import query
from feedctl.errors import BadInputError
from feedctl.pipelines.cache_ops import require_community, require_user
from feedctl.pipelines.feed_source import load_tops
from feedctl.read.cursor import decode_cursor, encode_cursor

MAX_LIMIT = 500
_TOP = (float("inf"), 2**63 - 1)
_PAGE_QUERY = {"user": "user_feed_page", "community": "community_feed_page"}


@dataclasses.dataclass(frozen=True)
class FeedItem:
    post_id: int
    community_id: int
    author_id: int
    created_at: datetime
    score: float

    def as_json(self) -> dict[str, Any]:
        return {
            "post_id": self.post_id,
            "community_id": self.community_id,
            "author_id": self.author_id,
            "created_at": self.created_at.isoformat(),
            "score": self.score,
        }


@dataclasses.dataclass(frozen=True)
class FeedPage:
    items: list[FeedItem]
    next_cursor: str | None
    source: Literal["cache", "database", "cache+database"]

    def as_json(self) -> dict[str, Any]:
        return {"items": [i.as_json() for i in self.items], "next_cursor": self.next_cursor}


class FeedReader:
    """What an app server imports to read feeds."""

    def __init__(self, conn: psycopg.Connection[Any], cache: FeedCache, cursor_secret: str) -> None:
        self.conn = conn
        self.cache = cache
        self.secret = cursor_secret

    def user_feed(self, user_id: int, limit: int = 20, cursor: str | None = None) -> FeedPage:
        return self.page(user_feed(user_id), limit, cursor)

    def community_feed(
        self, community_id: int, limit: int = 20, cursor: str | None = None
    ) -> FeedPage:
        return self.page(community_feed(community_id), limit, cursor)

    def page(self, feed: FeedRef, limit: int, cursor: str | None) -> FeedPage:
        if not 1 <= limit <= MAX_LIMIT:
            raise BadInputError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
        after = decode_cursor(cursor, feed, self.secret) if cursor else None
        cached, redis_ok = self._read_cache(feed, after, limit)
        if cached is None:
            return self._from_database(feed, after, limit, fill=redis_ok)
        return self._from_cache(feed, after, limit, cached)

    def _read_cache(
        self, feed: FeedRef, after: tuple[float, int] | None, limit: int
    ) -> tuple[CachedPage | None, bool]:
        try:
            return self.cache.read(feed.key(self.cache.prefix), after, limit), True
        except REDIS_ERRORS:
            return None, False

    def _from_database(
        self, feed: FeedRef, after: tuple[float, int] | None, limit: int, fill: bool
    ) -> FeedPage:
        rows = self._database_rows(feed, after, limit + 1)
        if not rows and after is None:
            _require_feed_owner(self.conn, feed)
        if fill:
            self._fill(feed)
        return self._finish(feed, rows[:limit], len(rows) > limit, "database")

    def _from_cache(
        self, feed: FeedRef, after: tuple[float, int] | None, limit: int, cached: CachedPage
    ) -> FeedPage:
        items = self._hydrate(cached.items)
        more = cached.more_in_cache
        if not more and cached.truncated:
            last = (cached.items[-1][1], cached.items[-1][0]) if cached.items else after
            wanted = limit - len(items)
            rows = self._database_rows(feed, last, wanted + 1)
            return self._finish(feed, items + rows[:wanted], len(rows) > wanted, "cache+database")
        return self._finish(feed, items, more, "cache")

    def _finish(self, feed: FeedRef, items: list[FeedItem], more: bool, source: Any) -> FeedPage:
        next_cursor = None
        if more and items:
            next_cursor = encode_cursor(feed, items[-1].score, items[-1].post_id, self.secret)
        return FeedPage(items, next_cursor, source)

    def _database_rows(
        self, feed: FeedRef, after: tuple[float, int] | None, count: int
    ) -> list[FeedItem]:
        score, post_id = after or _TOP
        params = {"id": feed.id, "score": score, "post_id": post_id, "limit": count}
        rows = self.conn.execute(query(_PAGE_QUERY[feed.kind]), params).fetchall()
        return [FeedItem(*row) for row in rows]

    def _hydrate(self, entries: list[tuple[int, float]]) -> list[FeedItem]:
        if not entries:
            return []
        ids = [post_id for post_id, _ in entries]
        rows = self.conn.execute(query("post_details"), {"post_ids": ids}).fetchall()
        details = {row[0]: row for row in rows}
        return [
            FeedItem(post_id, details[post_id][1], details[post_id][2], details[post_id][3], score)
            for post_id, score in entries
            if post_id in details
        ]

    def _fill(self, feed: FeedRef) -> None:
        """Cache a feed that missed, best effort: a read never fails because Redis did."""
        top = load_tops(self.conn, feed.kind, [feed.id], self.cache.cap)[0]
        try:
            self.cache.replace(feed.key(self.cache.prefix), top.entries, top.truncated)
        except REDIS_ERRORS:
            return


def _require_feed_owner(conn: psycopg.Connection[Any], feed: FeedRef) -> None:
    if feed.kind == "user":
        require_user(conn, feed.id)
    else:
        require_community(conn, feed.id)
