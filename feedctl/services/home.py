"""The servers of one feedctl home: started once, reused by later processes, stopped on request.

Each server keeps a state file under home (`postgres.json`, `redis.json`: its port, pid and
data folder) so a later process starts it again on the same port; a lock file per server
keeps two processes from starting the same one at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from feedctl.services.base import EmbeddedServer, ServiceStatus
from feedctl.services.postgres import EmbeddedPostgres
from feedctl.services.redis import EmbeddedRedis

SERVERS: dict[str, type[EmbeddedServer]] = {"postgres": EmbeddedPostgres, "redis": EmbeddedRedis}


def embedded_installed(server: str) -> bool:
    """Whether the `embedded` extra is there for "postgres" or "redis" (nothing imported)."""
    return SERVERS[server].installed()


@contextlib.contextmanager
def _locked(home: Path, name: str) -> Iterator[None]:
    """Hold an exclusive lock so two processes never start the same server at once."""
    home.mkdir(parents=True, exist_ok=True)
    with (home / f".{name}.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _state_file(home: Path, name: str) -> Path:
    return home / f"{name}.json"


def _read_state(path: Path) -> dict[str, Any]:
    """The JSON state file, or an empty dict when missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_state(path: Path, state: dict[str, Any]) -> None:
    """Replace the state file atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, path)


def _server_at(home: Path, name: str) -> EmbeddedServer:
    """The home's server, on the port a previous run recorded if that port is free again."""
    port = _read_state(_state_file(home, name)).get("port")
    recorded = port if isinstance(port, int) and 0 < port < 65536 else None
    return SERVERS[name](home / name, port=recorded, strict_port=False)


def _ensure(home: Path, name: str) -> str:
    with _locked(home, name):
        server = _server_at(home, name)
        url = server.start()
        state = {"port": server.port, "pid": server.pid, "data_dir": str(server.data_dir)}
        _write_state(_state_file(home, name), state)
        return url


def ensure_postgres(home: Path) -> str:
    """Start the home's PostgreSQL if needed (or reuse the running one); return its URL."""
    return _ensure(home, "postgres")


def ensure_redis(home: Path) -> str:
    """Start the home's Redis if needed (or reuse the running one); return its URL."""
    return _ensure(home, "redis")


def status(home: Path) -> list[ServiceStatus]:
    """The state of the home's PostgreSQL and Redis."""
    return [_server_at(home, name).status() for name in SERVERS]


def stop(home: Path) -> list[ServiceStatus]:
    """Stop the home's servers if they run (data is kept); return their status after."""
    if not home.exists():
        return status(home)
    with contextlib.ExitStack() as locks:
        for name in SERVERS:
            locks.enter_context(_locked(home, name))
        servers = [_server_at(home, name) for name in SERVERS]
        for server in servers:
            server.stop()
        for name in SERVERS:
            _state_file(home, name).unlink(missing_ok=True)
        return [server.status() for server in servers]
