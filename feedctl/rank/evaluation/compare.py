"""Comparing heuristics on one candidate frame: per-query metrics, then bootstrap."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import polars as pl

from feedctl.rank.evaluation.bootstrap import Bootstrapped, bootstrap
from feedctl.rank.evaluation.metrics import metric_names, query_metrics, rank_candidates
from feedctl.rank.heuristic import Heuristic


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Per-query metrics of each heuristic (same queries, same order) and their bootstrap."""

    metrics: list[str]
    per_query: list[pl.DataFrame]
    bootstrapped: Bootstrapped

    @property
    def queries(self) -> int:
        return self.per_query[0].height if self.per_query else 0


def compare(
    candidates: pl.DataFrame,
    heuristics: Sequence[Heuristic],
    ks: Sequence[int],
    *,
    resamples: int,
    seed: int,
) -> Comparison:
    """Rank the candidates under each heuristic and score every query. Queries with no
    engaged candidate carry no signal and are left out (the same ones for every heuristic,
    since the candidates and the engagement do not depend on the heuristic)."""
    if not heuristics:
        raise ValueError("no heuristic to compare")
    names = metric_names(ks)
    per_query = [query_metrics(rank_candidates(candidates, h), ks) for h in heuristics]
    values = np.stack([frame.select(names).to_numpy().astype(np.float64) for frame in per_query])
    if values.shape[1] == 0:
        raise ValueError("no query has engagement")
    return Comparison(names, per_query, bootstrap(values, resamples, seed))


def mean_metric(candidates: pl.DataFrame, heuristic: Heuristic, metric: str, k: int) -> float:
    """One heuristic's mean of one metric over the queries (what a search maximises)."""
    frame = query_metrics(rank_candidates(candidates, heuristic), [k])
    if not frame.height:
        return 0.0
    return float(frame.select(pl.col(metric).mean()).item())
