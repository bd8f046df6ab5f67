"""Alert rules (checked and unit-tested with promtool) and the Grafana dashboard: every
query is valid PromQL and names only metrics feedctl exports."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from feedctl.metrics import exported_names

from ops_tools import require_tool

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "monitoring"
RULES = MONITORING / "feedctl-alerts.yml"
RULE_TESTS = MONITORING / "feedctl-alerts.test.yml"
DASHBOARD = MONITORING / "feedctl-dashboard.json"

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or"}
KEYWORDS |= {"unless", "bool", "offset", "inf", "nan"}
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, labels or keywords)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = GROUPING.sub("", text)
    text = re.sub(r"\$\w+", "", text)  # Grafana variables
    names = set()
    for match in IDENTIFIER.finditer(text):
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or match.group().lower() in KEYWORDS:
            continue
        if match.start() > 0 and text[match.start() - 1].isdigit():
            continue  # a unit such as the h in 26h
        names.add(match.group())
    return names


def run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=120)


def test_metric_names_reads_promql() -> None:
    expr = (
        'max by (instance) (feedctl_a{job="x", b=~"$instance"} and on (job) '
        "(time() - feedctl_b[5m] < 600)) > 26 * 3600 or absent(feedctl_c)"
    )
    assert metric_names(expr) == {"feedctl_a", "feedctl_b", "feedctl_c"}
    assert metric_names("rate(http_requests_total[5m])") == {"http_requests_total"}


def test_promtool_checks_the_alert_rules() -> None:
    promtool = require_tool("promtool")
    result = run(promtool, "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_of_the_alert_rules_pass() -> None:
    promtool = require_tool("promtool")
    result = run(promtool, "test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_unit_tested_and_uses_exported_metrics() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    alerts = {rule["alert"] for rule in rules}
    required = {"FeedctlRedisWriteFailures", "FeedctlFanoutLagHigh", "FeedctlRankNotSucceeded"}
    assert required | {"FeedctlJobFailing"} <= alerts
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    tested = {case["alertname"] for test in tests for case in test.get("alert_rule_test", [])}
    assert alerts == tested
    for rule in rules:
        names = metric_names(rule["expr"])
        assert names and names <= exported_names(), (rule["alert"], names - exported_names())
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def dashboard_queries(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str) and (key == "expr" or (key == "query" and "(" in value)):
                yield value
            else:
                yield from dashboard_queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from dashboard_queries(item)


def test_every_dashboard_query_names_only_metrics_feedctl_exports() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert len(panels) >= 8
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            assert names, f"{panel['title']}: {target['expr']!r} names no metric"
            unknown = names - exported_names()
            assert not unknown, f"{panel['title']}: unknown {unknown}"
    shown = {n for q in dashboard_queries(dashboard) for n in metric_names(q)}
    wanted = {
        "feedctl_fanout_events",
        "feedctl_redis_write_failures",
        "feedctl_rank_posts_rescored",
        "feedctl_repair_feeds_repaired",
        "feedctl_job_duration_seconds",
        "feedctl_job_last_success_timestamp_seconds",
        "feedctl_fanout_lag_seconds",
    }
    assert wanted <= shown


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [
        target["expr"].replace("$instance", ".*")
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]
    rules = tmp_path / "dashboard-queries.yml"
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for index, query in enumerate(queries):
        lines += [f"      - record: dashboard:query_{index}", f"        expr: {json.dumps(query)}"]
    rules.write_text("\n".join(lines) + "\n")
    result = run(promtool, "check", "rules", str(rules))
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_missing_tool_fails_in_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="make tools"):
        require_tool("feedctl-no-such-tool")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="feedctl-no-such-tool is not installed"):
        require_tool("feedctl-no-such-tool")
