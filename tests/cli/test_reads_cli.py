"""feed, cache warm|repair|verify|vacuum and rebuild through Typer's runner: the exit code
first, then the stored state; bad input is one line on stderr and a non-zero exit."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cli_runner import assert_clean_error, invoke

from feedctl.cache.keys import FeedRef
from feedctl.read.cursor import Pin, Position, encode_cursor
from feedctl.read.cursor_secret import cursor_secrets

from servers import redis_client

pytestmark = pytest.mark.redis_cluster_too  # each test on one server and on a cluster


def database_secret(database_url: str) -> str:
    """The cursor secret `migrate up` stored in the test's database."""
    with psycopg.connect(database_url) as conn:
        return cursor_secrets(conn, ())[0]


@pytest.fixture
def seeded(base_args: list[str]) -> list[str]:
    seeding = ["seed", "--users", "120", "--communities", "4", "--posts", "120", "--days", "3"]
    assert invoke([*base_args, *seeding]).exit_code == 0
    # Fan-out leaves events behind transactions open elsewhere on a shared server: repeat.
    for _ in range(600):
        fanned = invoke([*base_args, "--json", "fanout"])
        assert fanned.exit_code == 0, fanned.output
        if json.loads(fanned.stdout)["lag_events"] == 0:
            return base_args
        time.sleep(0.05)
    raise AssertionError("events stayed behind a transaction open on the server")


def busiest_user(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT user_id FROM feed_entry GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1"
        ).fetchone()
    assert row is not None
    return int(row[0])


def page(args: list[str], *feed: str, cursor: str | None = None) -> dict[str, Any]:
    extra = ["--cursor", cursor] if cursor else []
    result = invoke([*args, "--json", "feed", *feed, "--limit", "7", *extra])
    assert result.exit_code == 0, result.output
    loaded: dict[str, Any] = json.loads(result.stdout)
    return loaded


