"""Which heuristic the stored scores follow, remembered in PostgreSQL (rank_heuristic).

Every version is recorded with its coefficients the first time it scores anything, so a
version name can never silently stand for two formulas. The most recently adopted version
is current: the first rank run adopts its own, a backfill adopts its target when it starts.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from feedctl.db.sql_blocks import query
from feedctl.errors import HeuristicError
from feedctl.rank.heuristic import Heuristic, heuristic_from_record


@dataclasses.dataclass(frozen=True)
class CurrentHeuristic:
    heuristic: Heuristic
    adopted_at: datetime


def record(conn: psycopg.Connection[Any], heuristic: Heuristic) -> None:
    """Record a version the first time; refuse a known version with other coefficients."""
    params = {"version": heuristic.version, "coefficients": Jsonb(heuristic.coefficients())}
    conn.execute(query("rank_heuristic_record"), params)
    row = conn.execute(query("rank_heuristic_known"), {"version": heuristic.version}).fetchone()
    assert row is not None
    known = heuristic_from_record(heuristic.version, row[0], "rank_heuristic")
    if known != heuristic:
        raise HeuristicError(
            f"heuristic version {heuristic.version!r} was used before with other coefficients "
            f"({describe_difference(known, heuristic)}): give the new coefficients a new version"
        )


def describe_difference(before: Heuristic, after: Heuristic) -> str:
    before_values, after_values = before.coefficients(), after.coefficients()
    changed = [key for key in before_values if before_values[key] != after_values[key]]
    return ", ".join(
        f"{key} {before_values[key]!r} then, {after_values[key]!r} now" for key in changed
    )


def adopt(conn: psycopg.Connection[Any], heuristic: Heuristic) -> None:
    """Record the heuristic and make it the current one."""
    record(conn, heuristic)
    conn.execute(query("rank_heuristic_adopt"), {"version": heuristic.version})


def current(conn: psycopg.Connection[Any]) -> CurrentHeuristic | None:
    row = conn.execute(query("rank_heuristic_current")).fetchone()
    if row is None:
        return None
    return CurrentHeuristic(heuristic_from_record(row[0], row[1], "rank_heuristic"), row[2])
