"""Cached feeds in Redis: one sorted set per feed (member = post id, score = rank key).

Each cached feed holds a sentinel member at score -inf that says what the cache knows:
`c` - the set is the complete feed; `t` - the set is the exact top of a longer feed
(truncated to the cap). A key that does not exist is a feed that is not cached: writes
never create it; only `replace_feeds` (warm, rebuild, repair, a read miss) does.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, cast

from feedctl.cache.client import RedisClient, is_cluster
from feedctl.cache.keys import feed_pattern

COMPLETE = b"c"
TRUNCATED = b"t"
_SENTINELS = (COMPLETE, TRUNCATED)
_SCAN_COUNT = 1000

# Swap a whole feed in, atomically (a script runs alone): the new members are written
# and the old ones gone in one step, so a reader sees the old feed or the new one, never
# an empty or half-built one. One key per call, so it works on Redis Cluster unchanged.
# ARGV: mode ('always' or 'cached': only when the key exists), sentinel, and the entries as
# one text "score post_id score post_id ..." (one argument per feed: the client does not
# pack thousands of arguments, the server splits them). Returns 1 when written, else 0.
_REPLACE_LUA = """
local key = KEYS[1]
if ARGV[1] == 'cached' and redis.call('EXISTS', key) == 0 then return 0 end
redis.call('DEL', key)
redis.call('ZADD', key, '-inf', ARGV[2])
local batch = {}
local n = 0
for score, member in string.gmatch(ARGV[3], '(%S+) (%S+)') do
  batch[n + 1] = score
  batch[n + 2] = member
  n = n + 2
  if n == 2000 then
    redis.call('ZADD', key, unpack(batch, 1, n))
    n = 0
  end
end
if n > 0 then redis.call('ZADD', key, unpack(batch, 1, n)) end
return 1
"""

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


@dataclasses.dataclass(frozen=True)
class CachedFeed:
    """Everything a cached feed's key holds, sorted out for verification."""

    entries: list[tuple[int, float]]  # (post id, score), best first
    sentinels: list[bytes]  # `c` or `t` members at -inf (exactly one in a sound feed)
    foreign: list[bytes]  # members that are neither a post id nor a sentinel at -inf
    wrong_type: bool = False  # the key holds something other than a sorted set


@dataclasses.dataclass(frozen=True)
class KeyFacts:
    """What vacuum needs to know about one key: its type, size, lowest member and bytes."""

    key: str
    type: str
    members: int  # ZCARD (0 for other types)
    lowest: tuple[bytes, float] | None  # the lowest member and its score, for sorted sets
    bytes: int  # MEMORY USAGE (an estimate for large sets)

    @property
    def sound(self) -> bool:
        """A sorted set whose lowest member is a sentinel at -inf."""
        return (
            self.type == "zset"
            and self.lowest is not None
            and self.lowest[0] in _SENTINELS
            and self.lowest[1] == float("-inf")
        )


