"""Shared fixtures: real servers (see servers.py), a fresh database per test cloned from a
migrated template, a private Redis key prefix per test (the session fails if a test leaves
keys behind), a Redis of a test's own, and the global options that point the CLI at them.

Redis is a single server, or, for the tests of a module marked `redis_cluster_too`, both a
single server and a three-primary Redis Cluster started for the session (each such test runs
once against each: `[single]` and `[cluster]`)."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from feedctl import config
from feedctl.config import Settings
from feedctl.context import Context, open_context
from feedctl.db import migrations
from feedctl.services import EmbeddedRedis

from servers import redis_client, resolve_postgres, resolve_redis, resolve_redis_cluster

TEST_VARIABLES = (
    "FEEDCTL_TEST_DATABASE_URL",
    "FEEDCTL_TEST_REDIS_URL",
    "FEEDCTL_TEST_REDIS_CLUSTER_URL",
)
TEST_PREFIX = "feedctl-test-"  # every test's Redis key space starts with it
_ISSUED_PREFIXES: list[str] = []  # the key spaces this session handed out


def _strip_feedctl_environment() -> None:
    for name in list(os.environ):
        if name.startswith("FEEDCTL_") and name not in TEST_VARIABLES:
            del os.environ[name]


_strip_feedctl_environment()


@pytest.fixture(autouse=True)
def _no_feedctl_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's FEEDCTL_* settings never leak into a test."""
    for name in list(os.environ):
        if name.startswith("FEEDCTL_") and name not in TEST_VARIABLES:
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _no_feedctl_config_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Nor does a feedctl.toml in the user's or the system's config folder."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.getbasetemp() / "no-config"))
    monkeypatch.setattr(config, "SYSTEM_CONFIG_FILES", ())


def database_url_for(admin_url: str, name: str) -> str:
    params = conninfo_to_dict(admin_url)
    params["dbname"] = name
    return make_conninfo(**params)


@pytest.fixture(scope="session")
def postgres_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url, cleanup = resolve_postgres(tmp_path_factory.mktemp("pg"))
    yield url
    cleanup()


REDIS_KINDS = ("single", "cluster")
CLUSTER_MARK = "redis_cluster_too"


def _keys(url: str, pattern: str) -> list[bytes]:
    client = redis_client(url)
    try:  # on a cluster SCAN walks every primary
        return list(client.scan_iter(match=pattern, count=1000))
    finally:
        client.close()


def _check_no_keys_left(url: str, shared: bool) -> None:
    """No test may have left a key: none under a test prefix, none at all on a server
    started for these tests alone."""
    left = _keys(url, f"*{TEST_PREFIX}*" if shared else "*")
    if shared:  # other runs may use the server too: only this session's prefixes count
        left = [key for key in left if any(p.encode() in key for p in _ISSUED_PREFIXES)]
    assert not left, f"tests left {len(left)} Redis key(s) behind, such as {left[:5]}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test of a module marked `redis_cluster_too` that uses the session's Redis runs once
    on a single server and once on the cluster (not one that brings a server of its own)."""
    if (
        "redis_kind" in metafunc.fixturenames
        and "own_redis" not in metafunc.fixturenames
        and metafunc.definition.get_closest_marker(CLUSTER_MARK) is not None
    ):
        metafunc.parametrize("redis_kind", REDIS_KINDS, indirect=True)


@pytest.fixture
def redis_kind(request: pytest.FixtureRequest) -> str:
    """ "single" or "cluster": which Redis this test runs against."""
    return str(getattr(request, "param", "single"))


@pytest.fixture(scope="session")
def single_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The session's single Redis server (checked for leftover keys at the end)."""
    url, cleanup = resolve_redis(tmp_path_factory.mktemp("redis"))
    try:
        yield url
        _check_no_keys_left(url, shared=bool(os.environ.get("FEEDCTL_TEST_REDIS_URL")))
    finally:
        cleanup()


@pytest.fixture(scope="session")
def cluster_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The session's Redis Cluster, started at its first use (checked the same way)."""
    url, cleanup = resolve_redis_cluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        yield url
        _check_no_keys_left(url, shared=bool(os.environ.get("FEEDCTL_TEST_REDIS_CLUSTER_URL")))
    finally:
        cleanup()


