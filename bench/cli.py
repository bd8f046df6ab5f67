"""Benchmark: how long a `feedctl` command takes from the shell, against this machine's own
floor measured in the same run.

    .venv/bin/python bench/cli.py [--runs N] [--json]

1. The floor: `python -c pass` (a bare interpreter) and `python -c "import typer"` (the
   interpreter and the CLI framework), --runs times each; and, for the feed read, what it
   cannot do without: `python -c "import typer, psycopg, redis"`.
2. `feedctl --version`, --runs times: start-up alone (imports and the command tree).
3. `feedctl --database-url URL --redis-url URL feed user ID`, --runs times, against a small
   world of its own: a fresh database migrated with `feedctl migrate up`, seeded with
   `feedctl seed` (small numbers) and fanned out with `feedctl fanout`; the user is the one
   with the longest feed. One untimed run first checks the page (and fills the cached feed
   if it was cold), so the timed runs read a cached page, as most reads do; whether the
   feed was cached before that run and after the timed ones is printed.

Every figure is the wall time of a whole child process (fork, exec, imports, work, exit),
printed as the median, p90 and min; each feedctl median is also printed as a ratio to both
floors. The children run without PYTHONDONTWRITEBYTECODE, so the untimed run caches the
bytecode of an editable install, as pip does when it installs the package; without that,
every run would compile feedctl's own modules again. Targets print PASS or MISS; the exit
code is 0 either way, and non-zero only when a command fails or a server cannot be used.

feedctl is the installed console script beside this interpreter (`.venv/bin/feedctl`), or
`python -m feedctl` when there is none. Servers: FEEDCTL_BENCH_DATABASE_URL /
FEEDCTL_BENCH_REDIS_URL (admin URLs: a private database and key prefix are created and
removed), else private embedded servers in a temporary folder, stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import psycopg
import redis
from benchlib.measure import verdict
from benchlib.servers import BenchTarget, bench_target, note

from feedctl.cache.keys import user_feed

RUNS: Final = 20
VERSION_TARGET: Final = 0.25  # seconds, median of `feedctl --version`
FEED_TARGET: Final = 0.5  # seconds, median of `feedctl feed user ID`
SEED_ARGS: Final = ("--users", "200", "--communities", "8", "--posts", "1000", "--seed", "7")
COMMAND_TIMEOUT: Final = 300  # seconds for one untimed set-up command


class BenchFailure(Exception):
    """A command failed: the benchmark exits non-zero."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=RUNS, help="timed runs of each command")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def feedctl_command() -> list[str]:
    """The console script installed beside this interpreter, else `python -m feedctl`."""
    script = Path(sys.executable).parent / "feedctl"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "feedctl"]


def child_environment(home: Path, prefix: str | None = None) -> dict[str, str]:
    """This environment without a developer's FEEDCTL_* settings, with a private home, and
    with bytecode cached as in an installed package (PYTHONDONTWRITEBYTECODE left out)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("FEEDCTL_") and k != "PYTHONDONTWRITEBYTECODE"
    }
    env["FEEDCTL_HOME"] = str(home)
    if prefix is not None:
        env["FEEDCTL_REDIS_KEY_PREFIX"] = prefix
    return env


# -------------------------------------------------------------------------------- timing


@dataclasses.dataclass(frozen=True)
class Timing:
    label: str
    samples: list[float]  # seconds of wall time, one per run

    def quantile(self, q: float) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def p90(self) -> float:
        return self.quantile(0.90)

    @property
    def min(self) -> float:
        return min(self.samples)

    def summary(self) -> dict[str, float]:
        return {"median": self.median, "p90": self.p90, "min": self.min}


def run_once(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Wall time of one child process and its stdout; a non-zero exit is a failure."""
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise BenchFailure(
            f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()[-2000:]}"
        )
    return seconds, done.stdout


def time_runs(label: str, argv: list[str], env: dict[str, str], runs: int) -> Timing:
    """One untimed run (file caches, bytecode), then `runs` timed ones."""
    run_once(argv, env)
    return Timing(label, [run_once(argv, env)[0] for _ in range(runs)])


# --------------------------------------------------------------------------------- world


def set_up_world(feedctl: list[str], servers: list[str], env: dict[str, str]) -> int:
    """Migrate, seed and fan out through the CLI; the user with the longest feed."""
    for step in (["migrate", "up"], ["seed", *SEED_ARGS], ["fanout"]):
        note(f"feedctl {' '.join(step)} ...")
        argv = [*feedctl, *servers, "--json", *step]
        done = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
        )
        if done.returncode != 0:
            raise BenchFailure(
                f"feedctl {' '.join(step)} exited {done.returncode}: {done.stderr[-2000:]}"
            )
    return longest_feed_user(servers[1])


def longest_feed_user(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT user_id FROM feed_entry GROUP BY user_id ORDER BY count(*) DESC, user_id "
            "LIMIT 1"
        ).fetchone()
    if row is None:
        raise BenchFailure("fan-out wrote no feed entries: no user has a feed")
    return int(row[0])