class FeedCache:
    """Pipelined reads and writes of cached feeds under one key prefix."""

    def __init__(self, client: RedisClient, prefix: str, cap: int) -> None:
        self.client = client
        self.prefix = prefix
        self.cap = cap
        self._upsert_sha = _sha(_UPSERT_LUA)
        self._replace_sha = _sha(_REPLACE_LUA)
        self._scripts_loaded = False
        self._cluster = is_cluster(client)

    def upsert(
        self, keyed_entries: Iterable[tuple[str, Sequence[tuple[int, float]]]]
    ) -> list[bool]:
        """Upsert entries into cached feeds (uncached feeds are left alone), pipelined.

        Returns, feed by feed, whether it was cached.
        """
        sha = self._load_scripts()[0]
        with self.client.pipeline(transaction=False) as pipe:
            for key, entries in keyed_entries:
                self._evalsha(pipe, sha, key, *self._upsert_args(entries))
            return [int(result) >= 0 for result in pipe.execute()]

    def upsert_same(self, keys: Sequence[str], entries: Sequence[tuple[int, float]]) -> list[bool]:
        """Upsert the same entries into many cached feeds (fan-out), arguments built once."""
        sha = self._load_scripts()[0]
        args = self._upsert_args(entries)
        with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                self._evalsha(pipe, sha, key, *args)
            return [int(result) >= 0 for result in pipe.execute()]

    def _upsert_args(self, entries: Sequence[tuple[int, float]]) -> list[Any]:
        args: list[Any] = [self.cap]
        for post_id, score in entries:
            args.extend((repr(float(score)), post_id))
        return args

    def _load_scripts(self) -> tuple[str, str]:
        """The (upsert, replace) scripts' SHA1s, loaded on the server first when missing (a
        restarted server forgets them). Scripts are called by EVALSHA inside pipelines, which
        cannot load a script themselves; on a Redis Cluster SCRIPT EXISTS asks every primary
        and SCRIPT LOAD loads on every primary, so each node can run the calls for its keys."""
        shas = (self._upsert_sha, self._replace_sha)
        if not self._scripts_loaded or not all(self.client.script_exists(*shas)):
            self.client.script_load(_UPSERT_LUA)
            self.client.script_load(_REPLACE_LUA)
            self._scripts_loaded = True
        return shas

    def _evalsha(self, pipe: Any, sha: str, key: str, *args: Any) -> None:
        """Queue a one-key script call in a pipeline. Sent as a plain EVALSHA command: redis-py's
        cluster pipeline refuses its `evalsha` method (it cannot load scripts), yet sends an
        EVALSHA command like any other; the scripts are loaded beforehand (`_load_scripts`).
        """
        pipe.execute_command("EVALSHA", sha, 1, key, *args, **self._routed(key))

    def _routed(self, key: str) -> dict[str, Any]:
        """On a cluster, the node that holds `key`, for a command whose keys redis-py cannot
        find alone (EVALSHA, MEMORY USAGE): it would ask a server for them (COMMAND GETKEYS,
        one round trip per command). Nothing on a single server."""
        if not self._cluster:
            return {}
        return {"target_nodes": cast(Any, self.client).get_node_from_key(key)}

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
        """Swap in whole feeds, each atomically, in one pipelined round trip."""
        self._replace(feeds, "always")

    def replace_cached_many(
        self, feeds: Iterable[tuple[str, Sequence[tuple[int, float]], bool]]
    ) -> list[bool]:
        """Swap in whole feeds that are cached now (atomically each); leave the others out.

        Returns, feed by feed, whether it was cached (and so written).
        """
        return self._replace(feeds, "cached")

    def replace_text_many(
        self, feeds: Iterable[tuple[str, str, bool]], *, only_cached: bool = False
    ) -> list[bool]:
        """Swap in whole feeds whose entries are text, "score post_id score post_id ...",
        each atomically, in one pipelined round trip; see `replace_cached_many`."""
        mode = "cached" if only_cached else "always"
        sha = self._load_scripts()[1]
        with self.client.pipeline(transaction=False) as pipe:
            for key, text, truncated in feeds:
                self._evalsha(pipe, sha, key, mode, TRUNCATED if truncated else COMPLETE, text)
            return [bool(result) for result in pipe.execute()]

    def _replace(
        self, feeds: Iterable[tuple[str, Sequence[tuple[int, float]], bool]], mode: str
    ) -> list[bool]:
        return self.replace_text_many(
            ((key, entries_text(entries), truncated) for key, entries, truncated in feeds),
            only_cached=mode == "cached",
        )

    def exists(self, keys: Sequence[str]) -> list[bool]:
        with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.exists(key)
            return [bool(found) for found in pipe.execute()]

    def delete(self, keys: Sequence[str]) -> int:
        """Delete keys, one DEL each in a pipeline (no multi-key command: on a Redis Cluster
        the keys live in different slots; the pipeline is split per node)."""
        return self._per_key("delete", keys)

    def _per_key(self, command: str, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                getattr(pipe, command)(key)
            return sum(int(n) for n in pipe.execute())

    def sizes(self, keys: Sequence[str]) -> list[int | None]:
        """Entries (sentinel excluded) of each cached feed; None for a feed not cached."""
        with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.zcard(key)
            counts = pipe.execute()
        return [int(n) - 1 if n else None for n in counts]

    def whole(self, keys: Sequence[str]) -> list[CachedFeed | None]:
        """Every member of each feed, sorted out; None for a key that is not cached."""
        with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.zrange(key, 0, -1, withscores=True)
            results = pipe.execute(raise_on_error=False)
        return [_whole_feed(raw) for raw in results]

    def scan_keys(self) -> Iterator[list[str]]:
        """Every key under `prefix feed:` in batches, walked with SCAN (never KEYS)."""
        batch: list[str] = []
        for raw in self.client.scan_iter(match=feed_pattern(self.prefix), count=_SCAN_COUNT):
            batch.append(raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else raw)
            if len(batch) >= _SCAN_COUNT:
                yield batch
                batch = []
        if batch:
            yield batch

    def inspect(self, keys: Sequence[str]) -> list[KeyFacts]:
        """Type, size, lowest member and memory of each key, pipelined."""
        with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.type(key)
                pipe.zcard(key)
                pipe.zrange(key, 0, 0, withscores=True)
                cast(Any, pipe).execute_command("MEMORY USAGE", key, **self._routed(key))
            results = pipe.execute(raise_on_error=False)
        facts = []
        for index, key in enumerate(keys):
            kind, card, lowest, used = results[4 * index : 4 * index + 4]
            zset = kind in (b"zset", "zset")
            facts.append(
                KeyFacts(
                    key=key,
                    type=kind.decode() if isinstance(kind, bytes) else str(kind),
                    members=int(card) if zset else 0,
                    lowest=(lowest[0][0], float(lowest[0][1])) if zset and lowest else None,
                    bytes=int(used) if isinstance(used, int) else 0,
                )
            )
        return facts

    def trim(self, keys: Sequence[str]) -> None:
        """Trim cached feeds to the cap, keeping each an exact prefix (marked truncated)."""
        sha = self._load_scripts()[0]
        with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                self._evalsha(pipe, sha, key, self.cap)
            pipe.execute()

    def unlink(self, keys: Sequence[str]) -> int:
        """Drop keys without blocking the server on large ones (one UNLINK each, pipelined)."""
        return self._per_key("unlink", keys)

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


def _sha(script: str) -> str:
    """A script's SHA1, as EVALSHA names it."""
    return hashlib.sha1(script.encode()).hexdigest()


def entries_text(entries: Sequence[tuple[int, float]]) -> str:
    """Entries as the replace script takes them: "score post_id ..." (exact float repr)."""
    return " ".join(f"{float(score)!r} {int(post_id)}" for post_id, score in entries)


def _whole_feed(raw: Any) -> CachedFeed | None:
    if isinstance(raw, Exception):
        return CachedFeed([], [], [], wrong_type=True)
    return _sort_out(raw) if raw else None


def _sort_out(raw: list[tuple[bytes, float]]) -> CachedFeed:
    entries: list[tuple[int, float]] = []
    sentinels: list[bytes] = []
    foreign: list[bytes] = []
    for member, score in raw:
        if member in _SENTINELS and score == float("-inf"):
            sentinels.append(member)
        elif member.isdigit() and (member == b"0" or not member.startswith(b"0")):
            entries.append((int(member), float(score)))
        else:
            foreign.append(member)
    entries.sort(key=lambda item: (item[1], item[0]), reverse=True)
    return CachedFeed(entries, sentinels, foreign)
