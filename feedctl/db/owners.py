"""Whether the users and communities a command names exist (unknown ids: NotFoundError)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from feedctl.db.sql_blocks import query
from feedctl.errors import NotFoundError


def require_user(conn: psycopg.Connection[Any], user_id: int) -> None:
    row = conn.execute(query("user_exists"), {"id": user_id}).fetchone()
    if not row or not row[0]:
        raise NotFoundError(f"user {user_id} does not exist")


def require_community(conn: psycopg.Connection[Any], community_id: int) -> None:
    row = conn.execute(query("community_exists"), {"id": community_id}).fetchone()
    if not row or not row[0]:
        raise NotFoundError(f"community {community_id} does not exist")


def existing_users(conn: psycopg.Connection[Any], ids: Sequence[int]) -> list[int]:
    """The ids, in order, after checking every one exists."""
    found = {row[0] for row in conn.execute(query("existing_user_ids"), {"ids": list(ids)})}
    missing = [i for i in ids if i not in found]
    if missing:
        shown = ", ".join(str(i) for i in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise NotFoundError(f"unknown user id(s): {shown}{more}")
    return list(ids)
