"""Cached feeds in Redis: one sorted set per feed (member = post id, score = rank key).

Each cached feed holds a sentinel member at score -inf that says what the cache knows:
`c` - the set is the complete feed; `t` - the set is the exact top of a longer feed
(truncated to the cap). A key that does not exist is a feed that is not cached: writes
never create it; only `replace_feeds` (warm, rebuild, repair, a read miss) does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any, cast

from feedctl.cache.client import RedisClient

COMPLETE = b"c"
TRUNCATED = b"t"
_SENTINELS = (COMPLETE, TRUNCATED)
_ZADD_CHUNK = 1000

# Upsert (score, post id) pairs into a cached feed and trim it to the cap, keeping it an
# exact prefix of the full feed, ordered by (score desc, post id desc). Returns -1 when
# the feed is not cached, else the number of members added or updated.
_UPSERT_LUA = """
local key = KEYS[1]
local head = redis.call('ZRANGE', key, 0, 0)
if #head == 0 then return -1 end
local cap = tonumber(ARGV[1])
local truncated = head[1] == 't'

local function above(s1, m1, s2, m2)
  if s1 ~= s2 then return s1 > s2 end
  return tonumber(m1) > tonumber(m2)
end

local floor_s, floor_m
-- The lowest cached entry in feed order: the lowest score, and among equal scores the
-- smallest post id (Redis itself orders equal scores by member text).
local function load_floor()
  local low = redis.call('ZRANGE', key, 1, 1, 'WITHSCORES')
  if #low == 0 then floor_s, floor_m = nil, nil return end
  floor_s, floor_m = tonumber(low[2]), low[1]
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', key, low[2], low[2])) do
    if tonumber(member) < tonumber(floor_m) then floor_m = member end
  end
end
if truncated then load_floor() end

