"""Pure parts of cache verify and vacuum: comparing a cached feed, judging a key, key names."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feedctl.cache.feeds import CachedFeed, KeyFacts
from feedctl.cache.keys import KINDS, FeedKind, FeedRef, feed_pattern, parse_feed_key
from feedctl.pipelines.cache.vacuum import Owners, judge
from feedctl.pipelines.cache.verify import Mismatch, compare_feed

KEY = "p:feed:u:1"
TOP = [(9, 3.0), (7, 2.0), (5, 1.0)]  # the feed's top 3 in PostgreSQL, best first


def feed(entries: list[tuple[int, float]], *sentinels: bytes, foreign: int = 0) -> CachedFeed:
    return CachedFeed(entries, list(sentinels), [b"x"] * foreign)


def kinds(found: list[Mismatch]) -> list[tuple[str, int | None]]:
    return [(m.kind, m.post_id) for m in found]


def test_whole_feed_cached_as_complete_matches() -> None:
    assert compare_feed(KEY, feed(TOP, b"c"), TOP, False, 3) == []


def test_truncated_feed_may_hold_a_shorter_exact_prefix() -> None:
    assert compare_feed(KEY, feed(TOP[:2], b"t"), TOP, True, 3) == []
    assert compare_feed(KEY, feed([], b"t"), TOP, True, 3) == []


def test_a_gap_in_a_truncated_prefix_is_missing_and_extra() -> None:
    found = compare_feed(KEY, feed([TOP[0], TOP[2]], b"t"), TOP, True, 3)
    assert kinds(found) == [("missing", 7), ("extra", 5)]


def test_complete_feed_missing_its_last_entry_is_missing() -> None:
    found = compare_feed(KEY, feed(TOP[:2], b"c"), TOP, False, 3)
    assert kinds(found) == [("missing", 5)]


def test_score_difference_names_both_scores() -> None:
    found = compare_feed(KEY, feed([(9, 3.5), *TOP[1:]], b"c"), TOP, False, 3)
    assert len(found) == 1
    assert (found[0].kind, found[0].cached_score, found[0].database_score) == ("score", 3.5, 3.0)


def test_complete_sentinel_on_a_longer_feed_is_a_sentinel_mismatch() -> None:
    assert kinds(compare_feed(KEY, feed(TOP, b"c"), TOP, True, 3)) == [("sentinel", None)]


@pytest.mark.parametrize("sentinels", [(), (b"c", b"t")])
def test_no_sentinel_or_two_is_a_sentinel_mismatch(sentinels: tuple[bytes, ...]) -> None:
    assert ("sentinel", None) in kinds(compare_feed(KEY, feed(TOP, *sentinels), TOP, False, 3))


def test_over_cap_and_foreign_members_and_wrong_type() -> None:
    found = compare_feed(KEY, feed([*TOP, (1, 0.5)], b"t", foreign=1), TOP, True, 3)
    assert kinds(found) == [("malformed", None), ("over_cap", None), ("extra", 1)]
    wrong = CachedFeed([], [], [], wrong_type=True)
    assert kinds(compare_feed(KEY, wrong, TOP, False, 3)) == [("malformed", None)]


def facts(members: int, lowest: tuple[bytes, float] | None = (b"c", float("-inf"))) -> KeyFacts:
    return KeyFacts("k", "zset", members, lowest, 100)


OWNERS = Owners(active_users={1}, existing_users={1, 2}, existing_communities={7})


@pytest.mark.parametrize(
    ("fact", "ref", "verdict"),
    [
        (facts(10), FeedRef("user", 1), "keep"),
        (facts(10), FeedRef("user", 2), "inactive"),
        (facts(10), FeedRef("user", 3), "orphan"),
        (facts(10), FeedRef("community", 7), "keep"),
        (facts(10), FeedRef("community", 8), "orphan"),
        (facts(10), None, "orphan"),
        (facts(10, (b"5", 1.0)), FeedRef("user", 1), "malformed"),
        (facts(10, (b"c", 1.0)), FeedRef("user", 1), "malformed"),
        (KeyFacts("k", "string", 0, None, 50), FeedRef("user", 1), "malformed"),
        (facts(52), FeedRef("user", 1), "over_cap"),
        (facts(51), FeedRef("user", 1), "keep"),  # 50 entries and the sentinel
        (facts(52), FeedRef("user", 2), "inactive"),
    ],
)
def test_judge(fact: KeyFacts, ref: FeedRef | None, verdict: str) -> None:
    assert judge(fact, ref, OWNERS, 50) == verdict


@given(kind=st.sampled_from(KINDS), feed_id=st.integers(-(2**63), 2**63 - 1))
def test_feed_keys_parse_back(kind: FeedKind, feed_id: int) -> None:
    ref = FeedRef(kind, feed_id)
    assert parse_feed_key("app:", ref.key("app:")) == ref


@pytest.mark.parametrize(
    "key",
    [
        "app:feed:u:",
        "app:feed:u:01",
        "app:feed:x:1",
        "app:feed:u:1:tmp",
        "other:feed:u:1",
        "app:feed:u:9223372036854775808",
        "app:feed:u:+1",
        "app:feed:u:\u0661",  # an Arabic-Indic digit one
    ],
)
def test_other_keys_are_not_feed_keys(key: str) -> None:
    assert parse_feed_key("app:", key) is None


def test_scan_pattern_escapes_the_prefix() -> None:
    assert feed_pattern("feedctl:") == "feedctl:feed:*"
    assert feed_pattern("a*b?[c]\\:") == "a\\*b\\?\\[c\\]\\\\:feed:*"
