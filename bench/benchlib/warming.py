"""`cache warm` of the same feeds into one Redis server and into a Redis Cluster, in turns.

Shared by bench/cluster.py and bench/read.py: the private three-primary cluster, the
targets (a Settings each, with the seconds of every warm into it), one timed warm into an
emptied target, and the rounds that alternate the targets so both see the same machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import statistics
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final

from benchlib.servers import note
from feedctl.cache.client import RedisClient
from feedctl.cache.feeds import FeedCache
from feedctl.config import Settings
from feedctl.context import open_context
from feedctl.pipelines.cache import warm as cache_warm
from feedctl.pipelines.cache.verify import verify
from feedctl.services.redis_cluster import LocalRedisCluster

CLUSTER_ENV: Final = "FEEDCTL_BENCH_REDIS_CLUSTER_URL"


class WarmFailure(Exception):
    """A warm wrote less than it was given, or its feeds disagree with PostgreSQL: the
    benchmark exits non-zero."""


@contextlib.contextmanager
def cluster_url(workdir: Path) -> Iterator[str]:
    """FEEDCTL_BENCH_REDIS_CLUSTER_URL, else a private three-primary cluster under
    `workdir`, stopped at the end."""
    configured = os.environ.get(CLUSTER_ENV)
    if configured:
        yield configured
        return
    cluster = LocalRedisCluster(workdir / "cluster", primaries=3)
    started = time.perf_counter()
    url = cluster.start()
    note(f"started a private three-primary Redis Cluster in {time.perf_counter() - started:.1f} s")
    try:
        yield url
    finally:
        cluster.stop()


def clear(client: RedisClient, prefix: str) -> None:
    """Unlink every cached feed under `prefix` (with its details; fences left to expire)."""
    cache = FeedCache(client, prefix, 1)
    for keys in cache.scan_keys():
        cache.unlink(keys)


@dataclasses.dataclass
class Target:
    """Where warms go, and what they measured: the seconds of each, the entries of the
    last (every warm of a target writes the same feeds)."""

    label: str
    settings: Settings
    seconds: list[float] = dataclasses.field(default_factory=list)
    feeds: int = 0
    entries: int = 0
    limit_members: int = 0
    limit_seconds: float = 0.0

    @property
    def median_seconds(self) -> float:
        return statistics.median(self.seconds)

    @property
    def feeds_per_second(self) -> float:
        return self.feeds / self.median_seconds

    @property
    def entries_per_second(self) -> float:
        return self.entries / self.median_seconds

    @property
    def limit(self) -> float:
        return self.limit_members / self.limit_seconds


def warm_once(target: Target, users: Sequence[int]) -> None:
    """Empty the target's feeds (untimed), then warm every one of `users` into it (timed)."""
    with open_context(target.settings) as ctx:
        clear(ctx.redis, ctx.prefix)
        started = time.perf_counter()
        report = cache_warm.warm(ctx, "user", users)
        seconds = time.perf_counter() - started
        if report.redis_failures or report.feeds_written != len(users):
            raise WarmFailure(f"{target.label}: warm wrote {report.feeds_written} feeds")
        target.seconds.append(seconds)
        target.feeds = report.feeds_written
        target.entries = report.entries_written
    note(f"{target.label}: warm {report.entries_written / seconds:,.0f} entries/s")


def alternate(targets: Sequence[Target], users: Sequence[int], rounds: int) -> None:
    """`rounds` warms into each target, in turns (first, second, first, second, ...)."""
    for _ in range(rounds):
        for target in targets:
            warm_once(target, users)


def verify_target(target: Target, sample: int) -> int:
    """`cache verify` of `sample` random feeds of the target; returns how many compared."""
    with open_context(target.settings) as ctx:
        checked = verify(ctx, sample)
    if checked.mismatches:
        raise WarmFailure(f"{target.label}: feeds differ: {checked.mismatches[:3]}")
    return checked.feeds_compared


def clear_targets(targets: Sequence[Target]) -> None:
    for target in targets:
        with open_context(target.settings) as ctx:
            clear(ctx.redis, ctx.prefix)
