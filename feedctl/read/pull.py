"""Reading a user's feed that includes pulled communities (docs/decisions/0034).

A community with more members than `pull_threshold` is pulled: fan-out stores its posts'
scores (post_score) but writes no entry into its members' feeds. A member's page is then
the merge of their own feed (Redis or PostgreSQL, as for any feed) and the community page
of each pulled community they are a member of, all read after the same position and
pinned to the same snapshot. Every part is ordered by the same pinned (score, post id)
key, so the merge keeps the ordering, the pagination and the walk guarantees of a feed
built by full fan-out (docs/decisions/0015): taking the best `limit` of each part's best
`limit + 1` is the best `limit` of the union. A post in both parts (fanned out before its
community was pulled) is shown once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from feedctl.cache.keys import FeedRef
from feedctl.db.sql_blocks import query
from feedctl.read.cursor import Pin, Position, encode_cursor

if TYPE_CHECKING:
    from feedctl.read.pages import FeedItem, FeedPage, FeedReader

_TOP = (float("inf"), 2**63 - 1)


def pulled_page(
    reader: FeedReader, feed: FeedRef, position: Position | None, limit: int
) -> FeedPage | None:
    """The page of a user who is a member of pulled communities; None for any other feed
    (the reader then reads it as usual)."""
    if feed.kind != "user":
        return None
    row = reader.conn.execute(query("pulled_communities_of_user"), {"user_id": feed.id}).fetchone()
    communities: list[int] = list(row[2]) if row else []
    if row is None or not communities:
        return None
    from feedctl.read.pages import FeedItem, FeedPage  # pages imports this module

    after = position or Position(_TOP[0], _TOP[1], Pin.of_snapshot(row[0], row[1]))
    own = reader.page_at(feed, after, limit + 1)
    parts: list[list[FeedItem]] = [own.items]
    for community_id in communities:
        params = {
            "score": after.score,
            "post_id": after.post_id,
            "pin_snapshot": after.pin.snapshot,
            "pin_at": after.pin.at,
            "id": community_id,
            "limit": limit + 1,
            "retention": reader.retention,
        }
        rows = reader.conn.execute(query("community_page_pinned"), params).fetchall()
        parts.append([FeedItem(*r[2:]) for r in rows if r[2] is not None])
    merged = {item.post_id: item for part in parts for item in part}
    items = sorted(merged.values(), key=lambda item: item.rank, reverse=True)
    page, more = items[:limit], len(items) > limit
    next_cursor = None
    if more and page:
        last = Position(page[-1].score, page[-1].post_id, after.pin)
        next_cursor = encode_cursor(feed, last, reader.secrets[0])
    return FeedPage(page, next_cursor, "database")
