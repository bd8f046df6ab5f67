"""Running the API under uvicorn: one process, or several workers that each open their own
pools (uvicorn starts them from `app_from_environment`)."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from feedctl.config import ENV_PREFIX, Settings, load_settings
from feedctl.context import database_url, redis_url
from feedctl.errors import BadInputError, NotInstalledError

if TYPE_CHECKING:
    from fastapi import FastAPI

SERVE_EXTRA = "pip install 'feedctl[serve]'"
GRACEFUL_SECONDS = 30  # how long a shut-down waits for in-flight requests


def require_serve_extra() -> None:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise NotInstalledError(
            f"`feedctl serve` needs FastAPI and uvicorn: {SERVE_EXTRA}"
        ) from None


def _check_options(workers: int, port: int) -> None:
    if workers < 1:
        raise BadInputError(f"--workers must be at least 1, got {workers}")
    if not 0 <= port <= 65535:
        raise BadInputError(f"--port must be between 0 and 65535, got {port}")


def _resolved(settings: Settings, notice: Callable[[str], None] | None) -> Settings:
    """The embedded servers (when no URL is set) are started here, once, not by each worker."""
    return dataclasses.replace(
        settings, database_url=database_url(settings, notice), redis_url=redis_url(settings, notice)
    )


def preflight(
    settings: Settings,
    *,
    host: str,
    port: int,
    workers: int,
    notice: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """What `serve` would do, and whether PostgreSQL and Redis answer now."""
    require_serve_extra()
    _check_options(workers, port)
    from feedctl.client import Client

    # The pool logs each failed connection attempt; the check reports the outcome instead.
    pool_log = logging.getLogger("psycopg.pool")
    level = pool_log.level
    pool_log.setLevel(logging.CRITICAL)
    try:
        with Client(_resolved(settings, notice), pool_size=1, timeout=3.0) as client:
            ready = client.readiness()
    finally:
        pool_log.setLevel(level)
    return {
        "url": f"http://{host}:{port}",
        "workers": workers,
        "rebuilds": "enabled" if settings.api_token else "refused: no api_token is configured",
        "postgres": ready.postgres,
        "redis": ready.redis,
    }


def serve(
    settings: Settings,
    *,
    host: str,
    port: int,
    workers: int,
    notice: Callable[[str], None] | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT: then stop accepting, let in-flight requests finish,
    close the pools, and return (a stop asked for by a signal is a normal end)."""
    require_serve_extra()
    _check_options(workers, port)
    import uvicorn

    resolved = _resolved(settings, notice)
    options = {
        "host": host,
        "port": port,
        "log_level": "warning",
        "access_log": False,
        "timeout_graceful_shutdown": GRACEFUL_SECONDS,
        "server_header": False,
    }
    with _signals_end_normally():
        if workers == 1:
            from feedctl.api.app import create_app

            uvicorn.run(create_app(resolved), **options)  # type: ignore[arg-type]
        else:
            with _settings_in_environment(resolved):
                _run_workers(workers, options)


def _run_workers(workers: int, options: dict[str, Any]) -> None:
    """What `uvicorn.run(..., workers=N)` does, with a listening socket that says it is TCP.

    uvicorn binds the shared socket with `proto` 0; the sockets accepted from it inherit
    that, and asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP, so every
    keep-alive response waited about 40 ms for the client's delayed ACK (uvicorn issue
    3149). Wrapping the same descriptor again with IPPROTO_TCP restores TCP_NODELAY.
    """
    from uvicorn import Config
    from uvicorn.supervisors import Multiprocess

    config = Config(
        "feedctl.api.server:app_from_environment", factory=True, workers=workers, **options
    )
    sock = tcp_listener(config.bind_socket())
    try:
        Multiprocess(config, sockets=[sock]).run()
    finally:
        sock.close()


def tcp_listener(sock: socket.socket) -> socket.socket:
    """The same listening socket, declared as TCP (IPPROTO_TCP) when it is an IP socket."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.proto == socket.IPPROTO_TCP:
        return sock
    wrapped = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
    wrapped.set_inheritable(True)
    return wrapped


def app_from_environment() -> FastAPI:
    """A worker's app: the settings the parent wrote into FEEDCTL_* variables."""
    from feedctl.api.app import create_app

    return create_app(load_settings())


@contextmanager
def _settings_in_environment(settings: Settings) -> Iterator[None]:
    """What the command line resolved, for the workers (the config file is read again)."""
    values = {
        "database_url": settings.database_url,
        "redis_url": settings.redis_url,
        "feed_cap": str(settings.feed_cap),
    }
    saved = dict(os.environ)
    if settings.config_file is not None:
        os.environ["FEEDCTL_CONFIG"] = str(settings.config_file)
    for key, value in values.items():
        if value is not None:
            os.environ[ENV_PREFIX + key.upper()] = value
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextmanager
def _signals_end_normally() -> Iterator[None]:
    """uvicorn shuts down gracefully on SIGTERM/SIGINT, then raises the signal again for
    the previous handler: this one makes that a normal return (exit 0)."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    for sig in previous:
        signal.signal(sig, lambda signum, frame: None)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
