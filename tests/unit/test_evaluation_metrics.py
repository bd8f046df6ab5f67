"""The evaluation's metrics and bootstrap on frames small enough to check by hand."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from feedctl.rank.evaluation.bootstrap import bootstrap
from feedctl.rank.evaluation.compare import compare
from feedctl.rank.evaluation.metrics import (
    CANDIDATE_SCHEMA,
    query_metrics,
    rank_candidates,
    rank_movement,
)
from feedctl.rank.heuristic import Heuristic

MOMENT = datetime(2026, 11, 1, tzinfo=UTC)
# Freshness hardly matters (a half-life of ~114 years): reactions decide the order.
BY_REACTIONS = Heuristic("reactions", 1e6, 1.0, 0.0, 0.0)


def candidates(rows: list[tuple[int, int, int, int, int, int]]) -> pl.DataFrame:
    """(user, post, community, author, reactions, gain) rows at MOMENT, posts an hour old."""
    return pl.DataFrame(
        [
            (
                MOMENT,
                user,
                post,
                community,
                author,
                MOMENT - timedelta(hours=1),
                reactions,
                0,
                0.0,
                gain,
            )
            for user, post, community, author, reactions, gain in rows
        ],
        schema=CANDIDATE_SCHEMA,
        orient="row",
    )


def test_positions_follow_the_key_then_the_post_id() -> None:
    frame = candidates([(1, 10, 1, 1, 5, 0), (1, 11, 1, 1, 9, 0), (1, 12, 1, 1, 5, 0)])
    ranked = rank_candidates(frame, BY_REACTIONS).collect()
    assert ranked.select("post_id", "position").rows() == [(11, 1), (12, 2), (10, 3)]


def test_metrics_of_one_query_by_hand() -> None:
    # Order by reactions: posts 1, 2, 3, 4. Engaged: post 2 (a comment, gain 3) and post 4
    # (a view, gain 1). Communities 1, 1, 2, 2; authors 7, 8, 7, 7.
    frame = candidates(
        [(1, 1, 1, 7, 40, 0), (1, 2, 1, 8, 30, 3), (1, 3, 2, 7, 20, 0), (1, 4, 2, 7, 10, 1)]
    )
    row = query_metrics(rank_candidates(frame, BY_REACTIONS), [1, 2, 4]).row(0, named=True)
    dcg2 = 7 / math.log2(3)
    ideal2 = 7 / math.log2(2) + 1 / math.log2(3)
    assert row["mrr"] == pytest.approx(1 / 2)
    assert row["ndcg@1"] == 0.0
    assert row["ndcg@2"] == pytest.approx(dcg2 / ideal2)
    assert row["ndcg@4"] == pytest.approx((dcg2 + 1 / math.log2(5)) / ideal2)
    assert (row["recall@1"], row["recall@2"], row["recall@4"]) == (0.0, 0.5, 1.0)
    assert (row["communities@2"], row["communities@4"]) == (0.5, 0.5)
    assert (row["authors@1"], row["authors@2"], row["authors@4"]) == (1.0, 1.0, 0.5)
    assert (row["engaged"], row["candidates"]) == (2, 4)


def test_a_perfect_ranking_scores_one_and_queries_without_engagement_are_left_out() -> None:
    frame = candidates([(1, 1, 1, 1, 9, 2), (1, 2, 1, 1, 1, 0), (2, 1, 1, 1, 9, 0)])
    result = query_metrics(rank_candidates(frame, BY_REACTIONS), [1, 10])
    assert result["user_id"].to_list() == [1]
    assert result.row(0, named=True)["ndcg@1"] == 1.0
    assert result.row(0, named=True)["mrr"] == 1.0


def test_rank_movement_is_before_minus_after_within_either_top() -> None:
    def ranked(order: list[int]) -> pl.LazyFrame:
        return pl.LazyFrame(
            {
                "moment": [MOMENT] * len(order),
                "user_id": [1] * len(order),
                "post_id": order,
                "position": list(range(1, len(order) + 1)),
            }
        )

    first, other = ranked([1, 2, 3, 4]), ranked([3, 2, 1, 4])
    moved = sorted(rank_movement(first, other, top=3)["movement"].to_list())
    assert moved == [-2, 0, 2]  # post 4 is in neither top 3


def test_identical_rankings_have_a_zero_difference_and_a_better_one_excludes_zero() -> None:
    rng = np.random.default_rng(1)
    base = rng.random((1, 400, 2))
    values = np.concatenate([base, base, base + 0.05 + 0.01 * rng.standard_normal((1, 400, 2))])
    result = bootstrap(values, resamples=500, seed=3)
    same = result.differences[1][0]
    assert (same.mean, same.low, same.high) == (0.0, 0.0, 0.0)
    better = result.differences[2][1]
    assert better.excludes_zero() and better.low > 0.04
    mean = result.means[0][0]
    assert mean.low < mean.mean < mean.high


def test_compare_keeps_the_same_queries_for_every_heuristic() -> None:
    frame = candidates(
        [(1, 1, 1, 1, 9, 1), (1, 2, 1, 1, 1, 0), (2, 1, 1, 1, 9, 0), (2, 2, 1, 1, 1, 3)]
    )
    fresh = Heuristic("fresh", 1.0, 0.0, 0.0, 0.0)
    comparison = compare(frame, [BY_REACTIONS, fresh], [1], resamples=50, seed=0)
    assert comparison.queries == 2
    assert [f["user_id"].to_list() for f in comparison.per_query] == [[1, 2], [1, 2]]
