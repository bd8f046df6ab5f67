"""Bootstrap intervals for per-query metric means, and paired differences between heuristics.

Queries are resampled with replacement; every heuristic is evaluated on the same resample,
so the difference of two heuristics' means is paired (the queries' own spread cancels).
A resample is a row of multinomial counts over the queries; all metrics of all heuristics
are averaged at once with one matrix product per block of resamples, so memory is bounded
by (block x queries) whatever the number of resamples.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
CONFIDENCE = 0.95
_BLOCK_CELLS = 4_000_000  # resamples x queries per block


@dataclasses.dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float

    def excludes_zero(self) -> bool:
        return self.low > 0.0 or self.high < 0.0


@dataclasses.dataclass(frozen=True)
class Bootstrapped:
    """Per heuristic and metric: the mean with its interval, and the paired difference
    from the first heuristic with its interval (the first's own difference is 0)."""

    means: list[list[Interval]]  # [heuristic][metric]
    differences: list[list[Interval]]


def bootstrap(values: FloatArray, resamples: int, seed: int) -> Bootstrapped:
    """`values` has shape (heuristics, queries, metrics), the same queries in the same order
    for every heuristic. Percentile intervals at CONFIDENCE."""
    heuristics, queries, metrics = values.shape
    if queries == 0:
        raise ValueError("no queries to bootstrap")
    columns = np.nan_to_num(values, nan=0.0).transpose(1, 0, 2).reshape(queries, -1)
    block = max(1, _BLOCK_CELLS // queries)
    rng = np.random.default_rng(seed)
    samples: list[FloatArray] = []
    for start in range(0, resamples, block):
        rows = min(block, resamples - start)
        counts = rng.multinomial(queries, np.full(queries, 1.0 / queries), size=rows)
        samples.append(counts.astype(np.float64) @ columns / queries)
    means = np.concatenate(samples).reshape(resamples, heuristics, metrics)
    point = columns.mean(axis=0).reshape(heuristics, metrics)
    differences = means - means[:, :1, :]
    alpha = (1.0 - CONFIDENCE) / 2.0
    return Bootstrapped(
        means=_intervals(point, means, alpha),
        differences=_intervals(point - point[:1, :], differences, alpha),
    )


def _intervals(point: FloatArray, samples: FloatArray, alpha: float) -> list[list[Interval]]:
    low = np.quantile(samples, alpha, axis=0)
    high = np.quantile(samples, 1.0 - alpha, axis=0)
    return [
        [
            Interval(float(point[h, m]), float(low[h, m]), float(high[h, m]))
            for m in range(point.shape[1])
        ]
        for h in range(point.shape[0])
    ]
