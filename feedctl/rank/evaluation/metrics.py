"""Ranking the candidates of past moments with a heuristic, and scoring those rankings.

A query is one sampled user at one past moment. Its candidate frame has one row per post
the user's feed held then, with the rank key's inputs as of that moment and `gain`, the
user's strongest engagement with the post in the window that followed (0 none, 1 a view,
2 a reaction, 3 a comment). Everything here is Polars expressions over whole frames.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from feedctl.rank.heuristic import Heuristic
from feedctl.rank.scoring import rank_key_expr

QUERY = ("moment", "user_id")
CANDIDATE_SCHEMA: pl.Schema = pl.Schema(
    {
        "moment": pl.Datetime("us", "UTC"),
        "user_id": pl.Int64(),
        "post_id": pl.Int64(),
        "community_id": pl.Int64(),
        "author_id": pl.Int64(),
        "created_at": pl.Datetime("us", "UTC"),
        "reactions_count": pl.Int64(),
        "comments_count": pl.Int64(),
        "reputation": pl.Float64(),
        "gain": pl.Int64(),
    }
)
GAIN_OF_KIND = {"view": 1, "reaction": 2, "comment": 3}


def metric_names(ks: Sequence[int]) -> list[str]:
    """The metric columns `query_metrics` returns, in order."""
    names = ["mrr"]
    for k in ks:
        names += [f"ndcg@{k}", f"recall@{k}", f"communities@{k}", f"authors@{k}"]
    return names


def rank_candidates(candidates: pl.LazyFrame | pl.DataFrame, heuristic: Heuristic) -> pl.LazyFrame:
    """Each candidate with its `score` (the production rank key) and its `position` (1 is
    the top) in its query's feed: key highest first, ties by post id highest first, as
    feeds are ordered."""
    return (
        candidates.lazy()
        .with_columns(rank_key_expr(heuristic))
        .sort([*QUERY, "score", "post_id"], descending=[False, False, True, True])
        .with_columns(position=pl.int_range(1, pl.len() + 1).over(QUERY))
    )


def query_metrics(ranked: pl.LazyFrame, ks: Sequence[int]) -> pl.DataFrame:
    """One row per query with at least one engaged candidate, ordered by query.

    NDCG@k uses gains 2^gain - 1 discounted by log2(position + 1) over the ideal order;
    recall@k is the share of engaged candidates in the top k; MRR is 1 / the position of
    the first engaged candidate; communities@k and authors@k are the distinct communities
    and authors in the top k over the number of posts there (1.0: all different).
    """
    value = (2.0 ** pl.col("gain").cast(pl.Float64)) - 1.0
    ideal = pl.col("gain").rank("ordinal", descending=True).over(QUERY)
    frame = ranked.with_columns(
        value=value,
        discount=1.0 / (pl.col("position").cast(pl.Float64) + 1.0).log(2),
        ideal_position=ideal,
    ).with_columns(ideal_discount=1.0 / (pl.col("ideal_position").cast(pl.Float64) + 1.0).log(2))
    engaged = pl.col("gain") > 0
    aggregations: list[pl.Expr] = [
        engaged.sum().alias("engaged"),
        pl.len().alias("candidates"),
        (1.0 / pl.col("position").filter(engaged).min().cast(pl.Float64)).alias("mrr"),
    ]
    for k in ks:
        top = pl.col("position") <= k
        shown = top.sum().cast(pl.Float64)
        dcg = (pl.col("value") * pl.col("discount")).filter(top).sum()
        idcg = (
            (pl.col("value") * pl.col("ideal_discount")).filter(pl.col("ideal_position") <= k).sum()
        )
        aggregations += [
            (dcg / idcg).alias(f"ndcg@{k}"),
            ((engaged & top).sum().cast(pl.Float64) / engaged.sum()).alias(f"recall@{k}"),
            (pl.col("community_id").filter(top).n_unique() / shown).alias(f"communities@{k}"),
            (pl.col("author_id").filter(top).n_unique() / shown).alias(f"authors@{k}"),
        ]
    return (
        frame.group_by(QUERY)
        .agg(aggregations)
        .filter(pl.col("engaged") > 0)
        .sort(QUERY)
        .select([*QUERY, "engaged", "candidates", *metric_names(ks)])
        .collect()
    )


def rank_movement(first: pl.LazyFrame, other: pl.LazyFrame, top: int) -> pl.DataFrame:
    """For posts in the top `top` of either ranking of a query: position under `first`
    minus position under `other` (positive: `other` moves the post up)."""
    left = first.select([*QUERY, "post_id", pl.col("position").alias("before")])
    right = other.select([*QUERY, "post_id", pl.col("position").alias("after")])
    return (
        left.join(right, on=[*QUERY, "post_id"])
        .filter((pl.col("before") <= top) | (pl.col("after") <= top))
        .select(movement=pl.col("before") - pl.col("after"))
        .collect()
    )
