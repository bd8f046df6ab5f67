"""cache verify, cache vacuum and cache repair against real servers.

Expected feeds come from tests/integration/expected.py (plain SQL and math)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
import redis

from feedctl.cache.feeds import FeedCache, details_key
from feedctl.config import Settings
from feedctl.context import Context, open_context
from feedctl.db.feed_tops import load_tops
from feedctl.errors import BadInputError
from feedctl.pipelines.cache import repair as cache_repair
from feedctl.pipelines.cache import repair_marks
from feedctl.pipelines.cache import verify as cache_verify
from feedctl.pipelines.cache import warm as cache_warm
from feedctl.pipelines.cache.vacuum import vacuum
from feedctl.pipelines.cache.verify import verify
from feedctl.pipelines.fanout.run import run_fanout
from feedctl.services import EmbeddedRedis
from feedctl.synth import SeedSpec, seed

from drain import fan_out_everything
from expected import expected_user_feeds

pytestmark = pytest.mark.redis_cluster_too  # each test on one server and on a cluster

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
SPEC = SeedSpec(users=120, communities=4, posts=140, seed=5, now=NOW)


@pytest.fixture
def warm(ctx: Context) -> Context:
    seed(ctx.conn, SPEC)
    fan_out_everything(ctx)
    cache_warm.warm(ctx, "user", users(ctx), force=True)
    return ctx


def users(ctx: Context) -> list[int]:
    return [r[0] for r in ctx.conn.execute("SELECT id FROM users ORDER BY id")]


def key(ctx: Context, user_id: int) -> str:
    return f"{ctx.prefix}feed:u:{user_id}"


def longest(ctx: Context, count: int) -> list[int]:
    expected = expected_user_feeds(ctx.conn)
    return sorted(expected, key=lambda u: (len(expected[u]), u), reverse=True)[:count]


def test_verify_finds_exact_caches_exact(warm: Context) -> None:
    report = verify(warm, 10_000)
    assert report.feeds_compared == len(users(warm)) == report.feeds_matching
    assert report.mismatches == [] and report.feeds_mismatched == 0


def test_verify_reports_each_mismatch_member_by_member(warm: Context) -> None:
    ctx = warm
    a, b, c, d = longest(ctx, 4)
    expected = expected_user_feeds(ctx.conn)
    missing_post, missing_score = expected[a][3]
    ctx.redis.zrem(key(ctx, a), missing_post)
    stray = expected[b][ctx.cap + 5][0]  # in b's feed, but below the cached top
    ctx.redis.zadd(key(ctx, b), {str(stray): 10_000.0})
    rescored_post, right_score = expected[c][0]
    stored_score = ctx.redis.zscore(key(ctx, c), str(rescored_post))
    assert stored_score == pytest.approx(right_score, abs=1e-9)
    ctx.redis.zadd(key(ctx, c), {str(rescored_post): stored_score + 1})
    ctx.redis.zrem(key(ctx, d), "t")
    ctx.redis.zadd(key(ctx, d), {"c": float("-inf")})  # claims to be the whole feed
    ctx.redis.zadd(f"{ctx.prefix}feed:u:987654", {"c": float("-inf"), "1": 1.0})
    ctx.redis.set(f"{ctx.prefix}feed:u:{users(ctx)[0]}", "not a sorted set")
    ctx.redis.zadd(f"{ctx.prefix}feed:backup", {"c": float("-inf")})

    report = verify(ctx, 10_000, settle_seconds=0)
    found = {(m.key, m.kind, m.post_id) for m in report.mismatches}
    assert (key(ctx, a), "missing", missing_post) in found
    assert (key(ctx, b), "extra", stray) in found
    assert (key(ctx, c), "score", rescored_post) in found
    assert (key(ctx, d), "sentinel", None) in found
    assert (f"{ctx.prefix}feed:u:987654", "orphan", None) in found
    assert (key(ctx, users(ctx)[0]), "malformed", None) in found
    assert (f"{ctx.prefix}feed:backup", "orphan", None) in found
    by_kind = {(m.key, m.kind): m for m in report.mismatches}
    score = by_kind[(key(ctx, c), "score")]
    assert (score.cached_score, score.database_score) == (stored_score + 1, stored_score)
    assert by_kind[(key(ctx, a), "missing")].database_score == pytest.approx(missing_score)
    assert report.feeds_mismatched == 7
    assert report.feeds_matching == report.feeds_compared - 7


def test_verify_mark_then_repair_makes_caches_exact(warm: Context) -> None:
    ctx = warm
    damaged = longest(ctx, 5)
    for user_id in damaged:
        ctx.redis.zpopmax(key(ctx, user_id), 2)
    report = verify(ctx, 10_000, mark=True, settle_seconds=0)
    assert report.feeds_mismatched == 5 and report.feeds_marked_for_repair == 5
    assert repair_marks.count(ctx.conn) == 5
    repaired = cache_repair.repair(ctx)
    assert repaired.feeds_written == 5 and repair_marks.count(ctx.conn) == 0
    assert verify(ctx, 10_000).mismatches == []


def test_verify_samples_the_size_asked_for(warm: Context) -> None:
    one = verify(warm, 7, seed=3)
    assert one.feeds_compared == 7 and one.keys_scanned == len(users(warm))
    with pytest.raises(BadInputError, match="at least 1"):
        verify(warm, 0)


def test_a_write_in_flight_settles_and_is_not_reported(
    warm: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = warm
    user_id = longest(ctx, 1)[0]
    members = ctx.redis.zrange(key(ctx, user_id), -1, -1, withscores=True)  # the best
    ctx.redis.zrem(key(ctx, user_id), members[0][0])
    waits: list[float] = []

    def late_write(seconds: float) -> None:
        """The write lands while verify waits to compare the disagreeing feed again."""
        waits.append(seconds)
        ctx.redis.zadd(key(ctx, user_id), dict(members))

    monkeypatch.setattr(cache_verify, "time", SimpleNamespace(sleep=late_write))
    report = verify(ctx, 10_000, settle_seconds=0.5)
    assert waits == [0.5]
    assert report.feeds_settled == 1 and report.mismatches == []


def test_vacuum_frees_inactive_orphan_malformed_and_over_cap_and_nothing_else(
    warm: Context, settings: Settings, redis_server_url: str
) -> None:
    ctx = warm
    everyone = users(ctx)
    inactive = everyone[:10]
    ctx.conn.execute(
        "UPDATE users SET last_active_at = now() - interval '40 days' WHERE id = ANY(%s)",
        (inactive,),
    )
    ctx.conn.execute(
        "UPDATE users SET last_active_at = now() WHERE id <> ALL(%s)",
        (inactive,),
    )
    ctx.conn.execute("UPDATE users SET last_active_at = NULL WHERE id = %s", (everyone[10],))
    inactive.append(everyone[10])
    over = [u for u in longest(ctx, 3) if u not in inactive]
    roomy = FeedCache(ctx.redis, ctx.prefix, 1000)  # written with a larger cap, earlier
    expected = expected_user_feeds(ctx.conn)
    for top in load_tops(ctx.conn, "user", over, 1000, ctx.retention):
        roomy.replace(key(ctx, top.feed.id), top.entries, False)
    ctx.redis.zadd(f"{ctx.prefix}feed:u:987654", {"c": float("-inf"), "1": 1.0})
    ctx.redis.zadd(f"{ctx.prefix}feed:c:987654", {"c": float("-inf")})
    ctx.redis.set(f"{ctx.prefix}feed:u:x", "junk")
    spare = next(u for u in everyone[12:] if u not in over)
    ctx.redis.delete(key(ctx, spare))
    ctx.redis.zadd(key(ctx, spare), {"5": 1.0, "6": 2.0})  # no sentinel
    evicted = next(u for u in everyone[12:] if u not in over and u != spare)
    ctx.redis.delete(key(ctx, evicted))  # as Redis evicts a key: its details stay behind
    assert ctx.redis.exists(details_key(key(ctx, evicted)))
    untouched = {f"{ctx.prefix}jobs:last": "x", f"other-{ctx.prefix}feed:u:1": "y"}
    for name, value in untouched.items():
        ctx.redis.set(name, value)
    ctx.conn.execute(
        "INSERT INTO post_score_change (post_id, old_score, changed_at) "
        "VALUES (1, 1.0, now() - interval '3 days'), (2, 2.0, now() - interval '1 hour')"
    )
    feeds_before = len(list(ctx.redis.scan_iter(match=f"{ctx.prefix}feed:*")))
    excess = sum(len(expected[u]) - ctx.cap for u in over)
    dropped_members = sum(min(len(expected[u]), ctx.cap) for u in inactive) + 1 + 2

    plan = vacuum(ctx, timedelta(days=30), dry_run=True)
    assert len(list(ctx.redis.scan_iter(match=f"{ctx.prefix}feed:*"))) == feeds_before
    done = vacuum(ctx, timedelta(days=30))
    for report in (plan, done):
        assert report.keys_scanned == feeds_before
        assert report.inactive_feeds_dropped == len(inactive)
        assert report.orphan_keys_dropped == 3  # unknown user, unknown community, bad name
        assert report.malformed_keys_dropped == 1
        assert report.keys_dropped == len(inactive) + 4
        assert report.feeds_trimmed == len(over)
        assert report.members_freed == excess + dropped_members
        assert report.bytes_freed > 0
        assert report.score_changes_pruned == 1
        assert report.stray_details_dropped == 1
    assert not ctx.redis.exists(details_key(key(ctx, evicted)))
    remaining = {k.decode() for k in ctx.redis.scan_iter(match=f"{ctx.prefix}feed:*")}
    gone = {spare, evicted, *inactive}
    assert remaining == {key(ctx, u) for u in everyone if u not in gone}
    for user_id in over:
        trimmed = ctx.cache.members(key(ctx, user_id))
        assert trimmed is not None and trimmed[1] == b"t"
        assert [p for p, _ in trimmed[0]] == [p for p, _ in expected[user_id][: ctx.cap]]
    for name, value in untouched.items():
        assert ctx.redis.get(name) == value.encode()
        ctx.redis.delete(name)
    assert verify(ctx, 10_000).mismatches == []
    again = vacuum(ctx, timedelta(days=30))
    assert again.keys_dropped == again.feeds_trimmed == again.score_changes_pruned == 0
    assert again.stray_details_dropped == 0


def test_vacuum_needs_a_window(warm: Context) -> None:
    with pytest.raises(BadInputError, match="longer than 0"):
        vacuum(warm, timedelta(0))


def test_repair_heals_cached_feeds_whose_writes_failed(
    settings: Settings, own_redis: EmbeddedRedis
) -> None:
    with open_context(dataclasses.replace(settings, redis_url=own_redis.url)) as ctx:
        seed(ctx.conn, SPEC)
        run_fanout(ctx, max_events=300)
        cache_warm.warm(ctx, "user", users(ctx), force=True)
        full = redis.Redis.from_url(own_redis.url)
        full.config_set("maxmemory-policy", "noeviction")
        full.config_set("maxmemory", "1")  # every write is refused; reads still answer
        try:
            failed = fan_out_everything(ctx)
            assert failed.redis_failures > 0 and repair_marks.count(ctx.conn) > 0
            assert verify(ctx, 10_000, settle_seconds=0).mismatches  # caches are behind
        finally:
            full.config_set("maxmemory", "0")
            full.close()
        repaired = cache_repair.repair(ctx)
        assert repaired.redis_failures == 0 and repaired.feeds_written > 0
        assert repair_marks.count(ctx.conn) == 0
        assert verify(ctx, 10_000).mismatches == []
        expected = expected_user_feeds(ctx.conn)
        for user_id in users(ctx):
            found = ctx.cache.members(key(ctx, user_id))
            assert found is not None
            assert [p for p, _ in found[0]] == [p for p, _ in expected[user_id][: ctx.cap]]


def test_swapped_in_feeds_keep_every_score_exactly(ctx: Context) -> None:
    entries = [
        (7, 2501.155460101133),
        (3, 1e16),
        (12, 0.1 + 0.2),
        (5, 0.0),
        (9, -3.5e-300),
        (4, 5e-324),
        (-2, -1e300),
    ]
    ordered = sorted(entries, key=lambda e: (e[1], e[0]), reverse=True)
    key = f"{ctx.prefix}feed:c:1"
    ctx.cache.replace(key, entries, True)
    found = ctx.cache.members(key)
    assert found is not None
    assert found == (ordered, b"t")
    assert [repr(s) for _, s in found[0]] == [repr(s) for _, s in ordered]
    assert ctx.cache.replace_cached_many([(f"{ctx.prefix}feed:c:2", entries, False)]) == [False]
    assert ctx.cache.replace_cached_many([(key, entries[:2], False)]) == [True]
    assert ctx.cache.members(key) == (sorted(entries[:2], key=lambda e: e[1], reverse=True), b"c")