def check_page(feedctl: list[str], servers: list[str], env: dict[str, str], user: int) -> None:
    """Read the page once (untimed, with --json): it must hold items."""
    _, out = run_once([*feedctl, *servers, "--json", "feed", "user", str(user)], env)
    page: dict[str, Any] = json.loads(out)
    if not page.get("items"):
        raise BenchFailure(f"feed user {user} returned no items: {out[:500]}")


def is_cached(target: BenchTarget, user: int) -> bool:
    client = redis.Redis.from_url(target.redis_url)
    try:
        return bool(client.exists(user_feed(user).key(target.prefix)))
    finally:
        client.close()


# ------------------------------------------------------------------------------- report


def run(args: argparse.Namespace) -> dict[str, Any]:
    feedctl = feedctl_command()
    with bench_target() as target:
        home = target.workdir / "home"
        bare = child_environment(home)
        note(f"timing the floor and feedctl --version ({args.runs} runs each) ...")
        floor = time_runs("python -c pass", [sys.executable, "-c", "pass"], bare, args.runs)
        typer_floor = time_runs(
            'python -c "import typer"', [sys.executable, "-c", "import typer"], bare, args.runs
        )
        clients_floor = time_runs(
            'python -c "import typer, psycopg, redis"',
            [sys.executable, "-c", "import typer, psycopg, redis"],
            bare,
            args.runs,
        )
        version = time_runs("feedctl --version", [*feedctl, "--version"], bare, args.runs)
        feed, user, sources = time_feed(feedctl, target, args.runs)
    return {
        "feedctl": feedctl,
        "servers": {"postgres": target.postgres_source, "redis": target.redis_source},
        "floor": floor,
        "typer_floor": typer_floor,
        "clients_floor": clients_floor,
        "version": version,
        "feed": feed,
        "user": user,
        "sources": sources,
    }


def time_feed(
    feedctl: list[str], target: BenchTarget, runs: int
) -> tuple[Timing, int, tuple[bool, bool]]:
    env = child_environment(target.workdir / "home", target.prefix)
    servers = ["--database-url", target.database_url, "--redis-url", target.redis_url]
    user = set_up_world(feedctl, servers, env)
    cached_before = is_cached(target, user)
    check_page(feedctl, servers, env, user)
    note(f"timing feedctl feed user {user} ({runs} runs) ...")
    argv = [*feedctl, *servers, "feed", "user", str(user)]
    timing = time_runs(f"feedctl feed user {user}", argv, env, runs)
    return timing, user, (cached_before, is_cached(target, user))


def print_report(result: dict[str, Any], runs: int) -> dict[str, Any]:
    floor: Timing = result["floor"]
    typer_floor: Timing = result["typer_floor"]
    clients_floor: Timing = result["clients_floor"]
    servers = result["servers"]
    print("feedctl CLI start-up benchmark")
    print(
        f"  {' '.join(result['feedctl'])}; Python {sys.version.split()[0]}, {os.cpu_count()} "
        f"cores; PostgreSQL {servers['postgres']}, Redis {servers['redis']}; wall time of "
        f"{runs} runs each (after one untimed run; bytecode cached)"
    )
    summary: dict[str, Any] = {}
    for timing in (floor, typer_floor, clients_floor):
        print(f"  floor, {timing.label}: {_figures(timing)}")
        summary[timing.label] = timing.summary()
    targets = ((result["version"], VERSION_TARGET), (result["feed"], FEED_TARGET))
    for timing, target in targets:
        print(
            f"  {timing.label}: {_figures(timing)} (target median < {target:g} s)  "
            f"{verdict(timing.median < target)}"
        )
        print(
            f"    median / python -c pass = {timing.median / floor.median:.1f}x, "
            f'median / python -c "import typer" = {timing.median / typer_floor.median:.1f}x'
        )
        summary[timing.label] = {
            **timing.summary(),
            "target": target,
            "ratio_to_bare_python": timing.median / floor.median,
            "ratio_to_import_typer": timing.median / typer_floor.median,
        }
    feed: Timing = result["feed"]
    summary[feed.label]["ratio_to_import_clients"] = feed.median / clients_floor.median
    print(
        f'    median / python -c "import typer, psycopg, redis" = '
        f"{feed.median / clients_floor.median:.1f}x"
    )
    before, after = (_cached(c) for c in result["sources"])
    print(
        f"    the feed of user {result['user']}: {before} before the untimed first read, "
        f"{after} after the timed runs"
    )
    return summary


def _cached(cached: bool) -> str:
    return "cached" if cached else "not cached"


def _figures(timing: Timing) -> str:
    return f"median {timing.median:.3f} s, p90 {timing.p90:.3f} s, min {timing.min:.3f} s"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = run(args)
    except (BenchFailure, subprocess.TimeoutExpired) as failure:
        print(f"benchmark failed: {failure}", file=sys.stderr)
        return 1
    if args.json:
        with contextlib.redirect_stdout(sys.stderr):
            summary = print_report(result, args.runs)
        print(json.dumps(summary))
    else:
        print_report(result, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
