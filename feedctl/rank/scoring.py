"""The rank key as pure Polars expressions.

    key = log2(1 + reactions_weight * reactions + comments_weight * comments)
        + reputation_weight * log2(1 + reputation)
        + hours since 2020-01-01T00:00Z / half_life_hours

Freshness decays exponentially, so ordering by this time-invariant key equals ordering
by quality * 2^(-age / half_life) at any moment: keys change only when inputs do.
Negative, NaN or missing counters and reputation count as 0 (they never propagate); an
infinite reputation counts as the largest finite float8. Each of the three terms is kept
within +-1e300, so the key is finite for every valid heuristic and input: never NaN.
"""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from feedctl.rank.heuristic import Heuristic

EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
_EPOCH_MS = int(EPOCH.timestamp() * 1000)
_MS_PER_HOUR = 3_600_000.0
_LARGEST = 1.7976931348623157e308  # the largest finite float8
_TERM_BOUND = 1e300  # three terms this size add up to a finite float8

INPUT_COLUMNS = ("created_at", "reactions_count", "comments_count", "reputation")


def _non_negative(column: str) -> pl.Expr:
    """The column as float8 in [0, largest finite]: negative, NaN and null become 0."""
    value = pl.col(column).cast(pl.Float64)
    unusable = value.is_nan() | value.is_null() | (value < 0)
    return pl.when(unusable).then(0.0).otherwise(value.clip(upper_bound=_LARGEST))


def _bounded(term: pl.Expr) -> pl.Expr:
    return term.clip(-_TERM_BOUND, _TERM_BOUND)


def engagement_expr(heuristic: Heuristic) -> pl.Expr:
    reactions = _non_negative("reactions_count")
    comments = _non_negative("comments_count")
    linear = 1.0 + heuristic.reactions_weight * reactions + heuristic.comments_weight * comments
    return _bounded(linear.clip(upper_bound=_LARGEST).log(2))


def reputation_expr(heuristic: Heuristic) -> pl.Expr:
    log_reputation = (1.0 + _non_negative("reputation")).clip(upper_bound=_LARGEST).log(2)
    return _bounded(heuristic.reputation_weight * log_reputation)


def freshness_expr(heuristic: Heuristic) -> pl.Expr:
    millis = pl.col("created_at").dt.epoch("ms").cast(pl.Float64)
    return _bounded((millis - _EPOCH_MS) / (_MS_PER_HOUR * heuristic.half_life_hours))


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
