"""Cached feeds in Redis: one sorted set per feed (member = post id, score = rank key).

Each cached feed holds a sentinel member at score -inf that says what the cache knows:
`c` - the set is the complete feed; `t` - the set is the exact top of a longer feed
(truncated to the cap). A key that does not exist is a feed that is not cached: writes
never create it; only a whole-feed swap (warm, rebuild, repair, a read miss) does.

Every write is fenced (docs/decisions/0028): a writer first stamps the feed (`stamp`: a
sequence number from the feed's fence), then reads PostgreSQL, then writes with the stamp;
the script writes only when no other write landed since the stamp, so a write based on a
read of PostgreSQL older than the last write's is refused (and redone by its writer).
The fence is a small hash next to the feed, with a log of changes for swaps in flight, in
the feed key's hash slot (`fence_keys`), with a time to live: an expired fence only
refuses writes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, cast

from redis.exceptions import NoScriptError

from feedctl.cache.client import RedisClient, is_cluster
from feedctl.cache.keys import feed_pattern

COMPLETE = b"c"
TRUNCATED = b"t"
_SENTINELS = (COMPLETE, TRUNCATED)
_SCAN_COUNT = 1000
FENCE_TTL_SECONDS = 3600  # a fence outlives any write's stamp-to-write time
# What a fenced write did to one feed: written; not cached (nothing to write); fenced out
# (another write reached the feed after the stamp: read PostgreSQL again and retry);
# superseded (a whole-feed swap stamped after this write's stamp has landed: it read
# PostgreSQL later, so this write has nothing to add).
WRITTEN, NOT_CACHED, FENCED_OUT, SUPERSEDED = 1, -1, -2, -3
Stamp = bytes  # "incarnation:sequence", as `stamp` returned it
LOG_CAP = 1024  # deltas a fence logs for swaps in flight, at most (a swap older: redone)


def _slot_tag(key: str) -> str:
    """The hash tag of a feed key (its own, or the whole key): the keys kept beside a feed
    use it, so they live in the feed's hash slot."""
    start = key.find("{")
    end = key.find("}", start + 1) if start >= 0 else -1
    return key[start + 1 : end] if start >= 0 and end > start + 1 else key


def fence_keys(key: str) -> tuple[str, str]:
    """The keys of a feed's fence and its log: in the feed key's hash slot (its hash tag,
    or the whole feed key as the tag), outside the `feed:` key space that SCAN walks."""
    tag = _slot_tag(key)
    return f"{{{tag}}}:fence", f"{{{tag}}}:fence-log"


def details_key(key: str) -> str:
    """The key of a cached feed's details hash (post id -> "community:author:created",
    what a page shows of each post), in the feed key's hash slot (docs/decisions/0029)."""
    return f"{{{_slot_tag(key)}}}:details"


def _token() -> str:
    return secrets.token_hex(8)


# A feed's fence is a small hash next to it (KEYS[2]): `i` its incarnation (random, so a
# fence that expired and was made again never matches an old stamp), `s` the last stamp's
# sequence number, `lwd` and `lws` the value of `s` when a change of entries (a delta) and
# when a whole-feed swap last landed, `ls` the stamp of the last swap that landed, `pend`
# the stamp of the last swap stamped, `lost` the newest log entry dropped from the log.
# The log (KEYS[3], a list) holds the deltas that landed while a swap was in flight, as
# "sequence stamp post_id score" or "sequence stamp post_id -" (removed; `sequence` the
# value of `s` when it landed, `stamp` the delta's own): the swap, when it lands, applies
# those stamped after its own stamp on top of what it read (LOG_CAP at most). A delta
# stamped before the swap's stamp is not replayed: its change was committed before its
# stamp, so the swap read it, or something newer that the delta would put back.
#
# Rules: a delta is refused when another delta landed since its stamp; a swap when another
# swap did. A write is superseded (refused, nothing left to do) when a swap stamped after
# it has landed: that swap read PostgreSQL after this write's stamp, so after the change
# it was to write; a delta is, even when no other delta landed since its stamp (its older
# read would otherwise land over the swap's newer one).
#
# Stamp a feed (KEYS: feed, fence, log). ARGV: mode ('swap': make a fence when there is
# none; 'cached-swap': only for a cached feed; 'delta': only for a feed that is cached or
# fenced, so feeds nobody caches get no key), a new incarnation, the time to live.
# Returns "incarnation:sequence", or nil.
_STAMP_LUA = """
if ARGV[1] == 'cached-swap' and redis.call('EXISTS', KEYS[1]) == 0 then return false end
local i = redis.call('HGET', KEYS[2], 'i')
if not i then
  if ARGV[1] == 'delta' and redis.call('EXISTS', KEYS[1]) == 0 then return false end
  redis.call('DEL', KEYS[3])
  redis.call('HSET', KEYS[2], 'i', ARGV[2], 's', 0, 'lwd', 0, 'lws', 0, 'ls', 0, 'pend', 0,
             'lost', 0)
  i = ARGV[2]
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('PERSIST', KEYS[2])
else
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
local n = redis.call('HINCRBY', KEYS[2], 's', 1)
if ARGV[1] ~= 'delta' then redis.call('HSET', KEYS[2], 'pend', n) end
return i .. ':' .. n
"""

