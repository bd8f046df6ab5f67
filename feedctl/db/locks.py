"""Session-level advisory locks that keep a job single-instance."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg

from feedctl.db.sql_blocks import query
from feedctl.errors import LockedError


@contextlib.contextmanager
def advisory_lock(conn: psycopg.Connection[Any], name: str) -> Iterator[None]:
    """Hold the lock `name` for the block, or raise LockedError at once (exit 75)."""
    row = conn.execute(query("try_named_lock"), {"name": name}).fetchone()
    if not row or not row[0]:
        raise LockedError(f"another run holds the lock {name!r}")
    try:
        yield
    finally:
        if not conn.closed:
            conn.execute(query("named_unlock"), {"name": name})
