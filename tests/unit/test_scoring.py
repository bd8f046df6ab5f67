"""The rank key: monotonicity, bad inputs, the documented formula and time invariance."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from feedctl.rank.heuristic import Heuristic, load_heuristic
from feedctl.rank.scoring import EPOCH, components, score_frame

FLOAT_SCHEMA = {
    "created_at": pl.Datetime("us", "UTC"),
    "reactions_count": pl.Float64(),
    "comments_count": pl.Float64(),
    "reputation": pl.Float64(),
}
# The schema the scoring pipeline feeds in (feedctl.pipelines.scores.INPUT_SCHEMA).
INT_SCHEMA = {
    "created_at": pl.Datetime("us", "UTC"),
    "reactions_count": pl.Int64(),
    "comments_count": pl.Int64(),
    "reputation": pl.Float64(),
}
COUNTER_COLUMNS = ("reactions_count", "comments_count", "reputation")

WEIGHTS = st.floats(min_value=0.0, max_value=20.0)
HEURISTICS = st.builds(
    Heuristic,
    version=st.just("test"),
    half_life_hours=st.floats(min_value=6.0, max_value=10_000.0),
    reactions_weight=WEIGHTS,
    comments_weight=WEIGHTS,
    reputation_weight=st.floats(min_value=0.0, max_value=10.0),
)
COUNTS = st.floats(min_value=0.0, max_value=1e6)
TIMES = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
).map(lambda moment: moment.replace(microsecond=moment.microsecond // 1000 * 1000))


def _scores(rows: list[tuple[Any, ...]], heuristic: Heuristic, schema: Any = None) -> list[float]:
    frame = pl.DataFrame(rows, schema=schema or FLOAT_SCHEMA, orient="row")
    return score_frame(frame, heuristic)["score"].to_list()


def _score(
    heuristic: Heuristic, created_at: datetime, reactions: Any, comments: Any, rep: Any
) -> float:
    return _scores([(created_at, reactions, comments, rep)], heuristic)[0]


def _expected(
    heuristic: Heuristic, created_at: datetime, reactions: float, comments: float, rep: float
) -> float:
    """The documented formula, independently of Polars."""
    engagement = math.log2(
        1 + heuristic.reactions_weight * reactions + heuristic.comments_weight * comments
    )
    reputation = heuristic.reputation_weight * math.log2(1 + rep)
    hours = (created_at - datetime(2020, 1, 1, tzinfo=UTC)).total_seconds() / 3600
    return engagement + reputation + hours / heuristic.half_life_hours


DEFAULT = Heuristic("t", half_life_hours=24.0, reactions_weight=1.0, comments_weight=3.0,
                    reputation_weight=0.25)  # fmt: skip


def test_epoch_is_2020_utc() -> None:
    assert datetime(2020, 1, 1, tzinfo=UTC) == EPOCH


def test_concrete_example_matches_formula() -> None:
    created = datetime(2024, 6, 1, 12, 30, tzinfo=UTC)
    got = _score(DEFAULT, created, 10, 4, 99.0)
    # log2(1 + 10 + 12) + 0.25 * log2(100) + hours / 24
    hours = (created - datetime(2020, 1, 1, tzinfo=UTC)).total_seconds() / 3600
    want = math.log2(23) + 0.25 * math.log2(100) + hours / 24
    assert got == pytest.approx(want, rel=1e-12, abs=1e-9)


def test_post_at_epoch_without_engagement_scores_zero() -> None:
    assert _score(DEFAULT, datetime(2020, 1, 1, tzinfo=UTC), 0, 0, 0.0) == 0.0
    # One half-life later the key has grown by exactly one.
    assert _score(DEFAULT, datetime(2020, 1, 2, tzinfo=UTC), 0, 0, 0.0) == pytest.approx(1.0)


def test_int_schema_matches_float_schema() -> None:
    created = datetime(2023, 3, 3, tzinfo=UTC)
    rows = [(created, 7, 2, 15.0), (created, None, -3, None)]
    as_int = _scores(rows, DEFAULT, INT_SCHEMA)
    as_float = _scores(rows, DEFAULT, FLOAT_SCHEMA)
    assert as_int == pytest.approx(as_float)
    assert as_int[1] == pytest.approx(_expected(DEFAULT, created, 0, 0, 0))


def test_components_add_up_to_score() -> None:
    frame = pl.DataFrame(
        [(datetime(2025, 1, 1, tzinfo=UTC), 3, 1, 8.0)], schema=INT_SCHEMA, orient="row"
    )
    parts = components(frame, DEFAULT).row(0, named=True)
    assert parts["engagement"] == pytest.approx(math.log2(1 + 3 + 3))
    assert parts["reputation_term"] == pytest.approx(0.25 * math.log2(9))
    total = parts["engagement"] + parts["reputation_term"] + parts["freshness"]
    assert parts["score"] == pytest.approx(total)


def test_empty_frame_gets_empty_score_column() -> None:
    scored = score_frame(pl.DataFrame(schema=INT_SCHEMA), DEFAULT)
    assert scored.height == 0
    assert "score" in scored.columns


@settings(max_examples=200, deadline=None)
@given(heuristic=HEURISTICS, created=TIMES, reactions=COUNTS, comments=COUNTS, rep=COUNTS)
def test_score_matches_documented_formula(
    heuristic: Heuristic, created: datetime, reactions: float, comments: float, rep: float
) -> None:
    got = _score(heuristic, created, reactions, comments, rep)
    want = _expected(heuristic, created, reactions, comments, rep)
    assert got == pytest.approx(want, rel=1e-9, abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(
    heuristic=HEURISTICS,
    created=TIMES,
    base=st.tuples(COUNTS, COUNTS, COUNTS),
    column=st.sampled_from(COUNTER_COLUMNS),
    growth=st.floats(min_value=0.0, max_value=1e6),
)
def test_score_does_not_decrease_when_an_input_grows(
    heuristic: Heuristic,
    created: datetime,
    base: tuple[float, float, float],
    column: str,
    growth: float,
) -> None:
    grown = list(base)
    grown[COUNTER_COLUMNS.index(column)] += growth
    before, after = _scores([(created, *base), (created, *grown)], heuristic)
    assert after >= before


@settings(max_examples=200, deadline=None)
@given(
    heuristic=HEURISTICS,
    created=TIMES,
    counts=st.tuples(COUNTS, COUNTS, COUNTS),
    gap=st.timedeltas(min_value=timedelta(minutes=1), max_value=timedelta(days=3650)),
)
def test_newer_post_scores_higher_at_equal_engagement(
    heuristic: Heuristic, created: datetime, counts: tuple[float, float, float], gap: timedelta
) -> None:
    older, newer = _scores([(created, *counts), (created + gap, *counts)], heuristic)
    assert newer > older


BAD_VALUES = st.one_of(
    st.floats(max_value=-1e-300, allow_nan=False),  # negative, including -inf
    st.just(math.nan),
    st.none(),
)


@settings(max_examples=200, deadline=None)
@given(
    heuristic=HEURISTICS,
    created=TIMES,
    counts=st.tuples(COUNTS, COUNTS, COUNTS),
    column=st.sampled_from(COUNTER_COLUMNS),
    bad=BAD_VALUES,
)
def test_negative_nan_or_null_input_counts_as_zero(
    heuristic: Heuristic,
    created: datetime,
    counts: tuple[float, float, float],
    column: str,
    bad: float | None,
) -> None:
    index = COUNTER_COLUMNS.index(column)
    zero: list[float | None] = list(counts)
    zero[index] = 0.0
    broken = list(zero)
    broken[index] = bad
    with_zero, with_bad = _scores([(created, *zero), (created, *broken)], heuristic)
    assert not math.isnan(with_bad)
    assert with_bad == with_zero


@pytest.mark.parametrize("bad", [-1, -(2**40), None])
def test_negative_or_null_integer_counters_count_as_zero(bad: int | None) -> None:
    created = datetime(2022, 2, 2, tzinfo=UTC)
    rows = [(created, 0, 0, 0.0), (created, bad, bad, None)]
    zero, broken = _scores(rows, DEFAULT, INT_SCHEMA)
    assert broken == zero
    assert not math.isnan(broken)


@settings(max_examples=200, deadline=None)
@given(
    heuristic=HEURISTICS,
    created_a=TIMES.filter(lambda moment: moment.year < 2099),
    offset_b=st.timedeltas(min_value=timedelta(days=-30), max_value=timedelta(days=30)),
    offset_now=st.timedeltas(min_value=timedelta(days=-30), max_value=timedelta(days=30)),
    counts_a=st.tuples(COUNTS, COUNTS, COUNTS),
    counts_b=st.tuples(COUNTS, COUNTS, COUNTS),
)
def test_order_by_key_equals_order_by_decayed_quality_at_any_moment(
    heuristic: Heuristic,
    created_a: datetime,
    offset_b: timedelta,
    offset_now: timedelta,
    counts_a: tuple[float, float, float],
    counts_b: tuple[float, float, float],
) -> None:
    created_b = created_a + offset_b
    now = created_a + offset_now

    def decayed(created: datetime, counts: tuple[float, float, float]) -> float:
        reactions, comments, rep = counts
        quality = (
            1 + heuristic.reactions_weight * reactions + heuristic.comments_weight * comments
        ) * math.pow(1 + rep, heuristic.reputation_weight)
        age_hours = (now - created).total_seconds() / 3600
        return quality * math.pow(2.0, -age_hours / heuristic.half_life_hours)

    value_a, value_b = decayed(created_a, counts_a), decayed(created_b, counts_b)
    assert value_a > 0 and value_b > 0 and math.isfinite(value_a) and math.isfinite(value_b)
    assume(abs(value_a / value_b - 1) > 1e-7)  # leave rounding-level ties out
    score_a, score_b = _scores([(created_a, *counts_a), (created_b, *counts_b)], heuristic)
    assert (score_a > score_b) == (value_a > value_b)


def test_default_heuristic_ranks_engaging_older_post_by_decay() -> None:
    heuristic = load_heuristic()
    now = datetime(2025, 1, 10, tzinfo=UTC)
    # Quality 4 (3 reactions) a day old vs quality 1 just now: 4 * 2^-1 = 2 > 1.
    old_engaging = (now - timedelta(hours=24), 3, 0, 0.0)
    fresh_plain = (now, 0, 0, 0.0)
    # Quality 4 three days old: 4 * 2^-3 = 0.5 < 1.
    stale = (now - timedelta(hours=72), 3, 0, 0.0)
    a, b, c = _scores([old_engaging, fresh_plain, stale], heuristic)
    assert a > b > c