# upsert(key, cap, pairs, dkey, details): upsert {score, post id, ...} pairs into a cached
# feed and trim it to the cap, keeping it an exact prefix of the full feed, ordered by
# (score desc, post id desc). `details` maps a post id to its details text ('' or nil: none
# given); the details hash `dkey` follows the members: set for a member written, dropped for
# a member removed or trimmed away. Returns -1 when the feed is not cached, else the
# members added or updated.
_UPSERT_FUNCTION = """
local function forget(dkey, members)
  for i = 1, #members, 4000 do
    redis.call('HDEL', dkey, unpack(members, i, math.min(i + 3999, #members)))
  end
end

local function remember(dkey, fields)
  for i = 1, #fields, 4000 do
    redis.call('HSET', dkey, unpack(fields, i, math.min(i + 3999, #fields)))
  end
end

local function upsert(key, cap, pairs, dkey, details)
  local head = redis.call('ZRANGE', key, 0, 0)
  if #head == 0 then return -1 end
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
  local written, dropped = {}, {}
  if not truncated then
    for i = 1, #pairs, 4000 do
      added = added + redis.call('ZADD', key, unpack(pairs, i, math.min(i + 3999, #pairs)))
    end
    for i = 2, #pairs, 2 do
      local d = details[pairs[i]]
      if d ~= nil and d ~= '' then
        written[#written + 1] = pairs[i]
        written[#written + 1] = d
      end
    end
  end
  for i = 1, (truncated and #pairs or 0), 2 do
    local raw, member = pairs[i], pairs[i + 1]
    local score = tonumber(raw)
    if redis.call('ZSCORE', key, member) then
      redis.call('ZREM', key, member)
      if member == floor_m then load_floor() end
    end
    local d = details[member]
    if floor_s ~= nil and above(score, member, floor_s, floor_m) then
      added = added + redis.call('ZADD', key, raw, member)
      if d ~= nil and d ~= '' then
        written[#written + 1] = member
        written[#written + 1] = d
      end
    else
      dropped[#dropped + 1] = member
    end
  end
  forget(dkey, dropped)
  remember(dkey, written)

  local excess = redis.call('ZCARD', key) - 1 - cap
  if excess > 0 then
    local low = redis.call('ZRANGE', key, excess, excess + 1, 'WITHSCORES')
    local boundary = low[2]
    local victims
    if low[4] ~= nil and tonumber(low[4]) == tonumber(boundary) then
      victims = redis.call('ZRANGEBYSCORE', key, '(-inf', '(' .. boundary)
      local tied = redis.call('ZRANGEBYSCORE', key, boundary, boundary)
      table.sort(tied, function(a, b) return tonumber(a) < tonumber(b) end)
      for j = 1, excess - #victims do victims[#victims + 1] = tied[j] end
      for i = 1, #victims, 4000 do
        redis.call('ZREM', key, unpack(victims, i, math.min(i + 3999, #victims)))
      end
    else
      victims = redis.call('ZRANGE', key, 1, excess)
      redis.call('ZREMRANGEBYRANK', key, 1, excess)
    end
    forget(dkey, victims)
    if not truncated then
      redis.call('ZREM', key, 'c')
      redis.call('ZADD', key, '-inf', 't')
    end
  end
  return added
end

-- A write landed on a cached feed (KEYS[2] its fence): its version `w` moves on, and `snap`
-- keeps the PostgreSQL snapshot the feed's entries were read at ('' : not known).
local function landed(fence, snapshot)
  redis.call('HINCRBY', fence, 'w', 1)
  if snapshot ~= nil and snapshot ~= '' then
    redis.call('HSET', fence, 'snap', snapshot)
  else
    redis.call('HDEL', fence, 'snap')
  end
  redis.call('PERSIST', fence)
end
"""