@pytest.fixture
def redis_server_url(redis_kind: str, request: pytest.FixtureRequest) -> str:
    """The Redis URL this test uses: the single server, or the cluster (`redis_kind`)."""
    return str(request.getfixturevalue(f"{redis_kind}_redis_url"))


def _create_database(admin_url: str, name: str, template: str | None = None) -> None:
    with psycopg.connect(admin_url, autocommit=True) as admin:
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            statement = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        admin.execute(statement)


def _drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="session")
def template_database(postgres_admin_url: str) -> Iterator[str]:
    """A database migrated once per session; each test clones it."""
    name = f"feedctl_tpl_{uuid.uuid4().hex[:10]}"
    _create_database(postgres_admin_url, name)
    with psycopg.connect(database_url_for(postgres_admin_url, name), autocommit=True) as conn:
        migrations.upgrade(conn)
    yield name
    _drop_database(postgres_admin_url, name)


@contextlib.contextmanager
def _cloned_database(admin_url: str, template: str) -> Iterator[str]:
    name = f"feedctl_t_{uuid.uuid4().hex[:12]}"
    _create_database(admin_url, name, template=template)
    try:
        yield database_url_for(admin_url, name)
    finally:
        _drop_database(admin_url, name)


MigratedDatabase = Callable[[], contextlib.AbstractContextManager[str]]


@pytest.fixture(scope="session")
def migrated_database(postgres_admin_url: str, template_database: str) -> MigratedDatabase:
    """`with migrated_database() as url:` a fresh, migrated database (a clone of the
    template), dropped afterwards: for fixtures wider than one test, or a second database."""
    return lambda: _cloned_database(postgres_admin_url, template_database)


@pytest.fixture
def empty_database_url(postgres_admin_url: str) -> Iterator[str]:
    """A brand-new database with no tables."""
    name = f"feedctl_t_{uuid.uuid4().hex[:12]}"
    _create_database(postgres_admin_url, name)
    yield database_url_for(postgres_admin_url, name)
    _drop_database(postgres_admin_url, name)


@pytest.fixture
def database_url(migrated_database: MigratedDatabase) -> Iterator[str]:
    """A fresh, migrated database of this test's own."""
    with migrated_database() as url:
        yield url


@pytest.fixture
def redis_prefix(redis_server_url: str) -> Iterator[str]:
    """A key space of this test's own: every key that contains it is deleted afterwards
    (also keys a test writes around it on purpose, such as `other-<prefix>...`)."""
    prefix = f"{TEST_PREFIX}{uuid.uuid4().hex[:12]}:"
    _ISSUED_PREFIXES.append(prefix)
    yield prefix
    keys = _keys(redis_server_url, f"*{prefix}*")
    if keys:
        client = redis_client(redis_server_url)
        try:
            with client.pipeline(transaction=False) as pipe:
                for found in keys:  # one DEL a key: on a cluster they are in many slots
                    pipe.delete(found)
                pipe.execute()
        finally:
            client.close()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis server of this test's own, which the test may stop and start again."""
    server = EmbeddedRedis(tmp_path / "own-redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def settings(
    database_url: str, redis_server_url: str, redis_prefix: str, tmp_path: Path
) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=redis_server_url,
        redis_key_prefix=redis_prefix,
        home=tmp_path / "home",
        feed_cap=50,
        batch_size=200,
        feed_retention="0",  # seeded worlds have fixed dates; tests of retention set their own
    )


@pytest.fixture
def ctx(settings: Settings) -> Iterator[Context]:
    with open_context(settings) as context:
        yield context


@pytest.fixture
def config_options() -> dict[str, object]:
    """Settings a module adds to the feedctl.toml of `base_args` (override this fixture)."""
    return {}


@pytest.fixture
def base_args(
    database_url: str,
    redis_server_url: str,
    redis_prefix: str,
    tmp_path: Path,
    config_options: dict[str, object],
) -> list[str]:
    """Global options that point a command at the test's own database and key space."""
    config = tmp_path / "feedctl.toml"
    options = {"redis_key_prefix": redis_prefix, "feed_cap": 50, **config_options}
    config.write_text("".join(f"{key} = {json.dumps(value)}\n" for key, value in options.items()))
    urls = ["--database-url", database_url, "--redis-url", redis_server_url]
    return ["--config", str(config), *urls]
