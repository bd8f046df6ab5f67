"""A primary of a Redis Cluster of the test's own is killed in the middle of `feedctl fanout`:
PostgreSQL keeps everything, the command exits 3 with the failed writes counted and their
feeds marked, and once the node is back `cache repair` makes every cached feed exact."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from cli_runner import invoke

from feedctl.cache.feeds import FeedCache
from feedctl.errors import EXIT_PARTIAL
from feedctl.pipelines.fanout import cache_writes
from feedctl.services.redis_cluster import LocalRedisCluster
from feedctl.synth import SeedSpec, seed

from expected import expected_community_feed, expected_user_feeds
from servers import redis_client

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
CAP = 50
STOPPED_NODE = 1


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[LocalRedisCluster]:
    """A three-primary cluster of this test's own, which the test may stop a node of."""
    cluster = LocalRedisCluster(tmp_path / "own-cluster", primaries=3)
    cluster.start()
    yield cluster
    cluster.stop()


def test_primary_killed_mid_fanout_then_repair_makes_every_feed_exact(
    database_url: str,
    redis_prefix: str,
    own_cluster: LocalRedisCluster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = tmp_path / "feedctl.toml"
    config.write_text(
        f'redis_key_prefix = "{redis_prefix}"\nfeed_cap = {CAP}\nbatch_size = 40\n'
        'feed_retention = "0"\n'  # the seeded world has fixed dates
    )
    args = ["--config", str(config), "--database-url", database_url]
    args += ["--redis-url", own_cluster.url, "--json"]
    with psycopg.connect(database_url, autocommit=True) as conn:
        seed(conn, SeedSpec(users=150, communities=5, posts=120, seed=11, now=NOW))
    first = invoke([*args, "fanout", "--max-events", "200"])  # the joins and a few posts
    assert first.exit_code == 0, first.output
    users = sorted(expected_user_feeds_now(database_url))
    listed = tmp_path / "users.txt"
    listed.write_text("".join(f"{u}\n" for u in users))
    warmed = invoke([*args, "cache", "warm", "--users", str(listed), "--force"])
    assert warmed.exit_code == 0, warmed.output
    assert json.loads(warmed.stdout)["feeds_written"] == len(users)

    # The node goes down in the middle of the run: after the cache writes of a few batches.
    reached = {"n": 0}
    real_checkpoint = cache_writes.checkpoint

    def kill_a_primary(name: str) -> None:
        real_checkpoint(name)
        if name == "fanout.mid_cache":
            reached["n"] += 1
            if reached["n"] == 3:
                own_cluster.stop_node(STOPPED_NODE)

    monkeypatch.setattr(cache_writes, "checkpoint", kill_a_primary)
    result = invoke([*args, "fanout"])
    assert reached["n"] >= 3, "the run ended before the node was stopped"
    assert result.exit_code == EXIT_PARTIAL, result.output
    assert "Traceback" not in result.output
    report = json.loads(result.stdout)
    assert report["redis_failures"] > 0 and report["feeds_marked_for_repair"] > 0

    with psycopg.connect(database_url, autocommit=True) as conn:
        # PostgreSQL has every feed complete, whatever happened to Redis.
        expected = expected_user_feeds(conn)
        for user_id in users:
            stored = conn.execute(
                "SELECT post_id FROM feed_entry WHERE user_id = %s "
                "ORDER BY score DESC, post_id DESC",
                (user_id,),
            ).fetchall()
            assert [row[0] for row in stored] == [p for p, _ in expected.get(user_id, [])]
        marked = conn.execute("SELECT count(*) FROM feed_repair").fetchone()
        assert marked is not None and marked[0] > 0

    monkeypatch.setattr(cache_writes, "checkpoint", real_checkpoint)
    own_cluster.start_node(STOPPED_NODE)  # back, empty: it has no persistence
    assert own_cluster.wait_healthy()
    repaired = invoke([*args, "cache", "repair"])
    assert repaired.exit_code == 0, repaired.output
    assert json.loads(repaired.stdout)["redis_failures"] == 0

    client = redis_client(own_cluster.url)
    cache = FeedCache(client, redis_prefix, CAP)
    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            expected = expected_user_feeds(conn)
            assert conn.execute("SELECT count(*) FROM feed_repair").fetchone() == (0,)
            communities = [r[0] for r in conn.execute("SELECT id FROM communities")]
            expected_communities = {c: expected_community_feed(conn, c) for c in communities}
        cached_users = 0
        for user_id in users:
            found = cache.members(f"{redis_prefix}feed:u:{user_id}")
            if found is None:  # not cached (its key was on the restarted node): a miss
                continue
            cached_users += 1
            assert post_ids(found[0]) == post_ids(expected.get(user_id, [])[:CAP]), user_id
        assert cached_users > len(users) // 2
        for community_id, entries in expected_communities.items():
            found = cache.members(f"{redis_prefix}feed:c:{community_id}")
            if found is not None:
                assert post_ids(found[0]) == post_ids(entries[:CAP]), community_id
        verified = invoke([*args, "cache", "verify", "--sample", "10000"])
        assert verified.exit_code == 0, verified.output
        assert json.loads(verified.stdout)["mismatches"] == []
        keys = [key for batch in cache.scan_keys() for key in batch]
        cache.delete(keys)  # the prefix's keys are on this cluster, not the session's Redis
    finally:
        client.close()


def post_ids(entries: list[tuple[int, float]]) -> list[int]:
    return [post_id for post_id, _ in entries]


def expected_user_feeds_now(database_url: str) -> dict[int, list[tuple[int, float]]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return expected_user_feeds(conn)
