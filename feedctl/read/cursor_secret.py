"""Which secrets sign and verify feed cursors: the configured ones, else the database's own.

`migrate up` stores a random secret in PostgreSQL (feedctl_secret), so every install signs
with a secret of its own unless `cursor_secret` is configured (a list, for rotation: the
first signs, every one verifies).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from feedctl.db.sql_blocks import query
from feedctl.errors import ConfigError


def cursor_secrets(conn: psycopg.Connection[Any], configured: Sequence[str]) -> tuple[str, ...]:
    """The configured secrets, or the one stored by `migrate up` in this database."""
    if configured:
        return tuple(configured)
    row = conn.execute(query("cursor_secret")).fetchone()
    if row is None:
        raise ConfigError(
            "this database has no cursor secret: run `feedctl migrate up` (it makes one) "
            "or set cursor_secret"
        )
    return (str(row[0]),)