local added = 0
if not truncated then
  for i = 2, #ARGV, 4000 do
    added = added + redis.call('ZADD', key, unpack(ARGV, i, math.min(i + 3999, #ARGV)))
  end
end
for i = 2, (truncated and #ARGV or 0), 2 do
  local raw, member = ARGV[i], ARGV[i + 1]
  local score = tonumber(raw)
  if redis.call('ZSCORE', key, member) then
    redis.call('ZREM', key, member)
    if member == floor_m then load_floor() end
  end
  if floor_s ~= nil and above(score, member, floor_s, floor_m) then
    added = added + redis.call('ZADD', key, raw, member)
  end
end

local excess = redis.call('ZCARD', key) - 1 - cap
if excess > 0 then
  local low = redis.call('ZRANGE', key, excess, excess + 1, 'WITHSCORES')
  local boundary = low[2]
  if low[4] ~= nil and tonumber(low[4]) == tonumber(boundary) then
    local removed = redis.call('ZREMRANGEBYSCORE', key, '(-inf', '(' .. boundary)
    local tied = redis.call('ZRANGEBYSCORE', key, boundary, boundary)
    table.sort(tied, function(a, b) return tonumber(a) < tonumber(b) end)
    for j = 1, excess - removed do redis.call('ZREM', key, tied[j]) end
  else
    redis.call('ZREMRANGEBYRANK', key, 1, excess)
  end
  if not truncated then
    redis.call('ZREM', key, 'c')
    redis.call('ZADD', key, '-inf', 't')
  end
end
return added
"""


@dataclasses.dataclass(frozen=True)
class CachedPage:
    """Items read from a cached feed, best first, and what lies beyond them."""

    items: list[tuple[int, float]]  # (post id, score)
    more_in_cache: bool  # the cache holds further items past these
    truncated: bool  # the full feed may continue past what the cache holds


class FeedCache:
    """Pipelined reads and writes of cached feeds under one key prefix."""

    def __init__(self, client: RedisClient, prefix: str, cap: int) -> None:
        self.client = client
        self.prefix = prefix
        self.cap = cap
        self._upsert = client.register_script(_UPSERT_LUA)
        self._script_loaded = False

    def upsert(
        self, keyed_entries: Iterable[tuple[str, Sequence[tuple[int, float]]]]
    ) -> list[bool]:
        """Upsert entries into cached feeds (uncached feeds are left alone), pipelined.

        Returns, feed by feed, whether it was cached.
        """
        sha = self._script_sha()
        with self.client.pipeline(transaction=False) as pipe:
            for key, entries in keyed_entries:
                pipe.evalsha(sha, 1, key, *self._upsert_args(entries))
            return [int(result) >= 0 for result in pipe.execute()]

    def upsert_same(self, keys: Sequence[str], entries: Sequence[tuple[int, float]]) -> list[bool]:
        """Upsert the same entries into many cached feeds (fan-out), arguments built once."""
        sha = self._script_sha()
        args = self._upsert_args(entries)
        with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.evalsha(sha, 1, key, *args)
            return [int(result) >= 0 for result in pipe.execute()]

    def _upsert_args(self, entries: Sequence[tuple[int, float]]) -> list[Any]:
        args: list[Any] = [self.cap]
        for post_id, score in entries:
            args.extend((repr(float(score)), post_id))
        return args

    def _script_sha(self) -> str:
        """Load the upsert script once per client (a restarted server forgets it: reload)."""
        if not self._script_loaded or not self.client.script_exists(self._upsert.sha)[0]:
            self.client.script_load(_UPSERT_LUA)
            self._script_loaded = True
        return str(self._upsert.sha)

    def remove(self, keyed_posts: Iterable[tuple[str, Sequence[int]]]) -> None:
        """Remove posts from feeds, pipelined (a prefix stays a prefix)."""
        with self.client.pipeline(transaction=False) as pipe:
            for key, post_ids in keyed_posts:
                if post_ids:
                    pipe.zrem(key, *post_ids)
            pipe.execute()

    def replace(self, key: str, entries: Sequence[tuple[int, float]], truncated: bool) -> None:
        """Swap in a whole feed atomically (readers see the old or the new, never half)."""
        self.replace_many([(key, entries, truncated)])

    def replace_many(self, feeds: Iterable[tuple[str, Sequence[tuple[int, float]], bool]]) -> None:
        """Swap in whole feeds in one MULTI/EXEC round trip."""
        with self.client.pipeline(transaction=True) as pipe:
            for key, entries, truncated in feeds:
                pipe.delete(key)
                pipe.zadd(key, {TRUNCATED if truncated else COMPLETE: float("-inf")})
                for start in range(0, len(entries), _ZADD_CHUNK):
                    chunk = entries[start : start + _ZADD_CHUNK]
                    pipe.zadd(key, {str(post_id): float(score) for post_id, score in chunk})
            pipe.execute()

    def exists(self, keys: Sequence[str]) -> list[bool]:
        with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.exists(key)
            return [bool(found) for found in pipe.execute()]

    def delete(self, keys: Sequence[str]) -> int:
        return int(self.client.delete(*keys)) if keys else 0

    def members(self, key: str) -> tuple[list[tuple[int, float]], bytes] | None:
        """Every member of a cached feed, best first, and its sentinel; None when not cached."""
        raw = cast(list[tuple[bytes, float]], self.client.zrange(key, 0, -1, withscores=True))
        if not raw:
            return None
        sentinel = raw[0][0]
        items = [(int(m), s) for m, s in raw[1:]]
        items.sort(key=lambda item: (item[1], item[0]), reverse=True)
        return items, sentinel

    def read(self, key: str, after: tuple[float, int] | None, count: int) -> CachedPage | None:
        """Up to `count` items strictly after `after` (or from the top); None on a miss."""
        top = "+inf" if after is None else f"({after[0]!r}"
        with self.client.pipeline(transaction=False) as pipe:
            pipe.zrange(key, 0, 0)
            pipe.zrange(
                key, top, "(-inf", desc=True, byscore=True, offset=0, num=count + 1, withscores=True
            )
            if after is not None:
                pipe.zrange(key, repr(after[0]), repr(after[0]), byscore=True, withscores=True)
            results = pipe.execute()
        head = results[0]
        if not head:
            return None
        below = [(int(m), float(s)) for m, s in results[1]]
        ties = []
        if after is not None:
            ties = [(int(m), float(s)) for m, s in results[2] if int(m) < after[1]]
        more = len(below) > count
        if more:
            below = self._complete_boundary_ties(key, below)
        items = sorted(ties + below, key=lambda item: (item[1], item[0]), reverse=True)
        return CachedPage(
            items=items[:count],
            more_in_cache=more or len(items) > count,
            truncated=head[0] == TRUNCATED,
        )

    def _complete_boundary_ties(
        self, key: str, items: list[tuple[int, float]]
    ) -> list[tuple[int, float]]:
        """Redis orders equal scores by member text; fetch the whole tie at the page's edge."""
        boundary = items[-1][1]
        tied = cast(
            list[tuple[bytes, float]],
            self.client.zrange(key, repr(boundary), repr(boundary), byscore=True, withscores=True),
        )
        rest = [item for item in items if item[1] != boundary]
        return rest + [(int(m), float(s)) for m, s in tied]
