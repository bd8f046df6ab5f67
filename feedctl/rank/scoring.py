"""The rank key as pure Polars expressions.

    key = log2(1 + reactions_weight * reactions + comments_weight * comments)
        + reputation_weight * log2(1 + reputation)
        + hours since 2020-01-01T00:00Z / half_life_hours

Freshness decays exponentially, so ordering by this time-invariant key equals ordering
by quality * 2^(-age / half_life) at any moment: keys change only when inputs do.
Negative, NaN or missing counters and reputation count as 0 (they never propagate).
"""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from feedctl.rank.heuristic import Heuristic

EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
_EPOCH_MS = int(EPOCH.timestamp() * 1000)
_MS_PER_HOUR = 3_600_000.0

INPUT_COLUMNS = ("created_at", "reactions_count", "comments_count", "reputation")


def _non_negative(column: str) -> pl.Expr:
    value = pl.col(column).cast(pl.Float64)
    return pl.when(value.is_nan() | value.is_null() | (value < 0)).then(0.0).otherwise(value)


def engagement_expr(heuristic: Heuristic) -> pl.Expr:
    reactions = _non_negative("reactions_count")
    comments = _non_negative("comments_count")
    linear = 1.0 + heuristic.reactions_weight * reactions + heuristic.comments_weight * comments
    return linear.log(2)


def reputation_expr(heuristic: Heuristic) -> pl.Expr:
    return heuristic.reputation_weight * (1.0 + _non_negative("reputation")).log(2)


def freshness_expr(heuristic: Heuristic) -> pl.Expr:
    millis = pl.col("created_at").dt.epoch("ms").cast(pl.Float64)
    return (millis - _EPOCH_MS) / (_MS_PER_HOUR * heuristic.half_life_hours)


def rank_key_expr(heuristic: Heuristic) -> pl.Expr:
    """The whole key, named `score`."""
    return (
        engagement_expr(heuristic) + reputation_expr(heuristic) + freshness_expr(heuristic)
    ).alias("score")


def components(frame: pl.LazyFrame | pl.DataFrame, heuristic: Heuristic) -> pl.DataFrame:
    """Each component of the key, for `feedctl rank explain`."""
    return (
        frame.lazy()
        .with_columns(
            engagement_expr(heuristic).alias("engagement"),
            reputation_expr(heuristic).alias("reputation_term"),
            freshness_expr(heuristic).alias("freshness"),
            rank_key_expr(heuristic),
        )
        .collect()
    )


def score_frame(frame: pl.LazyFrame | pl.DataFrame, heuristic: Heuristic) -> pl.DataFrame:
    """The frame with a `score` column added, collected once."""
    return frame.lazy().with_columns(rank_key_expr(heuristic)).collect()
