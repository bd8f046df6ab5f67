"""Local PostgreSQL and Redis, started from pip-installed binaries (the `embedded` extra).

Used when no database or Redis URL is configured: the servers live under a home
directory, listen on 127.0.0.1 only, and are reused by later feedctl processes.

- `base`: what both servers share (ports, processes, commands, the `EmbeddedServer` class)
- `postgres`, `redis`: each server, how it is found, launched and stopped
- `home`: the servers of one feedctl home, as `feedctl services` and the context use them
"""

from __future__ import annotations

from feedctl.services.base import EMBEDDED_EXTRA, EmbeddedServer, ServiceStatus
from feedctl.services.home import (
    embedded_installed,
    ensure_postgres,
    ensure_redis,
    status,
    stop,
)
from feedctl.services.postgres import EmbeddedPostgres
from feedctl.services.redis import EmbeddedRedis

__all__ = [
    "EMBEDDED_EXTRA",
    "EmbeddedPostgres",
    "EmbeddedRedis",
    "EmbeddedServer",
    "ServiceStatus",
    "embedded_installed",
    "ensure_postgres",
    "ensure_redis",
    "status",
    "stop",
]
