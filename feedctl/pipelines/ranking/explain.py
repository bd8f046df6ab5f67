"""`rank explain`: every component of one post's rank key."""

from __future__ import annotations

from typing import Any

import psycopg

from feedctl.db.sql_blocks import query
from feedctl.errors import NotFoundError
from feedctl.pipelines.ranking.scores import inputs_frame
from feedctl.rank.heuristic import Heuristic
from feedctl.rank.scoring import components


def explain_post(
    conn: psycopg.Connection[Any], post_id: int, heuristic: Heuristic
) -> dict[str, Any]:
    row = conn.execute(query("post_explain_inputs"), {"post_id": post_id}).fetchone()
    if row is None:
        raise NotFoundError(f"post {post_id} does not exist")
    frame = components(inputs_frame([row[:6]]), heuristic)
    parts = frame.row(0, named=True)
    return {
        "post_id": post_id,
        "heuristic_version": heuristic.version,
        "reactions_count": parts["reactions_count"],
        "comments_count": parts["comments_count"],
        "author_reputation": parts["reputation"],
        "created_at": parts["created_at"].isoformat(),
        "engagement": parts["engagement"],
        "reputation_term": parts["reputation_term"],
        "freshness": parts["freshness"],
        "score": parts["score"],
        "stored_score": row[7],
        "stored_heuristic_version": row[8],
        "deleted": row[6] is not None,
    }