# Fenced changes to some entries of a feed (KEYS: feed, fence, log, details). ARGV: the
# stamp, the time to live, the cap, how many post ids to remove, the PostgreSQL snapshot the
# changes were read at ('' when not read from PostgreSQL), those ids, then (score, post id,
# details) triples to upsert. Returns -2 (fenced out), -3 (superseded), -1 (not cached:
# nothing to change, but logged for a swap in flight) or the members added or updated.
_APPLY_LUA = (
    _UPSERT_FUNCTION
    + """
local i, n = string.match(ARGV[1], '^(.+):(%d+)$')
n = tonumber(n)
local f = redis.call('HMGET', KEYS[2], 'i', 's', 'lwd', 'ls', 'pend')
if f[1] ~= i then return -2 end
if tonumber(f[4]) > n then return -3 end
if tonumber(f[3]) >= n then return -2 end
local s = f[2]
redis.call('HSET', KEYS[2], 'lwd', s)
redis.call('EXPIRE', KEYS[2], ARGV[2])
local removals = tonumber(ARGV[4])
local first = 6 + removals
if tonumber(f[5]) > tonumber(f[4]) then
  local tag = s .. ' ' .. n .. ' '
  for j = 6, first - 1 do redis.call('RPUSH', KEYS[3], tag .. ARGV[j] .. ' -') end
  for j = first, #ARGV, 3 do
    local d = ARGV[j + 2]
    if d == '' then d = '.' end
    redis.call('RPUSH', KEYS[3], tag .. ARGV[j + 1] .. ' ' .. ARGV[j] .. ' ' .. d)
  end
  local over = redis.call('LLEN', KEYS[3]) - LOG_CAP
  if over > 0 then
    local dropped = redis.call('LRANGE', KEYS[3], over - 1, over - 1)[1]
    redis.call('LTRIM', KEYS[3], over, -1)
    redis.call('HSET', KEYS[2], 'lost', string.match(dropped, '^(%d+)'))
  end
  redis.call('EXPIRE', KEYS[3], ARGV[2])
end
local key = KEYS[1]
if redis.call('EXISTS', key) == 0 then return -1 end
local gone = {}
for j = 6, first - 1 do gone[#gone + 1] = ARGV[j] end
for j = 1, #gone, 4000 do
  redis.call('ZREM', key, unpack(gone, j, math.min(j + 3999, #gone)))
end
forget(KEYS[4], gone)
local pairs, details = {}, {}
for j = first, #ARGV, 3 do
  pairs[#pairs + 1] = ARGV[j]
  pairs[#pairs + 1] = ARGV[j + 1]
  details[ARGV[j + 1]] = ARGV[j + 2]
end
local added = upsert(key, tonumber(ARGV[3]), pairs, KEYS[4], details)
landed(KEYS[2], ARGV[5])
return added
"""
).replace("LOG_CAP", str(LOG_CAP))

