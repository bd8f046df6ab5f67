"""The fence of cached feeds, step by step (docs/decisions/0028): which writes land, which
are refused or superseded, and what a swap applies on top of what it read."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from feedctl.cache.feeds import (
    FENCED_OUT,
    LOG_CAP,
    NOT_CACHED,
    SUPERSEDED,
    TRUNCATED,
    WRITTEN,
    FeedCache,
    entries_text,
    fence_keys,
)

from servers import redis_client

CAP = 5
pytestmark = pytest.mark.redis_cluster_too  # each test on one server and on a cluster


@pytest.fixture
def cache(redis_server_url: str, redis_prefix: str) -> Iterator[FeedCache]:
    client = redis_client(redis_server_url)
    yield FeedCache(client, redis_prefix, CAP)
    client.close()


@pytest.fixture
def key(cache: FeedCache) -> str:
    return f"{cache.prefix}feed:u:1"


def held(cache: FeedCache, key: str) -> list[tuple[int, float]]:
    found = cache.members(key)
    assert found is not None
    return found[0]


def test_a_change_landing_while_a_swap_is_in_flight_is_applied_on_top_of_it(
    cache: FeedCache, key: str
) -> None:
    cache.replace(key, [(1, 1.0)], False)
    (swap,) = cache.stamp([key])
    assert swap is not None
    # PostgreSQL read by the swap: posts 1 and 2. Then post 3 arrives and post 1 is
    # rescored, both committed after that read, and their writes land first.
    (delta,) = cache.stamp([key], swap=False)
    assert delta is not None
    assert cache.apply([(key, delta, [(3, 3.0), (1, 5.0)], [])]) == [1]  # one new member
    (delta,) = cache.stamp([key], swap=False)
    assert delta is not None
    assert cache.apply([(key, delta, [], [2])]) == [0]  # post 2 deleted
    assert cache.swap([(key, swap, entries_text([(2, 2.0), (1, 1.0)]), False)]) == [WRITTEN]
    assert held(cache, key) == [(1, 5.0), (3, 3.0)]


def test_a_change_on_an_uncached_feed_reaches_a_swap_in_flight(cache: FeedCache, key: str) -> None:
    (swap,) = cache.stamp([key])  # a read miss: the fill stamps, then reads PostgreSQL
    assert swap is not None
    (delta,) = cache.stamp([key], swap=False)
    assert delta is not None  # fenced, though not cached
    assert cache.apply([(key, delta, [(9, 9.0)], [])]) == [NOT_CACHED]
    assert cache.swap([(key, swap, entries_text([(1, 1.0)]), False)]) == [WRITTEN]
    assert held(cache, key) == [(9, 9.0), (1, 1.0)]


def test_an_older_swap_never_replaces_a_newer_one(cache: FeedCache, key: str) -> None:
    (older,) = cache.stamp([key])
    (newer,) = cache.stamp([key])
    assert older is not None and newer is not None
    assert cache.swap([(key, newer, entries_text([(2, 2.0)]), False)]) == [WRITTEN]
    assert cache.swap([(key, older, entries_text([(1, 1.0)]), False)]) == [SUPERSEDED]
    assert held(cache, key) == [(2, 2.0)]


def test_a_swap_stamped_before_another_landed_is_fenced_out(cache: FeedCache, key: str) -> None:
    (first,) = cache.stamp([key])
    (second,) = cache.stamp([key])
    assert first is not None and second is not None
    assert cache.swap([(key, first, entries_text([(1, 1.0)]), False)]) == [WRITTEN]
    # `second` read PostgreSQL after its stamp, but maybe before `first` did: redone
    assert cache.swap([(key, second, entries_text([(2, 2.0)]), False)]) == [FENCED_OUT]
    assert held(cache, key) == [(1, 1.0)]


def test_changes_to_the_same_feed_fence_each_other(cache: FeedCache, key: str) -> None:
    cache.replace(key, [(1, 1.0)], False)
    (first,) = cache.stamp([key], swap=False)
    (second,) = cache.stamp([key], swap=False)
    assert first is not None and second is not None
    assert cache.apply([(key, second, [(1, 4.0)], [])]) == [0]  # updated, none added
    assert cache.apply([(key, first, [(1, 2.0)], [])]) == [FENCED_OUT]  # an older read
    assert held(cache, key) == [(1, 4.0)]


def test_a_change_a_later_swap_has_read_is_superseded(cache: FeedCache, key: str) -> None:
    cache.replace(key, [(1, 1.0)], False)
    (change,) = cache.stamp([key], swap=False)
    (other,) = cache.stamp([key], swap=False)
    (swap,) = cache.stamp([key])
    assert change is not None and other is not None and swap is not None
    assert cache.apply([(key, other, [(2, 2.0)], [])]) == [1]
    assert cache.swap([(key, swap, entries_text([(3, 3.0), (2, 2.0), (1, 1.0)]), False)]) == [1]
    assert cache.apply([(key, change, [(3, 3.0)], [])]) == [SUPERSEDED]
    assert held(cache, key) == [(3, 3.0), (2, 2.0), (1, 1.0)]


def test_a_change_stamped_before_a_landed_swap_is_superseded_even_alone(
    cache: FeedCache, key: str
) -> None:
    # The change read PostgreSQL before post 2 arrived (it removes 2); a swap stamped after
    # it read post 2 and landed first. No other change landed, yet the older read must not
    # land over the swap's newer one.
    cache.replace(key, [(1, 1.0)], False)
    (change,) = cache.stamp([key], swap=False)
    (swap,) = cache.stamp([key])
    assert change is not None and swap is not None
    assert cache.swap([(key, swap, entries_text([(2, 2.0), (1, 1.0)]), False)]) == [WRITTEN]
    assert cache.apply([(key, change, [], [2])]) == [SUPERSEDED]
    assert held(cache, key) == [(2, 2.0), (1, 1.0)]


def test_a_change_stamped_before_a_swap_in_flight_is_not_replayed_over_it(
    cache: FeedCache, key: str
) -> None:
    # As above, but the older change lands while the swap is in flight: it is written (the
    # swap may never land) but not replayed on top of the swap's newer read.
    cache.replace(key, [(1, 1.0)], False)
    (change,) = cache.stamp([key], swap=False)
    (swap,) = cache.stamp([key])
    assert change is not None and swap is not None
    assert cache.apply([(key, change, [], [2])]) == [0]
    assert cache.swap([(key, swap, entries_text([(2, 2.0), (1, 1.0)]), False)]) == [WRITTEN]
    assert held(cache, key) == [(2, 2.0), (1, 1.0)]
    # a change stamped after the swap's stamp is still replayed by it
    (swap,) = cache.stamp([key])
    (change,) = cache.stamp([key], swap=False)
    assert change is not None and swap is not None
    assert cache.apply([(key, change, [], [1])]) == [0]
    assert cache.swap([(key, swap, entries_text([(2, 2.0), (1, 1.0)]), False)]) == [WRITTEN]
    assert held(cache, key) == [(2, 2.0)]


def test_a_swap_replays_a_log_written_before_deltas_logged_their_stamp(
    cache: FeedCache, key: str
) -> None:
    # entries "sequence post score", as the script logged them before it logged stamps
    cache.replace(key, [(1, 1.0)], False)
    (swap,) = cache.stamp([key])
    assert swap is not None
    sequence = swap.decode().rsplit(":", 1)[1]
    cache.client.rpush(fence_keys(key)[1], f"{sequence} 3 3.0", f"{sequence} 1 -")
    assert cache.swap([(key, swap, entries_text([(2, 2.0), (1, 1.0)]), False)]) == [WRITTEN]
    assert held(cache, key) == [(3, 3.0), (2, 2.0)]


def test_a_swap_whose_changes_fell_out_of_the_log_is_redone(cache: FeedCache, key: str) -> None:
    cache.replace(key, [], False)
    (swap,) = cache.stamp([key])
    assert swap is not None
    for post_id in range(LOG_CAP + 1):
        (delta,) = cache.stamp([key], swap=False)
        assert delta is not None
        cache.apply([(key, delta, [], [post_id])])
    assert cache.swap([(key, swap, entries_text([(1, 1.0)]), False)]) == [FENCED_OUT]
    log = fence_keys(key)[1]
    assert cache.client.llen(log) == LOG_CAP  # bounded


def test_an_expired_fence_refuses_writes_stamped_before(cache: FeedCache, key: str) -> None:
    cache.replace(key, [(1, 1.0)], False)
    (swap,) = cache.stamp([key])
    assert swap is not None
    cache.client.delete(fence_keys(key)[0])  # expired
    cache.stamp([key])  # a new fence, a new incarnation
    assert cache.swap([(key, swap, entries_text([(2, 2.0)]), False)]) == [FENCED_OUT]
    assert held(cache, key) == [(1, 1.0)]


def test_replayed_changes_keep_a_truncated_feed_an_exact_prefix(cache: FeedCache, key: str) -> None:
    (swap,) = cache.stamp([key])
    (delta,) = cache.stamp([key], swap=False)
    assert swap is not None and delta is not None
    cache.apply([(key, delta, [(10, 0.5), (11, 50.0)], [])])  # logged (not cached yet)
    top = [(i, float(i)) for i in range(9, 4, -1)]  # 5 of a longer feed
    assert cache.swap([(key, swap, entries_text(top), True)]) == [WRITTEN]
    found = cache.members(key)
    assert found is not None
    assert found == ([(11, 50.0), (9, 9.0), (8, 8.0), (7, 7.0), (6, 6.0)], TRUNCATED)


def test_feeds_nobody_caches_get_no_fence(cache: FeedCache, key: str) -> None:
    assert cache.stamp([key], swap=False) == [None]
    assert cache.stamp([key], only_cached=True) == [None]
    assert cache.client.exists(*fence_keys(key)) == 0
