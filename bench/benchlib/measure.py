"""Small measuring helpers: memory, server facts, checkpoints, rates and ratios."""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import redis

_SETTINGS = (
    "fsync",
    "synchronous_commit",
    "shared_buffers",
    "max_wal_size",
    "work_mem",
    "maintenance_work_mem",
)


def peak_rss_mb() -> float:
    """The process's peak resident set so far (ru_maxrss is in KB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    """The process's resident set right now."""
    with open("/proc/self/statm") as handle:
        resident_pages = int(handle.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) so a later peak belongs to what follows.

    Writing 5 to /proc/self/clear_refs does it (Linux 4.0+); False when not possible.
    ru_maxrss follows it too unless a thread of this process has exited since.
    """
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


def hwm_rss_mb() -> float | None:
    """VmHWM, the peak resident set since start or since `reset_peak_rss`."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def postgres_facts(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """Server version and the settings that decide write throughput."""
    facts: dict[str, str] = {}
    for name in ("server_version", *_SETTINGS):
        row = conn.execute("SELECT current_setting(%s)", (name,)).fetchone()
        facts[name] = str(row[0]) if row else "?"
    return facts


def redis_facts(client: redis.Redis) -> dict[str, str]:
    info = client.info("server")
    return {"version": str(info.get("redis_version", "?"))}


def checkpoint(conn: psycopg.Connection[Any]) -> bool:
    """Flush dirty buffers before a timed write, so no phase pays for another's WAL.

    Needs superuser (or pg_checkpoint); returns False when it is not allowed.
    """
    try:
        conn.execute("CHECKPOINT")
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True


@contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    """`with stopwatch() as elapsed:` ... `elapsed()` is the seconds inside the block."""
    started = time.perf_counter()
    ended: list[float] = []

    def elapsed() -> float:
        return (ended[0] if ended else time.perf_counter()) - started

    try:
        yield elapsed
    finally:
        ended.append(time.perf_counter())


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def ratio(value: float, limit: float) -> float:
    return value / limit if limit > 0 else float("nan")


def verdict(passed: bool) -> str:
    return "PASS" if passed else "MISS"