def test_walk_a_community_feed_to_its_end(seeded: list[str], database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        community_id, posts = conn.execute(
            "SELECT community_id, count(*) FROM post_score GROUP BY 1 ORDER BY 2 DESC LIMIT 1"
        ).fetchone()
    seen: list[int] = []
    cursor = None
    while True:
        current = page(seeded, "community", str(community_id), cursor=cursor)
        seen.extend(item["post_id"] for item in current["items"])
        cursor = current["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == posts


@pytest.mark.parametrize("limit", ["0", "-3", "501"])
def test_bad_limit_is_one_line(seeded: list[str], limit: str) -> None:
    result = invoke([*seeded, "feed", "user", "1", "--limit", limit])
    assert_clean_error(result, 2, "limit must be between 1 and 500")


def test_unknown_community_is_one_line(seeded: list[str]) -> None:
    assert_clean_error(
        invoke([*seeded, "feed", "community", "424242"]), 2, "community 424242 does not exist"
    )


def test_forged_truncated_and_foreign_cursors_are_one_line(
    seeded: list[str], database_url: str
) -> None:
    user_id = busiest_user(database_url)
    cursor = page(seeded, "user", str(user_id))["next_cursor"]
    assert isinstance(cursor, str)
    flipped = cursor[:10] + ("A" if cursor[10] != "A" else "B") + cursor[11:]
    feed = ["feed", "user", str(user_id), "--cursor"]
    assert_clean_error(invoke([*seeded, *feed, flipped]), 2, "cursor is not valid")
    assert_clean_error(invoke([*seeded, *feed, cursor[:-5]]), 2, "cursor is not valid")
    other = ["feed", "user", str(user_id + 1), "--cursor", cursor]
    assert_clean_error(invoke([*seeded, *other]), 2, "cursor belongs to another feed")
    community = ["feed", "community", str(user_id), "--cursor", cursor]
    assert_clean_error(invoke([*seeded, *community]), 2, "cursor belongs to another feed")
    elsewhere = encode_cursor(FeedRef("user", user_id), Position(1.0, 1, _pin()), "other-secret")
    assert_clean_error(invoke([*seeded, *feed, elsewhere]), 2, "signature does not match")
    retired = "feedctl-default-cursor-secret"  # what every install signed with before
    public = encode_cursor(FeedRef("user", user_id), Position(1.0, 1, _pin()), retired)
    assert_clean_error(invoke([*seeded, *feed, public]), 2, "signature does not match")


def _pin(age: timedelta = timedelta(0)) -> Pin:
    return Pin(3, 3, (), datetime.now(UTC) - age)


def test_expired_cursor_is_one_line(seeded: list[str], database_url: str) -> None:
    user_id = busiest_user(database_url)
    position = Position(2500.0, 1, _pin(timedelta(days=2)))
    old = encode_cursor(FeedRef("user", user_id), position, database_secret(database_url))
    result = invoke([*seeded, "feed", "user", str(user_id), "--cursor", old])
    assert_clean_error(result, 2, "cursor has expired")


@pytest.mark.parametrize("cap", ["0", "-5"])
def test_cap_below_one_is_one_line(seeded: list[str], cap: str) -> None:
    assert_clean_error(invoke([*seeded, "--cap", cap, "feed", "user", "1"]), 2, "feed_cap")
    assert_clean_error(invoke([*seeded, "--cap", cap, "cache", "warm"]), 2, "feed_cap")


@pytest.mark.parametrize("sample", ["0", "-1"])
def test_sample_below_one_is_one_line(seeded: list[str], sample: str) -> None:
    result = invoke([*seeded, "cache", "verify", "--sample", sample])
    assert_clean_error(result, 2, "sample size must be at least 1")


def test_warm_bad_targets_are_one_line(seeded: list[str], tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("1\n2\n999999\n")
    warm = [*seeded, "cache", "warm"]
    assert_clean_error(invoke([*warm, "--users", str(ids)]), 2, "unknown user id(s): 999999")
    assert_clean_error(invoke([*warm, "--community", "999"]), 2, "community 999 does not exist")
    both = [*warm, "--community", "1", "--users", str(ids)]
    assert_clean_error(invoke(both), 2, "give only one of")
    assert_clean_error(invoke([*warm, "--active-since", "soon"]), 2, "not understood")


def test_rebuild_bad_input_is_one_line(seeded: list[str]) -> None:
    rebuild = [*seeded, "rebuild"]
    assert_clean_error(invoke([*rebuild, "--community", "999"]), 2, "community 999 does not exist")
    assert_clean_error(invoke([*rebuild, "--user", "1", "--resume"]), 2, "--resume goes with --all")
    assert_clean_error(invoke([*rebuild, "--all", "--chunk-size", "0"]), 2, "chunk size")


def test_vacuum_bad_window_is_one_line(seeded: list[str]) -> None:
    vacuum = [*seeded, "cache", "vacuum", "--inactive-for"]
    assert_clean_error(invoke([*vacuum, "0d"]), 2, "longer than 0")
    assert_clean_error(invoke([*vacuum, "a while"]), 2, "not understood")


def test_warm_verify_corrupt_verify_repair(
    seeded: list[str],
    database_url: str,
    redis_server_url: str,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    ids = tmp_path / "everyone.txt"
    ids.write_text("".join(f"{n}\n" for n in range(1, 121)))
    warm = [*seeded, "--json", "cache", "warm", "--users", str(ids)]
    warmed = invoke([*warm, "--force"])
    assert warmed.exit_code == 0, warmed.output
    assert json.loads(warmed.stdout)["feeds_written"] == 120
    again = json.loads(invoke(warm).stdout)
    assert again["feeds_written"] == 0 and again["feeds_skipped"] == 120
    clean = invoke([*seeded, "--json", "cache", "verify", "--sample", "500"])
    assert clean.exit_code == 0, clean.output
    assert json.loads(clean.stdout)["feeds_compared"] == 120

    user_id = busiest_user(database_url)
    client = redis_client(redis_server_url)
    key = f"{redis_prefix}feed:u:{user_id}"
    top = client.zrange(key, -1, -1)[0]
    client.zincrby(key, 5.0, top)
    client.close()
    dirty = invoke([*seeded, "--json", "cache", "verify", "--sample", "500", "--mark"])
    assert dirty.exit_code == 3, dirty.output
    found = json.loads(dirty.stdout)
    assert found["mismatches"] == [
        {
            "key": key,
            "kind": "score",
            "post_id": int(top),
            "cached_score": found["mismatches"][0]["database_score"] + 5.0,
            "database_score": found["mismatches"][0]["database_score"],
            "detail": "",
        }
    ]
    human = invoke([*seeded, "cache", "verify", "--sample", "500"])
    assert human.exit_code == 3 and "score" in human.stdout
    assert invoke([*seeded, "cache", "repair"]).exit_code == 0
    assert invoke([*seeded, "cache", "verify", "--sample", "500"]).exit_code == 0


def test_rebuild_all_dry_run_shows_a_sample_and_changes_nothing(
    seeded: list[str], database_url: str
) -> None:
    with psycopg.connect(database_url) as conn:  # drift: lost, stale and stray entries
        first, second = (
            r[0] for r in conn.execute("SELECT DISTINCT user_id FROM feed_entry ORDER BY 1 LIMIT 2")
        )
        lost = conn.execute("DELETE FROM feed_entry WHERE user_id = %s", (first,)).rowcount
        conn.execute("UPDATE feed_entry SET score = score + 1 WHERE user_id = %s", (second,))
        stray = conn.execute(
            "INSERT INTO feed_entry (user_id, post_id, community_id, author_id, score, created_at) "
            "SELECT %s, id, community_id, author_id, 0, created_at FROM posts p "
            "WHERE NOT EXISTS (SELECT 1 FROM feed_entry fe WHERE fe.user_id = %s "
            "                  AND fe.post_id = p.id) LIMIT 3",
            (second, second),
        ).rowcount
        before = conn.execute("SELECT count(*) FROM feed_entry").fetchone()[0]
    result = invoke([*seeded, "--json", "rebuild", "--all", "--dry-run"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["dry_run"] is True and report["entries_before"] == before
    assert (report["entries_added"], report["entries_removed"]) == (lost, stray)
    assert report["entries_updated"] > 0 and len(report["sample"]) == 10
    assert {s["change"] for s in report["sample"]} == {"add"}  # the first user's, in order
    human = invoke([*seeded, "rebuild", "--all", "--dry-run"])
    assert human.exit_code == 0 and "DRY RUN" in human.stdout and "add" in human.stdout
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM feed_entry").fetchone()[0] == before
    done = json.loads(invoke([*seeded, "--json", "rebuild", "--all"]).stdout)
    assert done["entries_after"] == report["entries_after"]


def test_rebuild_all_while_another_runs_exits_75(seeded: list[str], database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(hashtext('feedctl.rebuild.all'))")
        result = invoke([*seeded, "rebuild", "--all"])
    assert_clean_error(result, 75, "another run holds the lock")


def test_vacuum_dry_run_then_for_real(seeded: list[str], database_url: str) -> None:
    assert invoke([*seeded, "cache", "warm", "--active-since", "3650d"]).exit_code == 0
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE users SET last_active_at = now() - interval '90 days' WHERE id <= 20")
    plan = invoke([*seeded, "--json", "cache", "vacuum", "--inactive-for", "30d", "--dry-run"])
    assert plan.exit_code == 0, plan.output
    planned = json.loads(plan.stdout)
    assert planned["dry_run"] is True and planned["inactive_feeds_dropped"] > 0
    done = json.loads(
        invoke([*seeded, "--json", "cache", "vacuum", "--inactive-for", "30d"]).stdout
    )
    assert done["keys_dropped"] == planned["keys_dropped"]
    assert done["members_freed"] == planned["members_freed"]
    assert (
        json.loads(invoke([*seeded, "--json", "cache", "vacuum", "--inactive-for", "30d"]).stdout)[
            "keys_dropped"
        ]
        == 0
    )


def test_warm_a_community_warms_its_members_and_its_own_feed(
    seeded: list[str], database_url: str, redis_server_url: str, redis_prefix: str
) -> None:
    with psycopg.connect(database_url) as conn:
        community_id, members = conn.execute(
            "SELECT community_id, count(*) FROM memberships GROUP BY 1 ORDER BY 2 DESC LIMIT 1"
        ).fetchone()
    result = invoke([*seeded, "--json", "cache", "warm", "--community", str(community_id)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["feeds_considered"] == members + 1
    assert report["feeds_written"] + report["feeds_skipped"] == members + 1
    client = redis_client(redis_server_url)
    assert client.exists(f"{redis_prefix}feed:c:{community_id}") == 1
    client.close()
    assert invoke([*seeded, "cache", "verify", "--sample", "1000"]).exit_code == 0
