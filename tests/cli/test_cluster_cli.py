"""Pointing feedctl at a Redis Cluster: a malformed URL is a clean usage error, and a cluster
that cannot be reached is what an unreachable single server is (reads answer from
PostgreSQL, writes are counted and marked for repair)."""

from __future__ import annotations

import json
import socket

import pytest
from cli_runner import assert_clean_error, invoke


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("url", ["redis+cluster://127.0.0.1", "redis+cluster://a:1/3"])
def test_malformed_cluster_url_is_a_usage_error(database_url: str, url: str) -> None:
    result = invoke(["--database-url", database_url, "--redis-url", url, "status"])
    assert_clean_error(result, 2, "Redis Cluster URL")


def test_unreachable_cluster_reads_from_postgresql_and_marks_writes(
    base_args: list[str],
) -> None:
    assert invoke([*base_args, "seed", "--users", "30", "--posts", "40"]).exit_code == 0
    nowhere = f"redis+cluster://127.0.0.1:{closed_port()},127.0.0.1:{closed_port()}"
    args = [*base_args, "--redis-url", nowhere, "--json"]
    fanned = invoke([*args, "fanout"])
    assert fanned.exit_code == 3, fanned.output
    assert json.loads(fanned.stdout)["redis_failures"] > 0
    page = invoke([*args, "feed", "user", "1", "--limit", "5"])
    assert page.exit_code == 0, page.output
    items = json.loads(page.stdout)["items"]
    assert items  # from PostgreSQL: the same page the reachable single server gives
    same = invoke([*base_args, "--json", "feed", "user", "1", "--limit", "5"])
    assert json.loads(same.stdout)["items"] == items
