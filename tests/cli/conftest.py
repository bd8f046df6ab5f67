"""Fixtures of the CLI tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def base_args(
    database_url: str, redis_server_url: str, redis_prefix: str, tmp_path: Path
) -> list[str]:
    """Global options that point a command at the test's own database and key space."""
    config = tmp_path / "feedctl.toml"
    config.write_text(f'redis_key_prefix = "{redis_prefix}"\nfeed_cap = 50\n')
    return [
        "--config",
        str(config),
        "--database-url",
        database_url,
        "--redis-url",
        redis_server_url,
    ]
