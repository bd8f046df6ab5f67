"""Reading a page of a user's or a community's feed: Redis first, PostgreSQL on a miss.

Pages are ordered by (score desc, post id desc). A walk (a first page and the pages its
cursors lead to) is pinned to the first page's snapshot: a post whose score changes during
the walk keeps the place it had, so no post is shown twice and none that stays in the feed
is skipped, while posts are fanned out and rescored between pages (docs/decisions/0015).

A cached page is served from Redis alone when PostgreSQL's latest word on the cache
(`CacheState`, asked at most once per `cache_state_ms`) says the cached feed is exactly its
feed at a snapshot: that snapshot pins the walk, and the cursor carries the cached feed's
version, so the next page comes from Redis too while the feed keeps it (docs/decisions/0029).
Otherwise a page read from Redis is checked against PostgreSQL in one query (the pin, the
scores of the cached items, how many entries the cached range should hold); a cache that
disagrees is not trusted and the page is read from PostgreSQL instead.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import psycopg

from feedctl.cache.client import REDIS_ERRORS
from feedctl.cache.feeds import CachedPage, FeedCache
from feedctl.cache.keys import FeedRef, community_feed, user_feed
from feedctl.config import Settings
from feedctl.db.feed_tops import text_top
from feedctl.db.owners import require_community, require_user
from feedctl.db.sql_blocks import query
from feedctl.errors import BadInputError
from feedctl.faults import checkpoint
from feedctl.read.cache_state import CacheState, CacheWatch
from feedctl.read.cursor import (
    CURSOR_MAX_AGE,
    Pin,
    Position,
    decode_cursor,
    encode_cursor,
    require_fresh,
)
from feedctl.read.cursor_secret import cursor_secrets
from feedctl.read.pull import pulled_page

MAX_LIMIT = 500
DEFAULT_RETENTION = Settings().retention
DEFAULT_STATE_SECONDS = Settings().cache_state_ms / 1000
CACHE_SLACK = 8  # extra cached items read, to stand in for items whose score changed
_TOP = (float("inf"), 2**63 - 1)
_BOTTOM = (float("-inf"), -(2**63))
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PAGE_QUERY = {"user": "user_page_pinned", "community": "community_page_pinned"}
_CHECK_QUERY = {"user": "user_cached_page_check", "community": "community_cached_page_check"}

Source = Literal["cache", "database"]


class _StaleCache(Exception):
    """The cached feed disagrees with PostgreSQL."""


class _CacheEnds(Exception):
    """The page reaches past what a truncated cached feed holds."""


@dataclasses.dataclass(frozen=True)
class FeedItem:
    post_id: int
    community_id: int
    author_id: int
    created_at: datetime
    score: float  # the rank key the walk orders by (its value at the walk's pin)

    @property
    def rank(self) -> tuple[float, int]:
        return (self.score, self.post_id)

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
    source: Source
    redis_alone: bool = False  # from the cache with no PostgreSQL query (docs/decisions/0029)

    def as_json(self) -> dict[str, Any]:
        return {"items": [i.as_json() for i in self.items], "next_cursor": self.next_cursor}


class FeedReader:
    """What an app server imports to read feeds.

    One reader per connection; `conn` should be in autocommit mode, so that each page sees
    the latest committed state (the pin, not a long transaction, keeps a walk steady).
    `watch` keeps PostgreSQL's word on the cache; readers of one process may share one.
    """

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        cache: FeedCache,
        secrets: Sequence[str],
        *,
        retention: timedelta | None = DEFAULT_RETENTION,
        cursor_max_age: timedelta = CURSOR_MAX_AGE,
        watch: CacheWatch | None = None,
    ) -> None:
        if not secrets or isinstance(secrets, str):
            raise ValueError("secrets: give a non-empty sequence of cursor secrets")
        self.conn = conn
        self.cache = cache
        self.secrets = tuple(secrets)  # the first signs; any of them verifies
        self.retention = retention
        self.cursor_max_age = cursor_max_age
        self.watch = watch if watch is not None else CacheWatch(DEFAULT_STATE_SECONDS)

    @classmethod
    def for_settings(
        cls, conn: psycopg.Connection[Any], cache: FeedCache, settings: Settings
    ) -> FeedReader:
        """A reader with the configured retention and cursor secrets (or, when none are
        configured, the secret `migrate up` stored in this database)."""
        secrets = cursor_secrets(conn, settings.cursor_secret)
        watch = CacheWatch(settings.cache_state_ms / 1000)
        return cls(conn, cache, secrets, retention=settings.retention, watch=watch)

    def user_feed(self, user_id: int, limit: int = 20, cursor: str | None = None) -> FeedPage:
        return self.page(user_feed(user_id), limit, cursor)

    def community_feed(
        self, community_id: int, limit: int = 20, cursor: str | None = None
    ) -> FeedPage:
        return self.page(community_feed(community_id), limit, cursor)

    def page(self, feed: FeedRef, limit: int, cursor: str | None) -> FeedPage:
        """One page: the first (no cursor) or the one after `cursor`, of the same walk."""
        if not 1 <= limit <= MAX_LIMIT:
            raise BadInputError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
        position = None
        if cursor is not None:
            position = decode_cursor(cursor, feed, self.secrets)
            require_fresh(position, datetime.now(UTC), self.cursor_max_age)
        state = self._state()
        if state is None or state.pulled:
            merged = pulled_page(self, feed, position, limit)  # members of pulled communities
            if merged is not None:
                return merged
        return self.page_at(feed, position, limit)

    def page_at(self, feed: FeedRef, position: Position | None, limit: int) -> FeedPage:
        """The page after `position` (the top when None) of the feed's own entries."""
        state = self._state()  # asked before Redis is read (docs/decisions/0029)
        cached, redis_ok = self._read_cache(feed, position, limit + CACHE_SLACK)
        if cached is not None:
            alone = None if state is None else self._alone(feed, position, limit, cached, state)
            if alone is not None:
                return alone
            try:
                return self._from_cache(feed, position, limit, cached)
            except _CacheEnds:
                return self._from_database(feed, position, limit)
            except _StaleCache:
                page = self._from_database(feed, position, limit)
                self._fill(feed)  # read repair: the next read is served from Redis again
                return page
        page = self._from_database(feed, position, limit)
        if not page.items and position is None:
            _require_feed_owner(self.conn, feed)
        if redis_ok:
            self._fill(feed)
        return page

    def _state(self) -> CacheState | None:
        """PostgreSQL's latest word on the cache; None when pages are never served from
        Redis alone (`cache_state_ms` = 0)."""
        return self.watch.current(self.conn) if self.watch.enabled else None

    def _alone(
        self,
        feed: FeedRef,
        position: Position | None,
        limit: int,
        cached: CachedPage,
        state: CacheState,
    ) -> FeedPage | None:
        """The page from Redis alone, or None when the cache cannot give it so.

        A first page needs the cached feed to be exactly PostgreSQL's at the state's
        snapshot, which then pins the walk; a next page, the cached feed still at the
        version the walk's pages were read from (any write since: the pinned PostgreSQL
        path answers). Either way no write may be owed to the cache, nor the feed marked.
        """
        if not state.serves(feed):
            return None
        if position is not None:
            if position.cached is None or position.cached != cached.version:
                return None
            return self._page_alone(feed, limit, cached, state, position.pin)
        if cached.version is None:
            return None
        if not state.covers(cached.read_at):
            # a write landed after the state was asked: ask again, then read again
            state = self.watch.current(self.conn, newer_than=time.monotonic())
            again, _ = self._read_cache(feed, position, limit + CACHE_SLACK)
            if again is None or again.version is None:
                return None
            if not (state.serves(feed) and state.covers(again.read_at)):
                return None
            cached = again
        return self._page_alone(feed, limit, cached, state, state.pin)

    def _page_alone(
        self, feed: FeedRef, limit: int, cached: CachedPage, state: CacheState, pin: Pin
    ) -> FeedPage | None:
        """The page from the cached items (deleted posts and posts past the retention at
        the pin left out), or None when they do not make a whole page."""
        since = pin.at - self.retention if self.retention is not None else None
        items: list[FeedItem] = []
        for post_id, score in cached.items:
            if post_id in state.deleted:
                continue
            details = cached.details.get(post_id)
            if details is None:
                return None  # written without details (a write of a previous version)
            community, author, micros = details.split(":")
            created = _EPOCH + timedelta(microseconds=int(micros))
            if since is not None and created < since:
                continue
            items.append(FeedItem(post_id, int(community), int(author), created, score))
            if len(items) > limit:
                break  # one past the page: there is more
        whole_rest = not cached.more_in_cache and not cached.truncated
        if not whole_rest and len(items) <= limit:
            return None  # past the cached part, or too many left out: PostgreSQL answers
        page = items[:limit]
        next_cursor = None
        if len(items) > limit and page:
            last = Position(page[-1].score, page[-1].post_id, pin, cached.version)
            next_cursor = encode_cursor(feed, last, self.secrets[0])
        return FeedPage(page, next_cursor, "cache", redis_alone=True)

    def _read_cache(
        self, feed: FeedRef, position: Position | None, count: int
    ) -> tuple[CachedPage | None, bool]:
        after = (position.score, position.post_id) if position else None
        try:
            return self.cache.read(feed.key(self.cache.prefix), after, count), True
        except REDIS_ERRORS:
            return None, False

    def _from_database(self, feed: FeedRef, position: Position | None, limit: int) -> FeedPage:
        params = {
            **_position_params(position),
            "id": feed.id,
            "limit": limit + 1,
            "retention": self.retention,
        }
        rows = self.conn.execute(query(_PAGE_QUERY[feed.kind]), params).fetchall()
        pin = Pin.of_snapshot(rows[0][0], rows[0][1])
        items = [FeedItem(*row[2:]) for row in rows if row[2] is not None]
        return self._finish(feed, items[:limit], len(items) > limit, pin, "database")

    def _from_cache(
        self, feed: FeedRef, position: Position | None, limit: int, cached: CachedPage
    ) -> FeedPage:
        """The page from the cached items, checked against PostgreSQL.

        Raises _StaleCache when the cache disagrees with PostgreSQL, _CacheEnds when the
        page reaches past the end of a truncated cache: PostgreSQL answers either way.
        """
        whole_rest = not cached.more_in_cache and not cached.truncated
        if whole_rest:
            floor = _BOTTOM
        elif cached.items:
            floor = (cached.items[-1][1], cached.items[-1][0])
        else:
            raise _CacheEnds
        pin, in_range, listed, changed = self._check(feed, position, cached.items, floor)
        kept = []
        for post_id, score in cached.items:
            if post_id in changed:
                continue
            item = listed.get(post_id)
            if item is None or item.score != score:
                raise _StaleCache  # a write still in flight, or one that was lost
            kept.append(item)
        if len(kept) != in_range:
            raise _StaleCache  # the cache misses entries that PostgreSQL has
        merged = kept + [item for item in changed.values() if item.rank >= floor]
        merged.sort(key=lambda item: item.rank, reverse=True)
        if whole_rest:
            return self._finish(feed, merged[:limit], len(merged) > limit, pin, "cache")
        if len(merged) < limit:
            raise _CacheEnds
        return self._finish(feed, merged[:limit], True, pin, "cache")

    def _check(
        self,
        feed: FeedRef,
        position: Position | None,
        entries: Sequence[tuple[int, float]],
        floor: tuple[float, int],
    ) -> tuple[Pin, int, dict[int, FeedItem], dict[int, FeedItem]]:
        params = {
            **_position_params(position),
            "id": feed.id,
            "post_ids": [post_id for post_id, _ in entries],
            "floor_score": floor[0],
            "floor_post_id": floor[1],
            "retention": self.retention,
        }
        rows = self.conn.execute(query(_CHECK_QUERY[feed.kind]), params).fetchall()
        listed: dict[int, FeedItem] = {}
        changed: dict[int, FeedItem] = {}
        for row in rows:
            if row[4] is None:
                continue
            item = FeedItem(*row[4:])
            (changed if row[3] else listed)[item.post_id] = item
        return Pin.of_snapshot(rows[0][0], rows[0][1]), int(rows[0][2]), listed, changed

    def _finish(
        self, feed: FeedRef, items: list[FeedItem], more: bool, pin: Pin, source: Source
    ) -> FeedPage:
        next_cursor = None
        if more and items:
            last = Position(items[-1].score, items[-1].post_id, pin)
            next_cursor = encode_cursor(feed, last, self.secrets[0])
        return FeedPage(items, next_cursor, source)

    def _fill(self, feed: FeedRef) -> None:
        """Cache a feed that missed, best effort: a read never fails because Redis did."""
        key = feed.key(self.cache.prefix)
        try:
            # Fenced (docs/decisions/0028): stamp, read PostgreSQL, swap. Refused when any
            # other write reached the feed in between: that write stands, no retry.
            (stamp,) = self.cache.stamp([key])
            assert stamp is not None
            top = text_top(self.conn, feed, self.cache.cap, self.retention)
            checkpoint("cache.tops_read")
            self.cache.swap(
                [(key, stamp, top.text, top.truncated)], with_details=True, read_at=top.read_at
            )
        except REDIS_ERRORS:
            return


def _position_params(position: Position | None) -> dict[str, Any]:
    if position is None:
        score, post_id = _TOP
        return {"score": score, "post_id": post_id, "pin_snapshot": None, "pin_at": None}
    return {
        "score": position.score,
        "post_id": position.post_id,
        "pin_snapshot": position.pin.snapshot,
        "pin_at": position.pin.at,
    }


def _require_feed_owner(conn: psycopg.Connection[Any], feed: FeedRef) -> None:
    if feed.kind == "user":
        require_user(conn, feed.id)
    else:
        require_community(conn, feed.id)
