"""Opening a Redis client, with failures turned into clear errors."""

from __future__ import annotations

from urllib.parse import urlsplit

import redis

from feedctl.errors import ConfigError, ServiceUnavailableError

RedisClient = redis.Redis

# What a failed Redis call can raise: connection loss, time-outs, a server refusing writes.
REDIS_ERRORS: tuple[type[Exception], ...] = (redis.RedisError, OSError)


class RedisUnavailable(redis.ConnectionError):
    """Raised without asking Redis, for a server already seen failing (one of REDIS_ERRORS)."""


def describe(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}"


def connect_redis(url: str, *, check: bool = True) -> RedisClient:
    """A client for `url`; with `check`, PING it and fail clearly when it does not answer."""
    try:
        client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=3)
    except ValueError as exc:
        raise ConfigError(f"Redis URL is malformed: {exc}") from None
    if check:
        try:
            client.ping()
        except REDIS_ERRORS as exc:
            raise ServiceUnavailableError(f"cannot reach Redis at {describe(url)}: {exc}") from exc
    return client