# Swap a whole feed in, atomically (a script runs alone): the new members are written
# and the old ones gone in one step, so a reader sees the old feed or the new one, never
# an empty or half-built one; then the deltas logged since its stamp are applied on top.
# KEYS: feed, fence, log, details (one hash slot). ARGV: the stamp, the time to live, mode
# ('always' or 'cached': only when the key exists), sentinel, the entries as one text
# "score post_id score post_id ..." or, with details, "score post_id details ..." (one
# argument per feed: the client does not pack thousands of arguments, the server splits
# them), the cap, the fields per entry (2 or 3), the PostgreSQL snapshot the entries were
# read at ('' when not read from PostgreSQL). Returns 1 when written, -1 when not cached
# (mode 'cached'), -2 (fenced out) or -3 (superseded).
_REPLACE_LUA = (
    _UPSERT_FUNCTION
    + """
local key = KEYS[1]
if ARGV[3] == 'cached' and redis.call('EXISTS', key) == 0 then return -1 end
local i, n = string.match(ARGV[1], '^(.+):(%d+)$')
n = tonumber(n)
local f = redis.call('HMGET', KEYS[2], 'i', 's', 'lws', 'ls', 'lost')
if f[1] ~= i then return -2 end
if tonumber(f[3]) >= n then
  if tonumber(f[4]) > n then return -3 end
  return -2
end
if tonumber(f[5]) >= n then return -2 end
redis.call('HSET', KEYS[2], 'lws', f[2], 'ls', n)
redis.call('DEL', key, KEYS[4])
redis.call('ZADD', key, '-inf', ARGV[4])
local batch, fields = {}, {}
local m = 0
local function flush()
  if m > 0 then redis.call('ZADD', key, unpack(batch, 1, m)) end
  m = 0
  remember(KEYS[4], fields)
  fields = {}
end
local pattern = ARGV[7] == '3' and '(%S+) (%S+) (%S+)' or '(%S+) (%S+)()'
for score, member, d in string.gmatch(ARGV[5], pattern) do
  batch[m + 1] = score
  batch[m + 2] = member
  m = m + 2
  if type(d) == 'string' then
    fields[#fields + 1] = member
    fields[#fields + 1] = d
  end
  if m == 2000 then flush() end
end
flush()
local log = redis.call('LRANGE', KEYS[3], 0, -1)
local last, order, keep = {}, {}, #log
local last_details = {}
for j, entry in ipairs(log) do
  local seq, stamped, post, value, d = string.match(entry, '^(%d+) (%d+) (%S+) (%S+) (%S+)$')
  local replay
  if seq == nil then
    seq, stamped, post, value = string.match(entry, '^(%d+) (%d+) (%S+) (%S+)$')
  end
  if seq == nil then  -- logged by a previous version of this script, without the stamp
    seq, post, value = string.match(entry, '^(%d+) (%S+) (%S+)$')
    replay = tonumber(seq) >= n
  else
    replay = tonumber(stamped) > n
  end
  seq = tonumber(seq)
  if seq > n and keep == #log then keep = j - 1 end
  if replay then
    if last[post] == nil then order[#order + 1] = post end
    last[post] = value
    if d ~= nil and d ~= '.' then last_details[post] = d else last_details[post] = nil end
  end
end
if keep >= #log then redis.call('DEL', KEYS[3]) else redis.call('LTRIM', KEYS[3], keep, -1) end
local pairs, gone = {}, {}
for _, post in ipairs(order) do
  if last[post] == '-' then
    redis.call('ZREM', key, post)
    gone[#gone + 1] = post
  else
    pairs[#pairs + 1] = last[post]
    pairs[#pairs + 1] = post
  end
end
forget(KEYS[4], gone)
if #pairs > 0 then upsert(key, tonumber(ARGV[6]), pairs, KEYS[4], last_details) end
-- replayed deltas were read at snapshots of their own: the feed's is then not known
landed(KEYS[2], #order == 0 and ARGV[8] or '')
return 1
"""
)

# Trim a cached feed to the cap (ARGV[1]), nothing else: no PostgreSQL read behind it, so
# it needs no stamp (it keeps the feed an exact prefix of whatever it was, and the snapshot
# its entries were read at). KEYS: feed, fence, log, details.
_TRIM_LUA = (
    _UPSERT_FUNCTION
    + """
local trimmed = upsert(KEYS[1], tonumber(ARGV[1]), {}, KEYS[4], {})
if trimmed >= 0 and redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HINCRBY', KEYS[2], 'w', 1)
end
return trimmed
"""
)

