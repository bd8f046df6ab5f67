"""Turning failures of the servers' client libraries into FeedctlErrors.

The CLI never imports psycopg or redis; it asks this module what an exception means.
"""

from __future__ import annotations

import sys

from feedctl.errors import FeedctlError, ServiceUnavailableError


def as_feedctl_error(exc: BaseException) -> FeedctlError | None:
    """A FeedctlError for a known server failure, or None for a genuine bug."""
    if isinstance(exc, FeedctlError):
        return exc
    # An exception of psycopg or redis means its library is imported already: only then are
    # they looked at, so a command that never reaches a server never imports them.
    if "psycopg" in sys.modules:
        error = _postgres_error(exc)
        if error is not None:
            return error
    if "redis" in sys.modules:
        return _redis_error(exc)
    return None


def _postgres_error(exc: BaseException) -> FeedctlError | None:
    import psycopg
    import psycopg.errors

    if isinstance(exc, psycopg.errors.UndefinedTable | psycopg.errors.UndefinedColumn):
        return FeedctlError(
            f"the database schema is missing or old ({exc.diag.message_primary}): "
            "run `feedctl migrate up`"
        )
    if isinstance(exc, psycopg.OperationalError):
        return ServiceUnavailableError(f"PostgreSQL failed: {_first_line(exc)}")
    if isinstance(exc, psycopg.Error):
        return FeedctlError(f"PostgreSQL refused a statement: {_first_line(exc)}")
    return None


def _redis_error(exc: BaseException) -> FeedctlError | None:
    import redis
    from redis.exceptions import ClusterDownError, RedisClusterException

    # RedisClusterException (no reachable node, a slot no node serves) is not a RedisError.
    unreachable = redis.ConnectionError | redis.TimeoutError | ClusterDownError
    if isinstance(exc, unreachable | RedisClusterException):
        return ServiceUnavailableError(f"Redis failed: {_first_line(exc)}")
    if isinstance(exc, redis.RedisError):
        return FeedctlError(f"Redis refused a command: {_first_line(exc)}")
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
