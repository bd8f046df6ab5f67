"""Pure parts of ranking: shards, the rate limit, chunk sizing, top-k movement, heuristic
records, and scores that stay finite whatever the inputs."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feedctl.errors import BadInputError, HeuristicError
from feedctl.pipelines.ranking.backfill.preview import PreviewOptions
from feedctl.pipelines.ranking.backfill.run import MAX_USERS, BackfillOptions, next_chunk_users
from feedctl.pipelines.ranking.backfill.shards import Shard, parse_shard
from feedctl.pipelines.ranking.backfill.throttle import Throttle, check_rate
from feedctl.rank.heuristic import Heuristic, heuristic_from_record, load_heuristic
from feedctl.rank.movement import summarize, top_overlap
from feedctl.rank.scoring import components, score_frame

# --- shards ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shard"), [("0/1", Shard(0, 1)), ("3/8", Shard(3, 8)), (" 1 / 2 ", Shard(1, 2))]
)
def test_shard_parses(text: str, shard: Shard) -> None:
    assert parse_shard(text) == shard
    assert str(shard) == text.replace(" ", "")


@pytest.mark.parametrize("text", ["", "1", "1/", "/2", "a/b", "-1/2", "1/2/3", "1.0/2"])
def test_malformed_shard_is_bad_input(text: str) -> None:
    with pytest.raises(BadInputError, match="--shard must look like i/N"):
        parse_shard(text)


@pytest.mark.parametrize(("text", "fragment"), [("2/2", "between 0 and 1"), ("0/0", "count")])
def test_impossible_shard_is_bad_input(text: str, fragment: str) -> None:
    with pytest.raises(BadInputError, match=fragment):
        parse_shard(text)


@given(user_id=st.integers(min_value=-(2**63), max_value=2**63 - 1), count=st.integers(1, 64))
def test_every_user_id_belongs_to_exactly_one_shard(user_id: int, count: int) -> None:
    owners = [i for i in range(count) if Shard(i, count).holds(user_id)]
    assert len(owners) == 1


# --- rate limit --------------------------------------------------------------------------


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.mark.parametrize("bad", [0, -5, math.nan, math.inf])
def test_rate_limit_must_be_positive_and_finite(bad: float) -> None:
    with pytest.raises(BadInputError, match="--rate-limit must be a positive"):
        check_rate(bad)


def test_no_rate_limit_never_sleeps() -> None:
    time = FakeTime()
    throttle = Throttle(None, time.sleep, time.clock)
    assert throttle.pace(10**9) == 0.0 and time.slept == []
    assert throttle.chunk_rows(20_000) == 20_000


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(min_value=1.0, max_value=1e6),
    chunks=st.lists(
        st.tuples(st.integers(0, 50_000), st.floats(min_value=0.0, max_value=5.0)), max_size=30
    ),
)
def test_throttle_keeps_every_stretch_at_or_under_the_rate(
    rate: float, chunks: list[tuple[int, float]]
) -> None:
    """However long each chunk's work takes, rows written from the start never exceed
    rate * elapsed (plus the chunk in flight), and idle time earns no burst."""
    time = FakeTime()
    throttle = Throttle(rate, time.sleep, time.clock)
    started = time.now
    written = 0
    for rows, work_seconds in chunks:
        time.now += work_seconds
        throttle.pace(rows)
        written += rows
        assert written <= rate * (time.now - started) * (1 + 1e-9) + 1e-6


def test_throttle_earns_no_credit_from_slow_stretches() -> None:
    time = FakeTime()
    throttle = Throttle(100.0, time.sleep, time.clock)
    time.now += 60.0  # a minute waiting for a lock
    throttle.pace(100)  # took a minute for 100 rows: no sleep
    assert time.slept == []
    throttle.pace(100)  # immediately 100 more: must take a second
    assert time.slept == [pytest.approx(1.0)]


def test_throttle_restart_forgets_the_wait_before_work() -> None:
    time = FakeTime()
    throttle = Throttle(10.0, time.sleep, time.clock)
    time.now += 30.0
    throttle.restart()
    throttle.pace(10)
    assert time.slept == [pytest.approx(1.0)]


def test_rate_limited_chunks_hold_about_one_second_of_rows() -> None:
    time = FakeTime()
    assert Throttle(500.0, time.sleep, time.clock).chunk_rows(20_000) == 500
    assert Throttle(0.2, time.sleep, time.clock).chunk_rows(20_000) == 1


# --- chunk sizing -----------------------------------------------------------------------


@given(
    users=st.integers(1, MAX_USERS),
    updated=st.integers(0, 10**7),
    target=st.integers(1, 10**6),
)
def test_next_chunk_moves_towards_the_target_within_bounds(
    users: int, updated: int, target: int
) -> None:
    following = next_chunk_users(users, updated, target)
    assert 1 <= following <= MAX_USERS
    assert max(1, users // 4) <= following or following == MAX_USERS
    assert following <= users * 4
    if updated > target:
        assert following <= users
    if 0 < updated < target:
        assert following >= min(users, MAX_USERS)


# --- movement ---------------------------------------------------------------------------


def test_top_overlap() -> None:
    assert top_overlap([1, 2, 3, 4], [4, 3, 2, 1]) == 1.0
    assert top_overlap([1, 2, 3, 4], [1, 2, 5, 6]) == 0.5
    assert top_overlap([], []) == 1.0
    assert top_overlap([1, 2], []) == 0.0


def test_summarize_over_feeds() -> None:
    movement = summarize([([1, 2], [1, 2]), ([1, 2], [2, 1]), ([1, 2], [3, 4])])
    assert movement.feeds == 3
    assert movement.mean_overlap == pytest.approx(2 / 3)
    assert movement.min_overlap == 0.0
    assert movement.unchanged_share == pytest.approx(1 / 3)
    assert summarize([]).mean_overlap is None


@given(st.lists(st.integers(0, 50), max_size=20, unique=True), st.permutations(range(20)))
def test_overlap_is_a_share(before: list[int], order: list[int]) -> None:
    after = [before[i] for i in order if i < len(before)]
    assert top_overlap(before, after) == 1.0
    assert 0.0 <= top_overlap(before, [x + 100 for x in before]) <= 1.0


# --- options ----------------------------------------------------------------------------


def test_backfill_options_are_validated() -> None:
    with pytest.raises(BadInputError, match="--chunk-rows"):
        BackfillOptions(chunk_rows=0)
    with pytest.raises(BadInputError, match="exclude each other"):
        BackfillOptions(resume=True, replace=True)
    with pytest.raises(BadInputError, match="--rate-limit"):
        BackfillOptions(rate_limit=-1.0)
    with pytest.raises(BadInputError, match="--sample-feeds"):
        PreviewOptions(sample_feeds=-1)


# --- heuristic records ------------------------------------------------------------------


def test_heuristic_round_trips_through_its_record() -> None:
    heuristic = load_heuristic()
    assert heuristic_from_record(heuristic.version, heuristic.coefficients(), "db") == heuristic
    assert set(heuristic.coefficients()) == {
        "half_life_hours",
        "reactions_weight",
        "comments_weight",
        "reputation_weight",
    }


def test_a_broken_record_names_the_key() -> None:
    coefficients = {**load_heuristic().coefficients(), "half_life_hours": -1.0}
    with pytest.raises(HeuristicError, match="db: half_life_hours must be positive"):
        heuristic_from_record("v", coefficients, "db")


# --- finite scores ----------------------------------------------------------------------

SCHEMA = {
    "created_at": pl.Datetime("us", "UTC"),
    "reactions_count": pl.Int64(),
    "comments_count": pl.Int64(),
    "reputation": pl.Float64(),
}
CREATED = datetime(2024, 5, 5, tzinfo=UTC)


def scores(rows: list[tuple[object, ...]], heuristic: Heuristic) -> list[float]:
    frame = pl.DataFrame(rows, schema=SCHEMA, orient="row")
    return score_frame(frame, heuristic)["score"].to_list()


def test_infinite_reputation_is_the_largest_finite_one() -> None:
    heuristic = load_heuristic()
    huge, infinite = scores([(CREATED, 1, 1, 1e308), (CREATED, 1, 1, math.inf)], heuristic)
    assert math.isfinite(infinite) and infinite >= huge
    weightless = Heuristic("w", 24.0, 1.0, 1.0, reputation_weight=0.0)
    (zero_weight,) = scores([(CREATED, 1, 1, math.inf)], weightless)
    assert zero_weight == scores([(CREATED, 1, 1, 0.0)], weightless)[0]  # 0 * inf is not NaN


@settings(max_examples=200, deadline=None)
@given(
    half_life=st.floats(min_value=1e-300, max_value=1e300),
    weights=st.tuples(*[st.floats(min_value=0.0, max_value=1e308)] * 3),
    reactions=st.integers(-(2**63), 2**63 - 1),
    comments=st.integers(-(2**63), 2**63 - 1),
    reputation=st.floats(allow_nan=True, allow_infinity=True),
    created=st.datetimes(
        min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    ),
)
def test_every_valid_heuristic_gives_finite_components_and_keys(
    half_life: float,
    weights: tuple[float, float, float],
    reactions: int,
    comments: int,
    reputation: float,
    created: datetime,
) -> None:
    heuristic = Heuristic("x", half_life, *weights)
    frame = pl.DataFrame([(created, reactions, comments, reputation)], schema=SCHEMA, orient="row")
    parts = components(frame, heuristic).row(0, named=True)
    for name in ("engagement", "reputation_term", "freshness", "score"):
        assert math.isfinite(parts[name]), (name, parts)