# One page of a cached feed, read at once (KEYS: feed, fence, details). ARGV: how many
# items, then the position to read after ('' for the top) as score and post id. Returns
# nil when the feed is not cached, else: the sentinel, the fence's incarnation, version and
# snapshot (`i`, `w`, `snap`), up to count + 1 members with scores strictly below the
# position's score, the members tied at that score (the caller keeps those after it), the
# whole tie at the page's lower edge when there are more than `count`, and the details of
# every member returned, in that order.
_PAGE_LUA = """
local head = redis.call('ZRANGE', KEYS[1], 0, 0)
if #head == 0 then return false end
local f = redis.call('HMGET', KEYS[2], 'i', 'w', 'snap')
local count = tonumber(ARGV[1])
local below, ties = nil, {}
if ARGV[2] == '' then
  below = redis.call('ZREVRANGEBYSCORE', KEYS[1], '+inf', '(-inf', 'WITHSCORES', 'LIMIT', 0,
                     count + 1)
else
  below = redis.call('ZREVRANGEBYSCORE', KEYS[1], '(' .. ARGV[2], '(-inf', 'WITHSCORES',
                     'LIMIT', 0, count + 1)
  ties = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[2], ARGV[2], 'WITHSCORES')
end
local edge = {}
if #below > 2 * count then
  edge = redis.call('ZRANGEBYSCORE', KEYS[1], below[#below], below[#below], 'WITHSCORES')
end
local members = {}
for _, list in ipairs({below, ties, edge}) do
  for j = 1, #list, 2 do members[#members + 1] = list[j] end
end
local details = {}
for i = 1, #members, 4000 do
  local got = redis.call('HMGET', KEYS[3], unpack(members, i, math.min(i + 3999, #members)))
  for j = 1, #got do details[#details + 1] = got[j] or '' end
end
return {head[1], f[1] or '', f[2] or '', f[3] or '', below, ties, edge, details}
"""


