"""The metrics of one run: names, values, what a failure leaves in place, the textfile."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from feedctl import metrics
from feedctl.jobs.commands import COMMANDS
from feedctl.pipelines.cache.vacuum import VacuumReport
from feedctl.pipelines.cache.verify import VerifyReport
from feedctl.pipelines.cache.writes import CacheReport
from feedctl.pipelines.expire import ExpireReport
from feedctl.pipelines.fanout.run import FanoutReport
from feedctl.pipelines.ranking.nightly import RankReport

from ops_tools import free_port

REPORTS = {
    "fanout": FanoutReport,
    "rank": RankReport,
    "cache warm": CacheReport,
    "cache repair": CacheReport,
    "cache verify": VerifyReport,
    "cache vacuum": VacuumReport,
    "expire": ExpireReport,
}
# Commands whose Redis writes, when they fail, are counted and marked for repair (verify
# writes nothing to Redis; vacuum only drops and trims, and fails outright if Redis does).
MARKS_FOR_REPAIR = {"fanout", "rank", "cache warm", "cache repair", "expire"}


def samples(registry: CollectorRegistry) -> dict[str, float]:
    return {s.name: s.value for family in registry.collect() for s in family.samples}


def fanout_run(exit_code: int = 0) -> metrics.RunMetrics:
    report = FanoutReport(events=12, entries_written=340, entries_removed=2, lag_events=5)
    report.lag_seconds = 7.5
    report.redis_failures = 3
    return metrics.RunMetrics(
        job="fanout",
        command="fanout",
        exit_code=exit_code,
        seconds=1.25,
        finished_at=1_700_000_000.0,
        counts=dataclasses.asdict(report),
        failures_in_a_row=0,
        feeds_awaiting_repair=4,
    )


@pytest.mark.parametrize("command", list(REPORTS))
def test_every_count_metric_reads_a_field_of_its_report(command: str) -> None:
    fields = {f.name for f in dataclasses.fields(REPORTS[command])}
    counted = (metrics.REDIS_FAILURES,) if command in MARKS_FOR_REPAIR else ()
    for metric in (*metrics.COUNT_METRICS[command], *counted):
        assert metric.field in fields, f"{metric.name} reads {metric.field!r}"


def test_every_job_command_has_metrics() -> None:
    runnable = {c for c, spec in COMMANDS.items() if spec.run is not None}
    assert runnable <= set(metrics.COUNT_METRICS)


def test_a_successful_run_reports_counts_duration_and_last_success() -> None:
    values = samples(metrics.registry_of(fanout_run()))
    assert values == {
        "feedctl_job_duration_seconds": 1.25,
        "feedctl_job_exit_code": 0,
        "feedctl_job_last_run_timestamp_seconds": 1_700_000_000.0,
        "feedctl_job_last_success_timestamp_seconds": 1_700_000_000.0,
        "feedctl_job_consecutive_failures": 0,
        "feedctl_feeds_awaiting_repair": 4,
        "feedctl_fanout_events": 12,
        "feedctl_fanout_entries_written": 340,
        "feedctl_fanout_entries_removed": 2,
        "feedctl_fanout_lag_events": 5,
        "feedctl_fanout_lag_seconds": 7.5,
        "feedctl_fanout_feeds_marked_for_repair": 0,
        "feedctl_redis_write_failures": 3,
    }
    assert set(values) <= metrics.exported_names()


def test_partial_counts_as_success_and_failure_does_not() -> None:
    assert "feedctl_job_last_success_timestamp_seconds" in samples(
        metrics.registry_of(fanout_run(exit_code=3))
    )
    failed = samples(metrics.registry_of(fanout_run(exit_code=1)))
    assert "feedctl_job_last_success_timestamp_seconds" not in failed
    assert failed["feedctl_job_exit_code"] == 1


def test_a_run_without_a_report_reports_only_what_it_knows() -> None:
    run = metrics.RunMetrics("rank", "rank", 1, 0.5, 1_700_000_000.0)
    assert set(samples(metrics.registry_of(run))) == {
        "feedctl_job_duration_seconds",
        "feedctl_job_exit_code",
        "feedctl_job_last_run_timestamp_seconds",
    }


def test_every_exported_name_is_produced_by_some_run() -> None:
    produced: set[str] = set()
    for command, report_type in REPORTS.items():
        report = report_type(heuristic_version="v") if report_type is RankReport else report_type()
        if isinstance(report, FanoutReport):
            report.lag_seconds = 0.0  # what every finished fan-out run measures
        run = metrics.RunMetrics(command, command, 0, 1.0, 1.0, dataclasses.asdict(report), 0, 0)
        produced |= set(samples(metrics.registry_of(run)))
    assert produced == metrics.exported_names()
    for name in produced:
        assert name.startswith("feedctl_")
        assert not name.endswith("_total"), "per-run values are gauges, not counters"


def read_textfile(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(path.read_text())
        for s in family.samples
    }


def test_textfile_has_job_and_instance_labels_and_keeps_the_last_success(tmp_path: Path) -> None:
    path = tmp_path / "feedctl_fanout.prom"
    assert metrics.deliver(fanout_run(), pushgateway_url=None, textfile=path, instance="h") is None
    labels = (("instance", "h"), ("job", "fanout"))
    first = read_textfile(path)
    assert first[("feedctl_fanout_events", labels)] == 12
    assert first[("feedctl_job_last_success_timestamp_seconds", labels)] == 1_700_000_000.0
    failed = metrics.RunMetrics("fanout", "fanout", 1, 2.0, 1_700_000_600.0)
    assert metrics.deliver(failed, pushgateway_url=None, textfile=path, instance="h") is None
    second = read_textfile(path)
    assert second[("feedctl_job_exit_code", labels)] == 1
    assert second[("feedctl_job_last_run_timestamp_seconds", labels)] == 1_700_000_600.0
    assert second[("feedctl_job_last_success_timestamp_seconds", labels)] == 1_700_000_000.0
    assert second[("feedctl_fanout_events", labels)] == 12  # not reported again: kept
    assert list(tmp_path.iterdir()) == [path], "written atomically, no temporary file left"


def test_a_fanout_shard_carries_its_shard_label(tmp_path: Path) -> None:
    path = tmp_path / "feedctl_fanout.prom"
    run = dataclasses.replace(fanout_run(), grouping={"shard": "1/3"})
    assert metrics.deliver(run, pushgateway_url=None, textfile=path, instance="h") is None
    labels = (("instance", "h"), ("job", "fanout"), ("shard", "1/3"))
    assert read_textfile(path)[("feedctl_fanout_events", labels)] == 12


def test_an_unreadable_previous_textfile_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "feedctl.prom"
    path.write_text("this is { not prometheus text\n")
    assert metrics.deliver(fanout_run(), pushgateway_url=None, textfile=path) is None
    labels = (("instance", metrics.instance_name()), ("job", "fanout"))
    assert ("feedctl_fanout_events", labels) in read_textfile(path)


def test_an_unreachable_pushgateway_is_a_warning_not_an_error(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    warning = metrics.deliver(fanout_run(), pushgateway_url=url)
    assert warning is not None
    expected = f"could not deliver the metrics of job fanout to the Pushgateway at {url}: "
    assert warning.startswith(expected)
    unwritable = tmp_path / "missing-folder" / "x.prom"
    warning = metrics.deliver(fanout_run(), pushgateway_url=None, textfile=unwritable)
    assert warning is not None and str(unwritable) in warning


def test_nothing_is_delivered_without_a_destination() -> None:
    assert metrics.deliver(fanout_run(), pushgateway_url=None) is None
