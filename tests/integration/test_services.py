"""Real embedded PostgreSQL and Redis servers: start, query, stop, restart, reuse."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

import feedctl
from feedctl import services
from feedctl.services import EmbeddedPostgres, EmbeddedRedis
from feedctl.services.base import live_process


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _remove_if_outside(data_dir: Path, root: Path) -> None:
    """Delete a PostgreSQL data folder relocated out of the test's tmp_path (root only)."""
    if not data_dir.resolve().is_relative_to(root.resolve()):
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def postgres_server(tmp_path: Path, request: pytest.FixtureRequest) -> EmbeddedPostgres:
    server = EmbeddedPostgres(tmp_path / "pg")

    def cleanup() -> None:
        server.stop()
        _remove_if_outside(server.data_dir, tmp_path)

    request.addfinalizer(cleanup)
    return server


@pytest.fixture
def redis_server(tmp_path: Path, request: pytest.FixtureRequest) -> EmbeddedRedis:
    server = EmbeddedRedis(tmp_path / "redis")
    request.addfinalizer(server.stop)
    return server


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "home"
    try:
        yield home
    finally:
        after = services.stop(home)
        _remove_if_outside(after[0].data_dir, tmp_path)


def test_postgres_answers_and_keeps_url_and_data_across_restart(
    postgres_server: EmbeddedPostgres,
) -> None:
    url = postgres_server.start()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (v text)")
        conn.execute("INSERT INTO kept VALUES ('hello')")
        # a connection left open must not block the stop
        postgres_server.stop()
    assert not postgres_server.running
    assert postgres_server.pid is None
    assert not _port_open(postgres_server.port)

    assert postgres_server.start() == url
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT v FROM kept").fetchall() == [("hello",)]


def test_redis_answers_and_keeps_url_across_restart(redis_server: EmbeddedRedis) -> None:
    url = redis_server.start()
    client = redis.Redis.from_url(url)
    assert client.set("k", "v")
    assert client.get("k") == b"v"
    pid = redis_server.pid
    assert pid is not None

    redis_server.stop()
    assert not redis_server.running
    assert not _port_open(redis_server.port)

    assert redis_server.start() == url
    assert redis_server.pid not in (None, pid)
    assert client.get("k") is None  # a cache: nothing persists
    client.close()


def test_start_twice_reuses_the_running_servers(
    postgres_server: EmbeddedPostgres, redis_server: EmbeddedRedis
) -> None:
    pg_url, redis_url = postgres_server.start(), redis_server.start()
    pg_pid, redis_pid = postgres_server.pid, redis_server.pid
    assert postgres_server.start() == pg_url
    assert redis_server.start() == redis_url
    assert (postgres_server.pid, redis_server.pid) == (pg_pid, redis_pid)


def test_ensure_postgres_reuses_the_server_across_processes(home: Path) -> None:
    url = services.ensure_postgres(home)
    pid = services.status(home)[0].pid
    assert pid is not None
    assert services.ensure_postgres(home) == url

    code = (
        "import pathlib\nfrom feedctl import services\n"
        f"print(services.ensure_postgres(pathlib.Path({str(home)!r})))"
    )
    project = str(Path(feedctl.__file__).resolve().parents[1])
    paths = [project, *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}  # works without an install too
    from_child = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
        env=env,
    )
    assert from_child.stdout.strip() == url
    assert services.status(home)[0].pid == pid
    state = json.loads((home / "postgres.json").read_text())
    assert state["pid"] == pid
    assert url.endswith(f":{state['port']}/postgres")
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_ensure_redis_reuses_the_server(home: Path) -> None:
    url = services.ensure_redis(home)
    pid = services.status(home)[1].pid
    assert services.ensure_redis(home) == url
    assert services.status(home)[1].pid == pid
    assert redis.Redis.from_url(url).ping()


def test_ensure_redis_restarts_a_dead_server_on_its_recorded_port(home: Path) -> None:
    url = services.ensure_redis(home)
    pid = services.status(home)[1].pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while services.status(home)[1].running and time.monotonic() < deadline:
        time.sleep(0.01)  # the kernel tears the process down asynchronously
    assert not services.status(home)[1].running

    assert services.ensure_redis(home) == url
    assert services.status(home)[1].pid not in (None, pid)


def test_status_then_stop_twice(home: Path) -> None:
    pg_url, redis_url = services.ensure_postgres(home), services.ensure_redis(home)
    running = services.status(home)
    assert [(s.name, s.running, s.url) for s in running] == [
        ("postgres", True, pg_url),
        ("redis", True, redis_url),
    ]
    assert all(s.pid is not None for s in running)

    stopped = services.stop(home)
    assert [(s.name, s.running, s.url, s.pid) for s in stopped] == [
        ("postgres", False, None, None),
        ("redis", False, None, None),
    ]
    assert services.stop(home) == stopped
    assert services.status(home) == stopped
    assert (stopped[0].data_dir / "PG_VERSION").exists()  # data is kept
    assert not (home / "postgres.json").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="relocation only happens as root")
def test_root_relocates_data_instead_of_widening_permissions(home: Path) -> None:
    closed = [p for p in home.parents if p.exists() and not p.stat().st_mode & stat.S_IXOTH]
    if not closed:
        pytest.skip("tmp_path is open to other users here")
    modes = {p: p.stat().st_mode for p in closed}
    services.ensure_postgres(home)
    data_dir = services.status(home)[0].data_dir
    assert data_dir.parent == Path("/var/lib/feedctl")
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert data_dir.owner() == "embedded_postgres"
    assert {p: p.stat().st_mode for p in closed} == modes


def test_a_zombie_or_another_program_is_no_live_server() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not yet reaped
    assert live_process(child.pid) is None
    child.wait()
    assert live_process(child.pid) is None
    me = live_process(os.getpid())
    assert me is not None and me.pid == os.getpid()
    assert live_process(os.getpid(), "redis-server") is None