@dataclasses.dataclass(frozen=True)
class CachedPage:
    """Items read from a cached feed, best first, and what lies beyond them."""

    items: list[tuple[int, float]]  # (post id, score)
    more_in_cache: bool  # the cache holds further items past these
    truncated: bool  # the full feed may continue past what the cache holds
    version: tuple[str, int] | None = None  # (fence incarnation, writes landed); None: no fence
    read_at: str = ""  # the PostgreSQL snapshot the entries were read at ('' : not known)
    details: dict[int, str] = dataclasses.field(default_factory=dict)  # of the items that have


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
    """Pipelined reads and writes of cached feeds under one key prefix.

    The writes are fenced: `stamp` the feeds, read PostgreSQL, then `apply` changes or
    `swap` whole feeds with the stamps (docs/decisions/0028). The convenience writes below
    (`upsert`, `remove`, `replace`...) stamp and write at once, for values that were not
    read from PostgreSQL after a stamp (tests, benchmarks, synthetic data).
    """

    def __init__(self, client: RedisClient, prefix: str, cap: int) -> None:
        self.client = client
        self.prefix = prefix
        self.cap = cap
        self._scripts = (_STAMP_LUA, _APPLY_LUA, _REPLACE_LUA, _TRIM_LUA, _PAGE_LUA)
        self._shas = tuple(_sha(script) for script in self._scripts)
        (self._stamp_sha, self._apply_sha, self._replace_sha, self._trim_sha, self._page_sha) = (
            self._shas
        )
        self._scripts_loaded = False
        self._cluster = is_cluster(client)

    # -- the fence ---------------------------------------------------------------------

    def stamp(
        self, keys: Sequence[str], *, swap: bool = True, only_cached: bool = False
    ) -> list[Stamp | None]:
        """Stamp each feed (a sequence number from its fence), pipelined (one round trip),
        for a whole-feed `swap` or else for changes of entries (a delta).

        A swap's stamp makes a fence where there is none (with `only_cached`, it is None
        for a feed that is not cached). A delta's is None for a feed that is neither cached
        nor fenced: no write is needed, since a later swap reads PostgreSQL after this.
        """
        self._load_scripts()
        mode = ("cached-swap" if only_cached else "swap") if swap else "delta"
        with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                self._evalsha(pipe, self._stamp_sha, key, mode, _token(), FENCE_TTL_SECONDS)
            return [None if token is None else bytes(token) for token in pipe.execute()]

    def apply(
        self,
        changes: Iterable[tuple[str, Stamp, Sequence[tuple[int, float]], Sequence[int]]],
        *,
        details: Mapping[int, str] | None = None,
        read_at: str = "",
    ) -> list[int]:
        """Fenced changes to cached feeds, pipelined: per (key, stamp, upserts, removals),
        upsert (post id, score) pairs and remove post ids, keeping the feed an exact prefix.

        `details` gives the details text of upserted posts ("community:author:created",
        `post_details`); `read_at`, the PostgreSQL snapshot the changes were read at, which
        the feed's fence keeps (docs/decisions/0029). Without them, pages of the feed are
        checked against PostgreSQL until its next swap.

        Returns per feed the members added or updated (>= 0), NOT_CACHED, FENCED_OUT or
        SUPERSEDED.
        """
        known_details = details or {}
        self._load_scripts()
        # the encoded pairs of each upserts list, by id(); the list is kept with them, so
        # no id is reused for another list during the call (feeds given the same list,
        # as fan-out gives most of a community's members, are encoded once)
        encoded: dict[int, tuple[Any, list[Any]]] = {}
        with self.client.pipeline(transaction=False) as pipe:
            for key, stamp, upserts, removals in changes:
                known = encoded.get(id(upserts))
                if known is None:
                    pairs = [
                        item
                        for post_id, score in upserts
                        for item in (repr(float(score)), post_id, known_details.get(post_id, ""))
                    ]
                    known = encoded[id(upserts)] = (upserts, pairs)
                pairs = known[1]
                args: list[Any] = [stamp, FENCE_TTL_SECONDS, self.cap, len(removals), read_at]
                self._evalsha(pipe, self._apply_sha, key, *args, *removals, *pairs)
            return [int(result) for result in pipe.execute()]

    def swap(
        self,
        feeds: Iterable[tuple[str, Stamp, str, bool]],
        *,
        only_cached: bool = False,
        with_details: bool = False,
        read_at: str = "",
    ) -> list[int]:
        """Fenced swaps of whole feeds, each atomic, pipelined: per (key, stamp, entries as
        text "score post_id score post_id ...", truncated). With `with_details` the text
        is "score post_id details ..." and the feeds' details are written with them;
        `read_at` is the PostgreSQL snapshot the entries were read at (see `apply`).

        Returns per feed WRITTEN, NOT_CACHED (with `only_cached`), FENCED_OUT or SUPERSEDED.
        """
        self._load_scripts()
        mode = "cached" if only_cached else "always"
        fields = 3 if with_details else 2
        with self.client.pipeline(transaction=False) as pipe:
            for key, stamp, text, truncated in feeds:
                sentinel = TRUNCATED if truncated else COMPLETE
                args: list[Any] = [stamp, FENCE_TTL_SECONDS, mode, sentinel, text, self.cap]
                self._evalsha(pipe, self._replace_sha, key, *args, fields, read_at)
            return [int(result) for result in pipe.execute()]

    def _load_scripts(self) -> None:
        """Load the scripts on the server when missing (a restarted server forgets them).
        Scripts are called by EVALSHA inside pipelines, which cannot load a script
        themselves; on a Redis Cluster SCRIPT EXISTS asks every primary and SCRIPT LOAD
        loads on every primary, so each node can run the calls for its keys."""
        if not self._scripts_loaded or not all(self.client.script_exists(*self._shas)):
            for script in self._scripts:
                self.client.script_load(script)
            self._scripts_loaded = True

    def _evalsha(self, pipe: Any, sha: str, key: str, *args: Any) -> None:
        """Queue a script call on a feed in a pipeline: its keys are the feed's key and its
        fence's (`fence_keys`, one hash slot), `key` first. Sent as a plain EVALSHA command:
        redis-py's cluster pipeline refuses its `evalsha` method (it cannot load scripts),
        yet sends an EVALSHA command like any other; the scripts are loaded beforehand."""
        if sha == self._page_sha:
            keys: tuple[str, ...] = (key, fence_keys(key)[0], details_key(key))
        else:
            keys = (key, *fence_keys(key), details_key(key))
        pipe.execute_command("EVALSHA", sha, len(keys), *keys, *args, **self._routed(key))

    def _routed(self, key: str) -> dict[str, Any]:
        """On a cluster, the node that holds `key`, for a command whose keys redis-py cannot
        find alone (EVALSHA, MEMORY USAGE): it would ask a server for them (COMMAND GETKEYS,
        one round trip per command). Nothing on a single server."""
        if not self._cluster:
            return {}
        return {"target_nodes": cast(Any, self.client).get_node_from_key(key)}

    # -- stamp-and-write conveniences ----------------------------------------------------

    def upsert(
        self, keyed_entries: Iterable[tuple[str, Sequence[tuple[int, float]]]]
    ) -> list[bool]:
        """Upsert entries into cached feeds (uncached feeds are left alone).

        Returns, feed by feed, whether it was cached.
        """
        keyed = list(keyed_entries)
        stamps = self.stamp([key for key, _ in keyed], swap=False)
        todo = [(k, s, e, ()) for (k, e), s in zip(keyed, stamps, strict=True) if s is not None]
        results = iter(self.apply(todo))
        return [s is not None and next(results) != NOT_CACHED for s in stamps]

    def upsert_same(self, keys: Sequence[str], entries: Sequence[tuple[int, float]]) -> list[bool]:
        """Upsert the same entries into many cached feeds."""
        return self.upsert((key, entries) for key in keys)

    def remove(self, keyed_posts: Iterable[tuple[str, Sequence[int]]]) -> None:
        """Remove posts from feeds (a prefix stays a prefix)."""
        keyed = [(key, post_ids) for key, post_ids in keyed_posts if post_ids]
        stamps = self.stamp([key for key, _ in keyed], swap=False)
        self.apply((k, s, (), p) for (k, p), s in zip(keyed, stamps, strict=True) if s is not None)

    def replace(self, key: str, entries: Sequence[tuple[int, float]], truncated: bool) -> None:
        """Swap in a whole feed atomically (readers see the old or the new, never half)."""
        self.replace_many([(key, entries, truncated)])

    def replace_many(self, feeds: Iterable[tuple[str, Sequence[tuple[int, float]], bool]]) -> None:
        """Swap in whole feeds, each atomically."""
        self.replace_text_many((k, entries_text(e), t) for k, e, t in feeds)

    def replace_cached_many(
        self, feeds: Iterable[tuple[str, Sequence[tuple[int, float]], bool]]
    ) -> list[bool]:
        """Swap in whole feeds that are cached now; leave the others out.

        Returns, feed by feed, whether it was cached (and so written).
        """
        keyed = ((k, entries_text(e), t) for k, e, t in feeds)
        return self.replace_text_many(keyed, only_cached=True)

    def replace_text_many(
        self, feeds: Iterable[tuple[str, str, bool]], *, only_cached: bool = False
    ) -> list[bool]:
        """Swap in whole feeds whose entries are text, "score post_id score post_id ...";
        see `replace_cached_many`."""
        listed = list(feeds)
        stamps = self.stamp([key for key, _, _ in listed], only_cached=only_cached)
        todo = [(k, s, x, t) for (k, x, t), s in zip(listed, stamps, strict=True) if s is not None]
        results = iter(self.swap(todo, only_cached=only_cached))
        return [s is not None and next(results) in (WRITTEN, SUPERSEDED) for s in stamps]

    def exists(self, keys: Sequence[str]) -> list[bool]:
        with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.exists(key)
            return [bool(found) for found in pipe.execute()]

    def delete(self, keys: Sequence[str]) -> int:
        """Delete cached feeds (and their details), one DEL each in a pipeline (no multi-key
        command: on a Redis Cluster the keys live in different slots; the pipeline is split
        per node). Returns how many of `keys` existed."""
        return self._per_key("delete", keys)

    def _per_key(self, command: str, keys: Sequence[str]) -> int:
        """A feed's details go with it; its fence is left to expire (a writer holding a
        stamp is then fenced out, as for any fence that expired)."""
        if not keys:
            return 0
        with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                getattr(pipe, command)(key)
                getattr(pipe, command)(details_key(key))
                pipe.expire(fence_keys(key)[0], FENCE_TTL_SECONDS)
            results = pipe.execute()
        return sum(int(n) for n in results[0::3])

    def details(self, keys: Sequence[str]) -> list[dict[int, str]]:
        """The details each cached feed keeps, by post id (docs/decisions/0029)."""
        with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(details_key(key))
            results = pipe.execute()
        return [{int(k): _text(v) for k, v in kept.items()} for kept in results]

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

    def scan_stray_details(self) -> Iterator[list[str]]:
        """Feed keys whose details hash is still there while the feed is gone (a key
        evicted by Redis, or deleted by hand), in batches, walked with SCAN."""
        pattern = "{" + feed_pattern(self.prefix) + "}:details"
        batch: list[str] = []
        for raw in self.client.scan_iter(match=pattern, count=_SCAN_COUNT):
            text = raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else raw
            batch.append(text[1 : -len("}:details")])
            if len(batch) >= _SCAN_COUNT:
                yield self._gone(batch)
                batch = []
        if batch:
            yield self._gone(batch)

    def _gone(self, keys: list[str]) -> list[str]:
        return [key for key, found in zip(keys, self.exists(keys), strict=True) if not found]

    def drop_details(self, keys: Sequence[str]) -> None:
        """Unlink the details hashes of these feeds (not the feeds: one cached meanwhile
        keeps its entries, and its pages are checked until its next swap)."""
        with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.unlink(details_key(key))
            pipe.execute()

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
        self._load_scripts()
        with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                self._evalsha(pipe, self._trim_sha, key, self.cap)
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
        """Up to `count` items strictly after `after` (or from the top), with the feed's
        version and the details of the items; None on a miss. One script call: what it
        returns is one moment of the feed."""
        args = [count, "" if after is None else repr(after[0]), "" if after is None else after[1]]
        try:
            raw = self._read_page(key, args)
        except NoScriptError:  # the server restarted and forgot the scripts
            self._scripts_loaded = False
            self._load_scripts()
            raw = self._read_page(key, args)
        if raw is None:
            return None
        sentinel, incarnation, written, snapshot, below_raw, ties_raw, edge_raw, details = raw
        below = _scored(below_raw)
        ties = [] if after is None else [i for i in _scored(ties_raw) if i[0] < after[1]]
        more = len(below) > count
        if more:
            boundary = below[-1][1]
            below = [item for item in below if item[1] != boundary] + _scored(edge_raw)
        items = sorted(ties + below, key=lambda item: (item[1], item[0]), reverse=True)
        members = below_raw[0::2] + ties_raw[0::2] + edge_raw[0::2]
        known = {int(m): d for m, d in zip(members, details, strict=True) if d}
        kept = items[:count]
        return CachedPage(
            items=kept,
            more_in_cache=more or len(items) > count,
            truncated=sentinel == TRUNCATED,
            version=(_text(incarnation), int(written or 0)) if incarnation else None,
            read_at=_text(snapshot),
            details={p: _text(known[p]) for p, _ in kept if p in known},
        )

    def _read_page(self, key: str, args: list[Any]) -> Any:
        keys = (key, fence_keys(key)[0], details_key(key))
        return cast(Any, self.client).execute_command(
            "EVALSHA", self._page_sha, len(keys), *keys, *args, **self._routed(key)
        )


def _scored(flat: list[bytes]) -> list[tuple[int, float]]:
    """(post id, score) pairs of a flat [member, score, ...] reply."""
    return [(int(flat[j]), float(flat[j + 1])) for j in range(0, len(flat), 2)]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


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
