"""The commands a job can run, mapped to the library functions the CLI commands call.

A job's flags are parsed by its CLI command itself (feedctl.cli.job_flags), which hands
the runner the options below by their parameter names; `options` lists those a job may
use. Every command gets the run's guard as its progress and the guard's
`stop` event: the guard checks the time on each advance (which a pipeline reports once a
chunk is committed to PostgreSQL and written to Redis) and sets `stop` when the time is
up, and the pipeline returns its report, stopped, at its next chunk boundary.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from feedctl.context import Context
from feedctl.durations import parse_duration
from feedctl.pipelines.cache import repair as cache_repair
from feedctl.pipelines.cache import vacuum as cache_vacuum
from feedctl.pipelines.cache import verify as cache_verify
from feedctl.pipelines.cache import warm as cache_warm
from feedctl.pipelines.cache import writes as cache_writes
from feedctl.pipelines.expire import DEFAULT_CHUNK_POSTS, ExpireReport, expire
from feedctl.pipelines.fanout.run import DEFAULT_CONSUMER, FanoutReport, run_fanout
from feedctl.pipelines.fanout.shards import parse_shard
from feedctl.pipelines.ranking.nightly import RankReport, run_rank
from feedctl.rank.heuristic import load_heuristic


class RunGuard:
    """Tells a run when to stop: its time is up, or `stop` was set (SIGTERM, Ctrl-C).

    It is the run's Progress: each advance checks the time and sets `stop` once it is up.
    """

    def __init__(self, timeout_seconds: float, stop: threading.Event) -> None:
        self.deadline = time.monotonic() + timeout_seconds
        self.stop = stop
        self.timed_out = False

    def due(self) -> bool:
        """True once the run should stop; sets `stop` when the time is up."""
        if not self.stop.is_set() and time.monotonic() >= self.deadline:
            self.timed_out = True
            self.stop.set()
        return self.stop.is_set()

    def phase(self, name: str, total: int | None = None) -> None:
        pass

    def advance(self, done: int) -> None:
        self.due()

    def status(self, text: str) -> None:
        pass


Runner = Callable[[Context, Mapping[str, Any], RunGuard], Any]


@dataclasses.dataclass(frozen=True)
class JobCommand:
    options: frozenset[str]  # the CLI command's parameters a job may set
    run: Runner | None  # None: this version of feedctl does not have the command yet
    missing_reason: str = ""


def _fanout(ctx: Context, options: Mapping[str, Any], guard: RunGuard) -> FanoutReport:
    return run_fanout(
        ctx,
        consumer=options.get("consumer", DEFAULT_CONSUMER),
        max_events=options.get("max_events"),
        batch_size=options.get("batch_size"),
        progress=guard,
        stop=guard.stop,
        shard=parse_shard(options.get("shard", "0/1")),
    )


def _rank(ctx: Context, options: Mapping[str, Any], guard: RunGuard) -> RankReport:
    if options.get("heuristic") is not None:
        ctx.heuristic = load_heuristic(Path(options["heuristic"]).expanduser())
    everything = options.get("everything", False)
    return run_rank(ctx, everything=everything, progress=guard, stop=guard.stop)


def _warm(ctx: Context, options: Mapping[str, Any], guard: RunGuard) -> cache_writes.CacheReport:
    window = parse_duration(options.get("active_since") or f"{ctx.settings.active_window_days}d")
    targets = cache_warm.active_users(ctx, window)
    return cache_warm.warm(
        ctx,
        "user",
        targets.ids,
        force=options.get("force", False),
        progress=guard,
        stop=guard.stop,
        total=targets.total,
    )


def _repair(ctx: Context, options: Mapping[str, Any], guard: RunGuard) -> cache_writes.CacheReport:
    return cache_repair.repair(ctx, progress=guard, stop=guard.stop)


def _verify(ctx: Context, options: Mapping[str, Any], guard: RunGuard) -> cache_verify.VerifyReport:
    return cache_verify.verify(
        ctx,
        options.get("sample", cache_verify.DEFAULT_SAMPLE),
        mark=options.get("mark", False),
        progress=guard,
        stop=guard.stop,
    )


def _expire(ctx: Context, options: Mapping[str, Any], guard: RunGuard) -> ExpireReport:
    chunk = options.get("chunk_posts", DEFAULT_CHUNK_POSTS)
    return expire(ctx, chunk_posts=chunk, progress=guard, stop=guard.stop)


def _vacuum(ctx: Context, options: Mapping[str, Any], guard: RunGuard) -> cache_vacuum.VacuumReport:
    window = parse_duration(options.get("inactive_for") or f"{ctx.settings.active_window_days}d")
    return cache_vacuum.vacuum(ctx, window, progress=guard, stop=guard.stop)


COMMANDS: dict[str, JobCommand] = {
    "fanout": JobCommand(frozenset({"max_events", "batch_size", "consumer", "shard"}), run=_fanout),
    "rank": JobCommand(frozenset({"everything", "heuristic"}), run=_rank),
    "cache warm": JobCommand(frozenset({"active_since", "force"}), run=_warm),
    "cache repair": JobCommand(frozenset(), run=_repair),
    "cache verify": JobCommand(frozenset({"sample", "mark"}), run=_verify),
    "cache vacuum": JobCommand(frozenset({"inactive_for"}), run=_vacuum),
    "expire": JobCommand(frozenset({"chunk_posts"}), run=_expire),
}
