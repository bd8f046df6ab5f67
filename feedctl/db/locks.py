"""Session-level advisory locks that keep a job single-instance."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg

from feedctl.db.sql_blocks import query
from feedctl.errors import LockedError


@contextlib.contextmanager
def advisory_lock(
    conn: psycopg.Connection[Any], name: str, *, shared: bool = False
) -> Iterator[None]:
    """Hold the lock `name` for the block, or raise LockedError at once (exit 75).

    Shared holders exclude an exclusive holder, not each other.
    """
    take, release = (
        ("try_named_lock_shared", "named_unlock_shared")
        if shared
        else ("try_named_lock", "named_unlock")
    )
    row = conn.execute(query(take), {"name": name}).fetchone()
    if not row or not row[0]:
        raise LockedError(f"another run holds the lock {name!r}")
    try:
        yield
    finally:
        if not conn.closed:
            conn.execute(query(release), {"name": name})
