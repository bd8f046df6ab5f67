"""The session's three-primary Redis Cluster: feeds spread over every primary, and the
cache's multi-key work (scan, exists, delete, unlink) reaches all of them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from feedctl.cache.client import RedisClient
from feedctl.cache.feeds import FeedCache

from servers import redis_client

FEEDS = 300


@pytest.fixture
def cluster_cache(cluster_redis_url: str, redis_prefix: str) -> Iterator[FeedCache]:
    client = redis_client(cluster_redis_url)
    cache = FeedCache(client, redis_prefix, 10)
    yield cache
    # redis_prefix cleans the single server only: every key of the prefix here (the feeds'
    # fences too, decision 0028), one DEL each (they are in many slots)
    cache.delete([key.decode() for key in client.scan_iter(match=f"*{redis_prefix}*")])
    client.close()


def primaries_holding(client: RedisClient, keys: list[str]) -> set[str]:
    return {client.get_node_from_key(key).name for key in keys}  # type: ignore[attr-defined]


def test_feeds_spread_over_every_primary_and_multi_key_work_reaches_them(
    cluster_cache: FeedCache,
) -> None:
    cache = cluster_cache
    keys = [f"{cache.prefix}feed:u:{n}" for n in range(FEEDS)]
    cache.replace_many((key, [(1, 1.0), (2, 2.0)], False) for key in keys)
    assert len(primaries_holding(cache.client, keys)) == 3
    scanned = sorted(key for batch in cache.scan_keys() for key in batch)
    assert scanned == sorted(keys)  # SCAN walked every primary
    assert cache.exists(keys) == [True] * FEEDS
    assert cache.upsert_same(keys, [(3, 3.0)]) == [True] * FEEDS
    assert cache.sizes(keys) == [3] * FEEDS
    assert cache.unlink(keys[:100]) == 100
    assert cache.delete(keys) == FEEDS - 100
    assert not any(cache.exists(keys))
    assert [key for batch in cache.scan_keys() for key in batch] == []
