"""`feedctl serve` as a real process: every route over HTTP, pages equal to the CLI's JSON for
the same ids, the bearer token, metrics, Redis down, PostgreSQL down, a graceful SIGTERM,
and Schemathesis over the published schema."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from cli_runner import invoke

from feedctl.config import Settings
from feedctl.context import Context
from feedctl.services import EmbeddedRedis
from feedctl.synth import SeedSpec, seed

from drain import fan_out_everything
from serving import TOKEN, serving

WORLD = SeedSpec(users=60, communities=4, posts=150, days=3, seed=5)


@pytest.fixture
def world(ctx: Context) -> Context:
    seed(ctx.conn, WORLD)
    fan_out_everything(ctx)
    return ctx


def first_ids(ctx: Context, table: str, n: int) -> list[int]:
    sql = {
        "users": "SELECT id FROM users ORDER BY id",
        "communities": "SELECT id FROM communities ORDER BY id",
    }[table]
    return [int(row[0]) for row in ctx.conn.execute(sql)][:n]


def cli_page(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, kind: str, feed_id: int, cursor: str | None
) -> dict[str, Any]:
    monkeypatch.setenv("FEEDCTL_REDIS_KEY_PREFIX", settings.redis_key_prefix)
    monkeypatch.setenv("FEEDCTL_FEED_CAP", str(settings.feed_cap))
    monkeypatch.setenv("FEEDCTL_FEED_RETENTION", settings.feed_retention)
    urls = ["--database-url", str(settings.database_url), "--redis-url", str(settings.redis_url)]
    extra = ["--cursor", cursor] if cursor else []
    result = invoke([*urls, "--json", "feed", kind, str(feed_id), "--limit", "6", *extra])
    assert result.exit_code == 0, result.output
    page: dict[str, Any] = json.loads(result.stdout)
    return page


def items(page: dict[str, Any]) -> list[dict[str, Any]]:
    return list(page["items"])


def test_every_route_against_a_live_server(
    world: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, own_redis: EmbeddedRedis
) -> None:
    settings = dataclasses.replace(world.settings, redis_url=own_redis.url)
    with serving(settings, tmp_path) as served, served.client() as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        assert http.get("/readyz").json() == {"postgres": True, "redis": True}

        # Pages: the same JSON as `feedctl feed ... --json`, walked with either's cursors.
        for kind, path, ids in (
            ("user", "/v1/users/{}/feed", first_ids(world, "users", 3)),
            ("community", "/v1/communities/{}/feed", first_ids(world, "communities", 2)),
        ):
            for feed_id in ids:
                cursor = None
                for _ in range(3):
                    params: dict[str, Any] = {"limit": 6}
                    if cursor:
                        params["cursor"] = cursor
                    response = http.get(path.format(feed_id), params=params)
                    assert response.status_code == 200, response.text
                    served_page = response.json()
                    assert set(served_page) == {"items", "next_cursor"}
                    assert items(served_page) == items(
                        cli_page(settings, monkeypatch, kind, feed_id, cursor)
                    )
                    cursor = served_page["next_cursor"]
                    if cursor is None:
                        break

        # The first pages again: their feeds were cached by the walks' first reads, so these
        # come from Redis alone (counted below).
        for user_id in first_ids(world, "users", 3):
            assert http.get(f"/v1/users/{user_id}/feed", params={"limit": 6}).status_code == 200

        # Bad input: JSON errors, never a trace.
        missing = http.get("/v1/users/999999/feed")
        assert missing.status_code == 404
        assert missing.json() == {"detail": "user 999999 does not exist"}
        assert http.get("/v1/communities/999999/feed").status_code == 404
        for params in ({"limit": 0}, {"limit": 501}, {"limit": "x"}, {"cursor": "forged"}):
            bad = http.get(f"/v1/users/{first_ids(world, 'users', 1)[0]}/feed", params=params)
            assert bad.status_code == 422, (params, bad.text)
            assert isinstance(bad.json()["detail"], str)
        assert http.get("/v1/users/abc/feed").status_code == 422
        assert http.get("/v1/users/99999999999999999999/feed").status_code == 422

        # Rebuilds: behind the token.
        user_id = first_ids(world, "users", 1)[0]
        body = {"kind": "user", "id": user_id}
        refused = http.post("/v1/rebuilds", json=body)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"
        wrong = http.post("/v1/rebuilds", json=body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 403
        auth = {"Authorization": f"Bearer {TOKEN}"}
        done = http.post("/v1/rebuilds", json=body, headers=auth)
        assert done.status_code == 200, done.text
        assert done.json()["status"] == "done" and done.json()["report"]["users"] == 1
        again = http.get(f"/v1/rebuilds/{done.json()['id']}", headers=auth)
        assert again.json() == done.json()
        assert http.get(f"/v1/rebuilds/{done.json()['id']}").status_code == 401
        assert http.get("/v1/rebuilds/nothing", headers=auth).status_code == 404
        community = {"kind": "community", "id": first_ids(world, "communities", 1)[0]}
        assert http.post("/v1/rebuilds", json=community, headers=auth).json()["status"] == "done"
        unknown = http.post("/v1/rebuilds", json={"kind": "user", "id": 999999}, headers=auth)
        assert unknown.status_code == 404
        for wrong_body in ({"kind": "user"}, {"kind": "all", "id": 1}, {"kind": "x"}, {}):
            assert http.post("/v1/rebuilds", json=wrong_body, headers=auth).status_code == 422
        started = http.post("/v1/rebuilds", json={"kind": "all"}, headers=auth)
        assert started.status_code == 202, started.text
        run = started.json()
        for _ in range(300):
            run = http.get(f"/v1/rebuilds/{run['id']}", headers=auth).json()
            if run["status"] != "running":
                break
            time.sleep(0.1)
        assert run["status"] == "done", run
        assert run["users_done"] == run["users_total"] == WORLD.users
        finished = world.conn.execute(
            "SELECT finished_at IS NOT NULL FROM feed_rebuild_run WHERE name = 'all'"
        ).fetchone()
        assert finished == (True,)

        # Metrics: per route, hits and misses.
        text = http.get("/metrics").text
        assert (
            'feedctl_api_requests_total{method="GET",route="/v1/users/{user_id}/feed",status="200"}'
            in text
        )
        assert (
            'feedctl_api_request_duration_seconds_bucket{le="0.01",method="GET",route="/v1/users/{user_id}/feed"}'
            in text
        )
        assert 'route="/v1/rebuilds",status="401"' in text
        assert _value(text, 'feedctl_api_cache_hits_total{kind="user"}') > 0
        assert _value(text, 'feedctl_api_redis_alone_pages_total{kind="user"}') > 0
        assert _value(text, "feedctl_api_redis_failures_total") == 0

        # Redis down: pages still served, from PostgreSQL; readiness says so; failures counted.
        expected = http.get(f"/v1/users/{user_id}/feed", params={"limit": 6}).json()
        own_redis.stop()
        try:
            still = http.get(f"/v1/users/{user_id}/feed", params={"limit": 6})
            assert still.status_code == 200
            assert items(still.json()) == items(expected)
            not_ready = http.get("/readyz")
            assert not_ready.status_code == 503
            assert not_ready.json() == {"postgres": True, "redis": False}
            assert _value(http.get("/metrics").text, "feedctl_api_redis_failures_total") > 0
        finally:
            own_redis.start()
        assert served.terminate() == 0
    assert "Traceback" not in served.log_text()


def _value(text: str, sample: str) -> float:
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{sample} not in the metrics")


def test_rebuilds_are_refused_when_no_token_is_configured(world: Context, tmp_path: Path) -> None:
    with serving(world.settings, tmp_path, token=None) as served, served.client() as http:
        refused = http.post(
            "/v1/rebuilds", json={"kind": "all"}, headers={"Authorization": "Bearer anything"}
        )
        assert refused.status_code == 403
        assert "no api_token is configured" in refused.json()["detail"]
        assert http.get("/v1/rebuilds/x").status_code == 403
        assert served.terminate() == 0


def test_database_down_is_503_and_never_a_trace(settings: Settings, tmp_path: Path) -> None:
    from ops_tools import free_port

    down = dataclasses.replace(settings, database_url=f"postgresql://127.0.0.1:{free_port()}/x")
    with serving(down, tmp_path) as served, served.client() as http:
        assert http.get("/healthz").status_code == 200
        page = http.get("/v1/users/1/feed")
        assert page.status_code == 503
        assert "PostgreSQL" in page.json()["detail"]
        ready = http.get("/readyz")
        assert ready.status_code == 503 and ready.json()["postgres"] is False
        assert served.terminate() == 0
    assert "Traceback" not in served.log_text()


def test_sigterm_lets_an_in_flight_request_finish_and_closes_the_pools(
    world: Context, tmp_path: Path
) -> None:
    user_id = first_ids(world, "users", 1)[0]
    database = psycopg.conninfo.conninfo_to_dict(str(world.database_url))["dbname"]
    with serving(world.settings, tmp_path) as served, served.client() as http:
        expected = http.get(f"/v1/users/{user_id}/feed").json()
        result: dict[str, httpx.Response] = {}
        time.sleep(0.3)  # past cache_state_ms: the next read asks PostgreSQL about the cache
        with psycopg.connect(str(world.database_url)) as blocker:
            # what that read queries first, and what a page from PostgreSQL reads
            blocker.execute("LOCK TABLE feed_offset_state, feed_entry IN ACCESS EXCLUSIVE MODE")
            reader = threading.Thread(
                target=lambda: result.setdefault("page", http.get(f"/v1/users/{user_id}/feed"))
            )
            reader.start()
            _wait_for_a_blocked_query(world, database)
            served.process.send_signal(15)
            time.sleep(0.5)
            assert served.process.poll() is None, "the server quit with a request in flight"
            blocker.commit()  # the lock goes: the in-flight request can finish
        reader.join(30)
        assert result["page"].status_code == 200
        assert result["page"].json()["items"] == expected["items"]
        assert served.process.wait(30) == 0
    left = world.conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
        (database,),
    ).fetchone()
    assert left == (0,), "the server's pooled connections are still open"


def _wait_for_a_blocked_query(world: Context, database: str) -> None:
    for _ in range(200):
        row = world.conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
            (database,),
        ).fetchone()
        if row and row[0]:
            return
        time.sleep(0.05)
    raise AssertionError("the request never reached PostgreSQL")


def test_several_workers_serve_the_same_pages(world: Context, tmp_path: Path) -> None:
    user_id = first_ids(world, "users", 1)[0]
    with serving(world.settings, tmp_path, "--workers", "2") as served, served.client() as http:
        pages = [http.get(f"/v1/users/{user_id}/feed", params={"limit": 5}) for _ in range(6)]
        assert {page.status_code for page in pages} == {200}
        assert len({json.dumps(page.json()["items"]) for page in pages}) == 1
        assert http.get("/readyz").status_code == 200
        assert served.terminate() == 0
    assert "Traceback" not in served.log_text()
