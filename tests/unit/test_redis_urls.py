"""Redis URLs: one server (redis-py's forms) or a Redis Cluster (`redis+cluster://`)."""

from __future__ import annotations

import pytest

from feedctl.cache.client import describe, is_cluster_url, parse_cluster_url
from feedctl.errors import ConfigError


def test_a_cluster_url_names_its_nodes() -> None:
    nodes, options = parse_cluster_url("redis+cluster://10.0.0.1:7000,10.0.0.2:7001, r3:7002")
    assert nodes == [("10.0.0.1", 7000), ("10.0.0.2", 7001), ("r3", 7002)]
    assert options == {}


def test_credentials_tls_and_database_zero() -> None:
    nodes, options = parse_cluster_url("rediss+cluster://app:s%40cret@r1:6380/0")
    assert nodes == [("r1", 6380)]
    assert options == {"ssl": True, "username": "app", "password": "s@cret"}
    _, only_password = parse_cluster_url("redis+cluster://:pw@[::1]:7000/")
    assert only_password == {"password": "pw"}


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://r1",  # no port
        "redis+cluster://r1:70000",
        "redis+cluster://r1:7000,",
        "redis+cluster://r1:7000/1",  # a cluster has database 0 only
        "redis+cluster://r1:7000?ssl_cert_reqs=none",
    ],
)
def test_malformed_cluster_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        parse_cluster_url(url)


def test_which_urls_name_a_cluster_and_how_they_are_described() -> None:
    assert is_cluster_url("redis+cluster://a:1")
    assert is_cluster_url("REDISS+CLUSTER://a:1")
    assert not is_cluster_url("redis://a:1/0")
    assert describe("redis+cluster://u:secret@a:1,b:2") == "a:1,b:2"
    assert describe("redis://u:secret@a:1/0") == "a:1"
