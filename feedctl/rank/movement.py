"""How much feeds would move under another heuristic: overlap of their top items. Pure."""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Iterable, Sequence


@dataclasses.dataclass(frozen=True)
class Movement:
    """Top-k movement over a sample of feeds (None when no feed was sampled)."""

    feeds: int
    mean_overlap: float | None  # mean share of the top-k kept (1.0: nothing left the top)
    min_overlap: float | None  # the feed that moved most
    unchanged_share: float | None  # share of feeds whose top-k is identical, in order


def top_overlap(before: Sequence[int], after: Sequence[int]) -> float:
    """Share of the top items that stay in the top: |before & after| / the larger size.

    Two empty tops overlap fully (1.0): an empty feed does not move.
    """
    size = max(len(before), len(after))
    if size == 0:
        return 1.0
    return len(set(before) & set(after)) / size


def summarize(tops: Iterable[tuple[Sequence[int], Sequence[int]]]) -> Movement:
    """Movement over (top now, top under the other heuristic) pairs, one per feed."""
    overlaps: list[float] = []
    unchanged = 0
    for before, after in tops:
        overlaps.append(top_overlap(before, after))
        unchanged += list(before) == list(after)
    if not overlaps:
        return Movement(0, None, None, None)
    return Movement(
        feeds=len(overlaps),
        mean_overlap=statistics.fmean(overlaps),
        min_overlap=min(overlaps),
        unchanged_share=unchanged / len(overlaps),
    )
