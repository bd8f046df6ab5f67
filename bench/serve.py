"""Benchmark: `feedctl serve` under load on loopback, against the library's own page latency
measured in the same run.

    .venv/bin/python bench/serve.py [--requests N] [--seconds S] [--workers W] [--json]

1. A private world: a fresh database migrated and seeded (feedctl.synth: --users users, a few
   hundred entries per feed), fanned out, and every sampled user's feed cached.
2. The library: --requests cached first pages of 20 and as many next pages (each with the
   cursor of that user's first page), one at a time through `feedctl.Client`, as an app
   server would call it: p50 and p99.
3. The server: `feedctl serve --workers W` on 127.0.0.1 (a free port), and a load generator in
   this process (asyncio, one keep-alive HTTP/1.1 connection per concurrent client, a minimal
   parser so that it costs little CPU). For concurrency 1, 16 and 64 and for first and next
   pages: up to --requests requests or --seconds seconds, whichever comes first; requests/s,
   p50 and p99 as the client sees them. Every response must be 200.
4. The HTTP overhead: each HTTP p99 over the library's p99 for the same kind of page; and
   the CPU time the server's processes spent per request (user + system, the library's
   work included), which bounds what one core can serve whatever else runs.

Target: at concurrency 16, at least 1,000 requests/s with p99 <= 10 ms (first pages). The load
generator shares the machine's cores with the server, PostgreSQL and Redis, so the figures
are a floor for a server measured from another host. Targets print PASS or MISS; the exit
code is 0 either way, and non-zero only when a response is wrong or a server cannot be used.

Servers: FEEDCTL_BENCH_DATABASE_URL / FEEDCTL_BENCH_REDIS_URL (admin URLs: a private
database and key prefix are created and removed), else private embedded servers in a
temporary folder, stopped at the end. Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import httpx
import numpy as np
import psutil
from benchlib.measure import verdict
from benchlib.servers import BenchTarget, bench_target, note

import feedctl
from feedctl.config import Settings
from feedctl.context import open_context
from feedctl.db.migrations import upgrade
from feedctl.pipelines.cache import warm as cache_warm
from feedctl.pipelines.fanout.run import measure_lag, run_fanout
from feedctl.synth import SeedSpec, seed

PAGE: Final = 20
CONCURRENCY: Final = (1, 16, 64)
TARGET_RPS: Final = 1_000.0
TARGET_P99_MS: Final = 10.0
SAMPLED_USERS: Final = 500
HOST: Final = "127.0.0.1"


class BenchFailure(Exception):
    """A response was wrong or a server could not be used."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3_000, help="per measurement")
    parser.add_argument("--seconds", type=float, default=15.0, help="per measurement")
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        with bench_target() as target:
            results = run(target, args)
    except BenchFailure as exc:
        print(f"bench/serve.py: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        report(results)
    return 0


def run(target: BenchTarget, args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings(
        database_url=target.database_url,
        redis_url=target.redis_url,
        redis_key_prefix=target.prefix,
        home=target.workdir / "home",
        feed_retention="0",
    )
    users = build_world(settings, args.users)
    results: dict[str, Any] = {
        "machine": {"cores": os.cpu_count(), "workers": args.workers},
        "postgres": target.postgres_source,
        "redis": target.redis_source,
        "users": len(users),
    }
    with feedctl.Client(settings, pool_size=4) as client:
        cursors = {u: client.user_feed(u, PAGE).next_cursor for u in users}
        paged = [u for u in users if cursors[u]]
        if not paged:
            raise BenchFailure("no sampled feed has a second page")
        results["library"] = {
            "first": library_latency(client, users, args.requests, None),
            "next": library_latency(client, paged, args.requests, cursors),
        }
    with serving(settings, target.workdir, args.workers) as (port, pid):
        http: dict[str, Any] = {}
        for kind in ("first", "next"):
            chosen = users if kind == "first" else paged
            for concurrency in CONCURRENCY:
                paths = [path_of(u, cursors[u] if kind == "next" else None) for u in chosen]
                cpu_before = server_cpu_seconds(pid)
                figures = asyncio.run(load(port, paths, concurrency, args.requests, args.seconds))
                figures["server_cpu_ms_per_request"] = (
                    1000 * (server_cpu_seconds(pid) - cpu_before) / figures["requests"]
                )
                http[f"{kind}@{concurrency}"] = figures
                note(
                    f"{kind} pages, concurrency {concurrency}: {figures['rps']:.0f} req/s, "
                    f"p50 {figures['p50_ms']:.2f} ms, p99 {figures['p99_ms']:.2f} ms"
                )
        results["http"] = http
    for key, figures in results["http"].items():
        kind = key.split("@")[0]
        figures["p99_over_library_p99"] = figures["p99_ms"] / results["library"][kind]["p99_ms"]
    at16 = results["http"]["first@16"]
    results["target"] = {
        "rps": TARGET_RPS,
        "p99_ms": TARGET_P99_MS,
        "passed": at16["rps"] >= TARGET_RPS and at16["p99_ms"] <= TARGET_P99_MS,
    }
    return results


def build_world(settings: Settings, users: int) -> list[int]:
    """Seed, fan out and cache; the sampled users (those with a feed)."""
    spec = SeedSpec(
        users=users,
        communities=max(4, users // 50),
        posts=users * 2,
        days=7,
        seed=3,
        now=datetime.now(UTC).replace(microsecond=0),
    )
    note(f"seeding {users} users ...")
    with open_context(settings) as ctx:
        upgrade(ctx.conn)
        seed(ctx.conn, spec)
        deadline = time.monotonic() + 120
        run_fanout(ctx)
        while measure_lag(ctx)[0] > 0:
            if time.monotonic() > deadline:
                raise BenchFailure("events stayed behind a transaction open on the server")
            time.sleep(0.1)
            run_fanout(ctx)
        rows = ctx.conn.execute(
            "SELECT user_id FROM feed_entry GROUP BY user_id HAVING count(*) > %s",
            (PAGE,),
        ).fetchall()
        sampled = sorted(int(row[0]) for row in rows)
        random.Random(1).shuffle(sampled)
        sampled = sampled[:SAMPLED_USERS]
        cache_warm.warm(ctx, "user", sampled, force=True)
    if not sampled:
        raise BenchFailure("the seeded world has no feed longer than a page")
    return sampled


def library_latency(
    client: feedctl.Client, users: list[int], requests: int, cursors: dict[int, str | None] | None
) -> dict[str, float]:
    rng = random.Random(2)
    timings = []
    for _ in range(requests):
        user = rng.choice(users)
        cursor = cursors[user] if cursors else None
        started = time.perf_counter()
        page = client.user_feed(user, PAGE, cursor)
        timings.append(time.perf_counter() - started)
        if page.source != "cache":
            raise BenchFailure(f"user {user}'s page was not served from the cache")
    return summary(timings, sum(timings))


def path_of(user: int, cursor: str | None) -> str:
    query = f"limit={PAGE}" + (f"&cursor={cursor}" if cursor else "")
    return f"/v1/users/{user}/feed?{query}"


async def load(
    port: int, paths: list[str], concurrency: int, requests: int, seconds: float
) -> dict[str, float]:
    """`concurrency` keep-alive connections, each sending its next request when the last
    answered, until `requests` were sent or `seconds` passed."""
    timings: list[float] = []
    budget = {"left": requests}
    rng = random.Random(concurrency)
    deadline = time.perf_counter() + seconds

    async def one_connection() -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            while budget["left"] > 0 and time.perf_counter() < deadline:
                budget["left"] -= 1
                path = rng.choice(paths)
                request = f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
                started = time.perf_counter()
                writer.write(request)
                status, _ = await read_response(reader)
                timings.append(time.perf_counter() - started)
                if status != 200:
                    raise BenchFailure(f"GET {path} answered {status}")
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(one_connection() for _ in range(concurrency)))
    return summary(timings, time.perf_counter() - started)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


def server_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of the server process and its workers so far."""
    parent = psutil.Process(pid)
    total = 0.0
    for process in [parent, *parent.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def summary(timings: list[float], elapsed: float) -> dict[str, float]:
    values = np.array(timings) * 1000
    return {
        "requests": float(len(timings)),
        "rps": len(timings) / elapsed if elapsed > 0 else float("inf"),
        "p50_ms": float(np.percentile(values, 50)),
        "p99_ms": float(np.percentile(values, 99)),
    }


@contextlib.contextmanager
def serving(settings: Settings, workdir: Path, workers: int) -> Iterator[tuple[int, int]]:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port = int(sock.getsockname()[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEEDCTL_")}
    env.update(
        FEEDCTL_DATABASE_URL=str(settings.database_url),
        FEEDCTL_REDIS_URL=str(settings.redis_url),
        FEEDCTL_REDIS_KEY_PREFIX=settings.redis_key_prefix,
        FEEDCTL_FEED_RETENTION=settings.feed_retention,
        FEEDCTL_HOME=str(settings.home),
    )
    command = [sys.executable, "-m", "feedctl", "serve", "--host", HOST, "--port", str(port)]
    log = (workdir / "serve.log").open("wb")
    process = subprocess.Popen(
        [*command, "--workers", str(workers)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise BenchFailure(f"feedctl serve exited: see {workdir / 'serve.log'}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://{HOST}:{port}/readyz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise BenchFailure("feedctl serve did not become ready")
            time.sleep(0.2)
        yield port, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def report(results: dict[str, Any]) -> None:
    print(
        f"feedctl serve, {results['machine']['workers']} worker(s), "
        f"{results['machine']['cores']} cores shared with PostgreSQL, Redis and the load "
        f"generator; {results['users']} cached user feeds, pages of {PAGE}"
    )
    for kind in ("first", "next"):
        lib = results["library"][kind]
        print(
            f"library ({kind} pages, one at a time): p50 {lib['p50_ms']:.2f} ms, "
            f"p99 {lib['p99_ms']:.2f} ms, {lib['rps']:.0f} pages/s"
        )
    print(
        f"{'pages':<6} {'conc':>4} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'p99/lib p99':>12} "
        f"{'server CPU ms/req':>18}"
    )
    for key, figures in results["http"].items():
        kind, concurrency = key.split("@")
        print(
            f"{kind:<6} {concurrency:>4} {figures['rps']:>8.0f} {figures['p50_ms']:>8.2f} "
            f"{figures['p99_ms']:>8.2f} {figures['p99_over_library_p99']:>12.2f} "
            f"{figures['server_cpu_ms_per_request']:>18.2f}"
        )
    at16 = results["http"]["first@16"]
    print(
        f"target at concurrency 16: >= {TARGET_RPS:.0f} req/s with p99 <= {TARGET_P99_MS:.0f} ms: "
        f"{at16['rps']:.0f} req/s, p99 {at16['p99_ms']:.2f} ms "
        f"{verdict(results['target']['passed'])}"
    )


if __name__ == "__main__":
    sys.exit(main())
