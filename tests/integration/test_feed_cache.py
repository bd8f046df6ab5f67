"""The cached-feed Lua script against a model: after any sequence of upserts and removals,
a cached feed is an exact prefix of the full feed (ordered by score desc, post id desc),
at most `cap` long, and marked complete only when it holds the whole feed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedctl.cache.feeds import COMPLETE, TRUNCATED, FeedCache

from servers import redis_client

pytestmark = pytest.mark.redis_cluster_too  # each test on one server and on a cluster

CAP = 8
SCORES = st.sampled_from([1.0, 2.0, 2.5, 3.0, 1e-9, 2500.123456789, -4.0])  # many ties
POSTS = st.integers(min_value=1, max_value=40)
UPSERT = st.tuples(st.just("upsert"), st.lists(st.tuples(POSTS, SCORES), min_size=1, max_size=6))
REMOVE = st.tuples(st.just("remove"), st.lists(POSTS, min_size=1, max_size=4))


@pytest.fixture
def cache(redis_server_url: str, redis_prefix: str) -> Iterator[FeedCache]:
    client = redis_client(redis_server_url)
    yield FeedCache(client, redis_prefix, CAP)
    client.close()


def ordered(model: dict[int, float]) -> list[tuple[int, float]]:
    return sorted(model.items(), key=lambda item: (item[1], item[0]), reverse=True)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    initial=st.dictionaries(POSTS, SCORES, max_size=14),
    operations=st.lists(st.one_of(UPSERT, REMOVE), max_size=12),
)
def test_cached_feed_stays_an_exact_prefix(
    cache: FeedCache, initial: dict[int, float], operations: list[tuple[str, list]]
) -> None:
    key = f"{cache.prefix}feed:u:1"
    model = dict(initial)
    full = ordered(model)
    cache.replace(key, full[:CAP], truncated=len(full) > CAP)
    for kind, payload in operations:
        if kind == "upsert":
            for post_id, score in payload:
                model[post_id] = score
            assert cache.upsert_same([key], payload) == [True]
        else:
            for post_id in payload:
                model.pop(post_id, None)
            cache.remove([(key, payload)])
        found = cache.members(key)
        assert found is not None
        cached, sentinel = found
        expected = ordered(model)
        assert len(cached) <= CAP
        assert cached == expected[: len(cached)], (cached, expected)
        if sentinel == COMPLETE:
            assert cached == expected
        else:
            assert sentinel == TRUNCATED


def test_uncached_feed_is_never_created(cache: FeedCache) -> None:
    key = f"{cache.prefix}feed:u:2"
    assert cache.upsert_same([key], [(1, 1.0)]) == [False]
    assert cache.upsert([(key, [(1, 1.0)])]) == [False]
    assert cache.members(key) is None


def test_a_page_inside_a_tie_larger_than_a_script_can_unpack(cache: FeedCache) -> None:
    big = FeedCache(cache.client, cache.prefix, 20_000)
    key = f"{cache.prefix}feed:u:7"
    big.replace(key, [(post_id, 1.0) for post_id in range(1, 12_001)], False)
    page = big.read(key, None, 20)
    assert page is not None
    assert page.items == [(post_id, 1.0) for post_id in range(12_000, 11_980, -1)]
    after = big.read(key, page.items[-1][::-1], 20)  # (score, post id) of the last item
    assert after is not None
    assert after.items == [(post_id, 1.0) for post_id in range(11_980, 11_960, -1)]
    assert after.more_in_cache and not after.truncated
