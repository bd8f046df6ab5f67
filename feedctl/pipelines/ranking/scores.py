"""Scoring posts with the heuristic and storing the scores (post_score, feed_entry)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl
import psycopg

from feedctl.db.sql_blocks import query
from feedctl.rank.heuristic import Heuristic
from feedctl.rank.scoring import score_frame

INPUT_SCHEMA: pl.Schema = pl.Schema(
    {
        "post_id": pl.Int64(),
        "community_id": pl.Int64(),
        "created_at": pl.Datetime("us", "UTC"),
        "reactions_count": pl.Int64(),
        "comments_count": pl.Int64(),
        "reputation": pl.Float64(),
    }
)
STAGE_COLUMNS = (
    "post_id",
    "community_id",
    "score",
    "reactions_count",
    "comments_count",
    "reputation",
)


def inputs_frame(rows: Sequence[tuple[Any, ...]]) -> pl.DataFrame:
    """Rows of (post_id, community_id, created_at, reactions, comments, reputation)."""
    return pl.DataFrame(list(rows), schema=INPUT_SCHEMA, orient="row")


def read_inputs(conn: psycopg.Connection[Any], post_ids: Sequence[int]) -> pl.DataFrame:
    rows = conn.execute(query("post_inputs"), {"post_ids": list(post_ids)}).fetchall()
    return inputs_frame(rows)


def stage_scores(conn: psycopg.Connection[Any], scored: pl.DataFrame) -> None:
    """COPY scored posts into the transaction's score_stage table."""
    conn.execute(query("create_score_stage"))
    payload = scored.select(STAGE_COLUMNS).write_csv(include_header=False)
    with conn.cursor() as cur, cur.copy(query("copy_score_stage")) as copy:
        copy.write(payload)


def store_scores(
    conn: psycopg.Connection[Any],
    inputs: pl.DataFrame,
    heuristic: Heuristic,
    *,
    update_entries: bool,
) -> tuple[pl.DataFrame, int]:
    """Score the posts, upsert post_score and (optionally) feed_entry scores.

    Must run inside a transaction. Returns the scored frame and feed entries updated.
    """
    scored = score_frame(inputs, heuristic)
    if scored.is_empty():
        return scored, 0
    stage_scores(conn, scored)
    conn.execute(query("upsert_post_scores"), {"version": heuristic.version})
    updated = 0
    if update_entries:
        updated = conn.execute(query("update_entry_scores")).rowcount
    return scored, updated
