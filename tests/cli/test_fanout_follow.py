"""`feedctl fanout --follow` keeps consuming and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import psycopg

from feedctl.config import Settings

from processes import feedctl_env


def post(conn: psycopg.Connection[object], post_id: int) -> None:
    with conn.transaction():
        conn.execute(
            "INSERT INTO posts (id, community_id, author_id, created_at) VALUES (%s, 1, 1, %s)",
            (post_id, datetime.now(UTC)),
        )
        conn.execute(
            "INSERT INTO feed_events (kind, post_id, community_id) VALUES ('post_created', %s, 1)",
            (post_id,),
        )


def entries(conn: psycopg.Connection[object]) -> int:
    row = conn.execute("SELECT count(*) FROM feed_entry").fetchone()
    return int(row[0]) if row else 0


def wait_for(condition: object, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def test_follow_consumes_new_events_and_stops_on_sigterm(settings: Settings) -> None:
    with psycopg.connect(settings.database_url or "", autocommit=True) as conn:
        conn.execute("INSERT INTO users (id) SELECT g FROM generate_series(1, 30) g")
        conn.execute("INSERT INTO communities (id, name) VALUES (1, 'c')")
        conn.execute(
            "INSERT INTO memberships (community_id, user_id) "
            "SELECT 1, g FROM generate_series(1, 30) g"
        )
        post(conn, 1)
        env = feedctl_env(settings)
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "feedctl",
                "--json",
                "fanout",
                "--follow",
                "--poll-interval",
                "0.1",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            wait_for(lambda: entries(conn) == 30)
            post(conn, 2)
            post(conn, 3)
            wait_for(lambda: entries(conn) == 90)
            assert process.poll() is None, "follow mode ended by itself"
            process.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
        assert process.returncode == 0, err.decode()
        summary = json.loads(out)
        assert summary["events"] == 3
        assert summary["entries_written"] == 90
        assert summary["lag_events"] == 0
