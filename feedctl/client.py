"""`feedctl.Client` and `feedctl.AsyncClient`: what an app server opens once, at start-up.

Each client opens a PostgreSQL connection pool (psycopg-pool) and a Redis connection pool
(redis-py) when it is made, and closes them in `close()` (or at the end of a `with` block).
Every call borrows one connection for its own duration, so one client serves many threads
(`Client`) or many tasks (`AsyncClient`) at once. There is no module-level state: two
clients are two independent sets of pools.

The reads are `FeedReader`'s (feedctl.read.pages), the rebuilds are the rebuild pipeline's
(feedctl.pipelines.cache.rebuild) and the repair marks are repair_marks': the client only
lends them a pooled connection. `AsyncClient` runs the same calls on a thread pool of its
own, sized like the connection pool, so a slow PostgreSQL never blocks the event loop
(docs/decisions/0035).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

import psycopg
import redis
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool
from redis.backoff import NoBackoff
from redis.retry import Retry

from feedctl.cache.client import (
    REDIS_ERRORS,
    RedisClient,
    connect_redis,
    is_cluster,
    is_cluster_url,
)
from feedctl.cache.feeds import FeedCache
from feedctl.cache.keys import KINDS, FeedKind, FeedRef, community_feed, user_feed
from feedctl.config import Settings, load_settings
from feedctl.context import Context, database_url, redis_url
from feedctl.db.connection import describe
from feedctl.db.sql_blocks import query
from feedctl.errors import BadInputError, ConfigError, ServiceUnavailableError
from feedctl.pipelines.cache import rebuild, repair_marks
from feedctl.pipelines.cache.rebuild import RebuildReport
from feedctl.progress import SILENT, Progress
from feedctl.rank.heuristic import Heuristic, load_heuristic
from feedctl.read.cache_state import CacheWatch
from feedctl.read.cursor_secret import cursor_secrets
from feedctl.read.pages import FeedItem, FeedPage, FeedReader

__all__ = [
    "AsyncClient",
    "Client",
    "FeedItem",
    "FeedKind",
    "FeedPage",
    "Readiness",
    "RebuildReport",
]

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_POOL_SIZE = 10
DEFAULT_TIMEOUT = 5.0  # seconds to wait for a PostgreSQL connection before giving up (503)
DEFAULT_REDIS_TIMEOUT = 1.0  # seconds a Redis call may take before the read goes to PostgreSQL


@dataclasses.dataclass(frozen=True)
class Readiness:
    """Whether each server answered a trivial request just now."""

    postgres: bool
    redis: bool

    @property
    def ready(self) -> bool:
        return self.postgres and self.redis


class Client:
    """Feed reads, rebuilds and repair marks over pools opened once.

    `settings` defaults to `load_settings()` (FEEDCTL_* variables, feedctl.toml);
    `database_url` and `redis_url` override theirs. With neither configured, the embedded
    servers are used, as by the CLI. Opening never waits for PostgreSQL: a server that is
    down makes the calls fail with ServiceUnavailableError until it is back.

    `on_redis_failure` is called (from any thread) for every Redis call that failed; reads
    still answer, from PostgreSQL.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        database_url: str | None = None,
        redis_url: str | None = None,
        pool_size: int = DEFAULT_POOL_SIZE,
        timeout: float = DEFAULT_TIMEOUT,
        redis_timeout: float = DEFAULT_REDIS_TIMEOUT,
        on_redis_failure: Callable[[], None] | None = None,
    ) -> None:
        if pool_size < 1:
            raise ConfigError(f"pool_size must be at least 1, got {pool_size}")
        chosen = settings or load_settings()
        if database_url or redis_url:
            chosen = dataclasses.replace(
                chosen,
                database_url=database_url or chosen.database_url,
                redis_url=redis_url or chosen.redis_url,
            )
        self.settings = chosen
        self.database_url = _resolve_url(chosen, "postgres")
        try:
            conninfo_to_dict(self.database_url)
        except psycopg.ProgrammingError as exc:
            raise ConfigError(f"database URL is malformed: {exc}") from None
        self._redis = _redis_client(_resolve_url(chosen, "redis"), redis_timeout, on_redis_failure)
        self.cache = FeedCache(self._redis, chosen.redis_key_prefix, chosen.feed_cap)
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            self.database_url,
            kwargs={"autocommit": True, "connect_timeout": max(1, int(timeout))},
            min_size=1,
            max_size=pool_size,
            timeout=timeout,
            open=False,
            name="feedctl",
        )
        self._pool.open(wait=False)
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] | None = None
        self._watch = CacheWatch(chosen.cache_state_ms / 1000)  # shared by every read
        self._heuristic: Heuristic | None = None
        self._closed = False

    # Reads

    def user_feed(self, user_id: int, limit: int = 20, cursor: str | None = None) -> FeedPage:
        """One page of a user's home feed (NotFoundError for an unknown user)."""
        return self.page(user_feed(user_id), limit, cursor)

    def community_feed(
        self, community_id: int, limit: int = 20, cursor: str | None = None
    ) -> FeedPage:
        """One page of a community's feed (NotFoundError for an unknown community)."""
        return self.page(community_feed(community_id), limit, cursor)

    def page(self, feed: FeedRef, limit: int = 20, cursor: str | None = None) -> FeedPage:
        """The first page of a feed (no cursor) or the page after `cursor`."""
        with self.connection() as conn:
            reader = FeedReader(
                conn,
                self.cache,
                self._cursor_secrets(conn),
                retention=self.settings.retention,
                watch=self._watch,
            )
            return reader.page(feed, limit, cursor)

    # Writes

    def rebuild_user(self, user_id: int) -> RebuildReport:
        """Recompute one user's feed in PostgreSQL and swap in its cached copy."""
        with self._context() as ctx:
            return rebuild.rebuild_user(ctx, user_id)

    def rebuild_community(self, community_id: int) -> RebuildReport:
        """Recompute every member's feed, then swap in the community's cached feed."""
        with self._context() as ctx:
            return rebuild.rebuild_community(ctx, community_id)

    def rebuild_all(
        self,
        *,
        resume: bool = False,
        progress: Progress = SILENT,
        stop: threading.Event | None = None,
    ) -> RebuildReport:
        """`feedctl rebuild --all [--resume]`: every user's feed, progress recorded after each
        chunk. It runs on a connection of its own (it holds the run's lock throughout), so it
        never takes a pooled connection from the reads; `stop` ends it between chunks."""
        conn = self._connect_alone()
        try:
            ctx = self._context_on(conn)
            return rebuild.rebuild_all(ctx, resume=resume, progress=progress, stop=stop)
        finally:
            conn.close()

    def mark_for_repair(
        self, kind: FeedKind, ids: Sequence[int], reason: str = "marked by the app"
    ) -> None:
        """Mark feeds whose cached copy the app knows to be wrong: `feedctl cache repair`
        (or the nightly job) rewrites them from PostgreSQL."""
        if kind not in KINDS:
            raise BadInputError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        feeds = [FeedRef(kind, int(i)) for i in ids]
        with self.connection() as conn:
            repair_marks.mark_feeds(conn, feeds, reason)

    # Health

    def readiness(self) -> Readiness:
        """Whether PostgreSQL and Redis answer now (never raises)."""
        try:
            with self.connection() as conn:
                conn.execute(query("ping")).fetchone()
            postgres = True
        except ServiceUnavailableError:
            postgres = False
        try:
            redis_ok = bool(self._redis.ping())
        except REDIS_ERRORS:
            redis_ok = False
        return Readiness(postgres=postgres, redis=redis_ok)

    # Lifetime

    def close(self) -> None:
        """Close both pools (waiting for borrowed connections to come back)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._pool.close()
        self._redis.close()
        if not is_cluster(self._redis):  # its own pool, given to it by no one else
            self._redis.connection_pool.disconnect()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Internals

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled autocommit connection; PostgreSQL being unreachable (no connection within
        the timeout, or a connection lost mid-call) is ServiceUnavailableError."""
        try:
            with self._pool.connection() as conn:
                yield conn
        except psycopg.OperationalError as exc:
            raise ServiceUnavailableError(
                f"PostgreSQL at {describe(self.database_url)} failed: {_first_line(exc)}"
            ) from exc

    def _connect_alone(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(self.database_url, autocommit=True, connect_timeout=5)
        except psycopg.OperationalError as exc:
            raise ServiceUnavailableError(
                f"cannot reach PostgreSQL at {describe(self.database_url)}: {_first_line(exc)}"
            ) from exc

    def _cursor_secrets(self, conn: psycopg.Connection[Any]) -> tuple[str, ...]:
        secrets = self._secrets
        if secrets is None:
            secrets = cursor_secrets(conn, self.settings.cursor_secret)
            self._secrets = secrets  # the same value from any thread: a race is harmless
        return secrets

    @contextlib.contextmanager
    def _context(self) -> Iterator[Context]:
        with self.connection() as conn:
            yield self._context_on(conn)

    def _context_on(self, conn: psycopg.Connection[Any]) -> Context:
        if self._heuristic is None:
            self._heuristic = load_heuristic(self.settings.heuristic)
        return Context(
            settings=self.settings,
            conn=conn,
            redis=self._redis,
            cache=self.cache,
            heuristic=self._heuristic,
            database_url=self.database_url,
        )


class AsyncClient:
    """`Client` for asyncio: the same calls, awaited.

    Each call runs the synchronous client on a thread pool of this client's own (as many
    threads as pooled connections), so the event loop never waits on a socket.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        database_url: str | None = None,
        redis_url: str | None = None,
        pool_size: int = DEFAULT_POOL_SIZE,
        timeout: float = DEFAULT_TIMEOUT,
        redis_timeout: float = DEFAULT_REDIS_TIMEOUT,
        on_redis_failure: Callable[[], None] | None = None,
    ) -> None:
        self.sync = Client(
            settings,
            database_url=database_url,
            redis_url=redis_url,
            pool_size=pool_size,
            timeout=timeout,
            redis_timeout=redis_timeout,
            on_redis_failure=on_redis_failure,
        )
        self.settings = self.sync.settings
        self._threads = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="feedctl")

    async def _run(self, call: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, functools.partial(call, *args, **kwargs))

    async def user_feed(self, user_id: int, limit: int = 20, cursor: str | None = None) -> FeedPage:
        return await self._run(self.sync.user_feed, user_id, limit, cursor)

    async def community_feed(
        self, community_id: int, limit: int = 20, cursor: str | None = None
    ) -> FeedPage:
        return await self._run(self.sync.community_feed, community_id, limit, cursor)

    async def page(self, feed: FeedRef, limit: int = 20, cursor: str | None = None) -> FeedPage:
        return await self._run(self.sync.page, feed, limit, cursor)

    async def rebuild_user(self, user_id: int) -> RebuildReport:
        return await self._run(self.sync.rebuild_user, user_id)

    async def rebuild_community(self, community_id: int) -> RebuildReport:
        return await self._run(self.sync.rebuild_community, community_id)

    async def rebuild_all(
        self,
        *,
        resume: bool = False,
        progress: Progress = SILENT,
        stop: threading.Event | None = None,
    ) -> RebuildReport:
        """Every feed; it holds one of this client's threads until it ends (or `stop`)."""
        return await self._run(self.sync.rebuild_all, resume=resume, progress=progress, stop=stop)

    async def mark_for_repair(
        self, kind: FeedKind, ids: Sequence[int], reason: str = "marked by the app"
    ) -> None:
        await self._run(self.sync.mark_for_repair, kind, ids, reason)

    async def readiness(self) -> Readiness:
        return await self._run(self.sync.readiness)

    async def close(self) -> None:
        """Wait for the calls under way, then close the pools."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._shut)

    def _shut(self) -> None:
        self._threads.shutdown(wait=True)
        self.sync.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _resolve_url(settings: Settings, server: str) -> str:
    return database_url(settings) if server == "postgres" else redis_url(settings)


def _redis_client(url: str, timeout: float, on_failure: Callable[[], None] | None) -> RedisClient:
    """A client (one server or a Redis Cluster, as `connect_redis` reads the URL) whose
    calls fail fast, so that a failed read goes to PostgreSQL at once.

    Either kind: one retry without back-off. One server: each failed call is reported to
    `on_failure` (by the pool's connection class). A cluster client makes its nodes'
    connections itself, so its failures are not reported."""
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 1),
    }
    client = connect_redis(url, check=False, options=options)
    if on_failure is not None and not is_cluster_url(url):
        pool = client.connection_pool
        pool.connection_class = _counting(pool.connection_class, on_failure)
    return client


_FAILURES = (redis.ConnectionError, redis.TimeoutError, OSError)


def _counting(base: type[Any], on_failure: Callable[[], None]) -> type[Any]:
    """A subclass of a redis-py connection class that reports each failed call once (a
    failed connect inside a send is one failure; an error reply is an answer, not one)."""

    def _report(exc: BaseException) -> None:
        if not getattr(exc, "_feedctl_reported", False):
            exc._feedctl_reported = True  # type: ignore[attr-defined]
            on_failure()

    def counted(name: str) -> Callable[..., Any]:
        inherited = getattr(base, name)

        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return inherited(self, *args, **kwargs)
            except _FAILURES as exc:
                _report(exc)
                raise

        return call

    methods = {name: counted(name) for name in ("connect", "send_packed_command", "read_response")}
    Counting = type(f"Counting{base.__name__}", (base,), methods)
    return Counting


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__
