"""Where a benchmark runs: a private database and Redis key prefix, removed afterwards.

With FEEDCTL_BENCH_DATABASE_URL / FEEDCTL_BENCH_REDIS_URL set (an admin URL), the
benchmark creates and drops its own database `feedctl_bench_<hex>` and deletes its own
Redis keys with SCAN. Otherwise it starts private embedded servers in a temporary
folder and stops them at the end. Only servers started here are stopped here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import redis
from psycopg import sql
from psycopg.conninfo import make_conninfo

from feedctl.services import EmbeddedPostgres, EmbeddedRedis

DATABASE_ENV = "FEEDCTL_BENCH_DATABASE_URL"
REDIS_ENV = "FEEDCTL_BENCH_REDIS_URL"
_DELETE_BATCH = 1_000


@dataclasses.dataclass(frozen=True)
class BenchTarget:
    """The private database and key prefix one benchmark run owns."""

    database_url: str
    redis_url: str
    prefix: str  # every Redis key the run writes starts with this
    postgres_source: str  # "embedded" (started by this run) or "external"
    redis_source: str
    workdir: Path  # a private temporary folder, removed at the end


def note(message: str) -> None:
    """A human note on stderr (stdout is for the results)."""
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def _embedded_postgres(workdir: Path) -> Iterator[str]:
    server = EmbeddedPostgres(workdir / "postgres")
    url = server.start()
    note(f"started a private PostgreSQL in {server.data_dir}")
    try:
        yield url
    finally:
        server.stop()


@contextlib.contextmanager
def _embedded_redis(workdir: Path) -> Iterator[str]:
    server = EmbeddedRedis(workdir / "redis")
    url = server.start()
    note(f"started a private Redis in {server.data_dir}")
    try:
        yield url
    finally:
        server.stop()


@contextlib.contextmanager
def _admin_postgres(workdir: Path) -> Iterator[str]:
    configured = os.environ.get(DATABASE_ENV)
    if configured:
        yield configured
        return
    with _embedded_postgres(workdir) as url:
        yield url


@contextlib.contextmanager
def _redis_server(workdir: Path) -> Iterator[str]:
    configured = os.environ.get(REDIS_ENV)
    if configured:
        yield configured
        return
    with _embedded_redis(workdir) as url:
        yield url


@contextlib.contextmanager
def _private_database(admin_url: str, name: str) -> Iterator[str]:
    """Create database `name`, yield its URL, drop it (even with connections left)."""
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(admin_url, dbname=name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            admin.execute(drop.format(sql.Identifier(name)))


def delete_keys(client: redis.Redis, prefix: str) -> int:
    """Delete every key under `prefix` with SCAN (never KEYS); return how many."""
    deleted = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{prefix}*", count=_DELETE_BATCH):
        batch.append(key)
        if len(batch) >= _DELETE_BATCH:
            deleted += int(client.unlink(*batch))
            batch.clear()
    if batch:
        deleted += int(client.unlink(*batch))
    return deleted


@contextlib.contextmanager
def _private_prefix(redis_url: str, prefix: str) -> Iterator[str]:
    try:
        yield prefix
    finally:
        client = redis.Redis.from_url(redis_url)
        try:
            delete_keys(client, prefix)
            # the keys kept beside a feed (its fence, its details) are named by the feed
            # key's hash tag: "{<feed key>}:fence"
            delete_keys(client, "{" + prefix)
        finally:
            client.close()


def _source(variable: str) -> str:
    return "external" if os.environ.get(variable) else "embedded"


@contextlib.contextmanager
def bench_target() -> Iterator[BenchTarget]:
    """Servers, a private database and a private key prefix for one benchmark run."""
    token = secrets.token_hex(4)
    with tempfile.TemporaryDirectory(prefix="feedctl-bench-") as tmp:
        workdir = Path(tmp)
        # Run as root, PostgreSQL runs as another account that must enter this folder:
        # open only this private folder for traversal (no listing), nothing above it.
        workdir.chmod(0o711)
        with contextlib.ExitStack() as stack:
            admin_url = stack.enter_context(_admin_postgres(workdir))
            redis_url = stack.enter_context(_redis_server(workdir))
            database_url = stack.enter_context(
                _private_database(admin_url, f"feedctl_bench_{token}")
            )
            prefix = stack.enter_context(_private_prefix(redis_url, f"feedctl_bench_{token}:"))
            yield BenchTarget(
                database_url=database_url,
                redis_url=redis_url,
                prefix=prefix,
                postgres_source=_source(DATABASE_ENV),
                redis_source=_source(REDIS_ENV),
                workdir=workdir,
            )
