"""Opening a Redis client (one server or a Redis Cluster), with failures turned into clear errors.

`redis://` and `rediss://` name one server (redis-py's URL forms). `redis+cluster://` and
`rediss+cluster://` name a Redis Cluster by one or more of its nodes,
`redis+cluster://[user:password@]host:port[,host:port...]`: the client learns the rest of
the cluster from them, sends each key's command to the primary holding its slot, and splits
pipelines per node (redis-py's RedisCluster).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException

from feedctl.errors import ConfigError, ServiceUnavailableError

# Typed as the single-server client: every command feedctl sends has the same signature on
# RedisCluster, and each one names at most one key (so it has one slot).
RedisClient = redis.Redis

# What a failed Redis call can raise: connection loss, time-outs, a server refusing writes,
# and a cluster that cannot be reached or has a slot no node serves.
REDIS_ERRORS: tuple[type[Exception], ...] = (redis.RedisError, RedisClusterException, OSError)

CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}  # scheme -> TLS
_TIMEOUTS: dict[str, Any] = {"socket_timeout": 5, "socket_connect_timeout": 3}


class RedisUnavailable(redis.ConnectionError):
    """Raised without asking Redis, for a server already seen failing (one of REDIS_ERRORS)."""


def is_cluster_url(url: str) -> bool:
    return url.partition("://")[0].lower() in CLUSTER_SCHEMES


def is_cluster(client: RedisClient) -> bool:
    """Whether a client from `connect_redis` talks to a Redis Cluster."""
    return isinstance(client, _ClusterOnDemand | RedisCluster)


def describe(url: str) -> str:
    """Where a URL points, without its credentials: `host:port` (every node for a cluster)."""
    if is_cluster_url(url):
        try:
            return ",".join(f"{host}:{port}" for host, port in parse_cluster_url(url)[0])
        except ConfigError:
            return "a Redis Cluster (malformed URL)"
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}"


def parse_cluster_url(url: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """The nodes a cluster URL names and the client options it sets (credentials, TLS)."""
    scheme, _, rest = url.partition("://")
    if scheme.lower() not in CLUSTER_SCHEMES:
        raise ConfigError(f"not a Redis Cluster URL: {scheme}://...")
    netloc, _, tail = rest.partition("/")
    if "?" in netloc:
        netloc, _, query = netloc.partition("?")
        tail = "?" + query
    if tail.strip("/") not in ("", "0"):
        raise ConfigError(
            "Redis Cluster URL: a cluster has only database 0 and this URL takes no options"
        )
    options: dict[str, Any] = {}
    if CLUSTER_SCHEMES[scheme.lower()]:
        options["ssl"] = True
    userinfo, at, hosts = netloc.rpartition("@")
    if at:
        user, colon, password = userinfo.partition(":")
        if user:
            options["username"] = unquote(user)
        if colon:
            options["password"] = unquote(password)
    nodes = []
    for item in hosts.split(","):
        host, colon, port = item.strip().rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"Redis Cluster URL: expected host:port, got {item.strip()!r}")
        nodes.append((host.strip("[]"), int(port)))
    return nodes, options


class _ClusterOnDemand:
    """A RedisCluster made at its first use, as a single-server client connects at its first
    command: a cluster that is down when a run starts is then one more Redis failure (the
    run goes on from PostgreSQL), not a run that cannot start. A failed start is tried again
    at the next use."""

    def __init__(self, make: Callable[[], RedisCluster]) -> None:
        self._make = make
        self._client: RedisCluster | None = None
        self._lock = threading.Lock()

    def _cluster(self) -> RedisCluster:
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._make()
                client = self._client
        return client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cluster(), name)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def _cluster_client(url: str, extra: Mapping[str, Any]) -> RedisClient:
    nodes, options = parse_cluster_url(url)
    chosen = {**options, **_TIMEOUTS, **extra}

    def make() -> RedisCluster:
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in nodes],  # type: ignore[no-untyped-call]
            **chosen,
        )

    return cast(RedisClient, _ClusterOnDemand(make))


def connect_redis(
    url: str, *, check: bool = True, options: Mapping[str, Any] | None = None
) -> RedisClient:
    """A client for `url`; with `check`, PING it and fail clearly when it does not answer.

    `options` are client options over the defaults (time-outs, retry), for either kind."""
    extra = dict(options or {})
    try:
        if is_cluster_url(url):
            client = _cluster_client(url, extra)
        else:
            client = redis.Redis.from_url(url, **{**_TIMEOUTS, **extra})
    except ValueError as exc:
        raise ConfigError(f"Redis URL is malformed: {exc}") from None
    if check:
        try:
            client.ping()
        except REDIS_ERRORS as exc:
            raise ServiceUnavailableError(f"cannot reach Redis at {describe(url)}: {exc}") from exc
    return client
