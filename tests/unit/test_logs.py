"""Log lines of job runs: JSON lines off a terminal, human lines on one."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from feedctl import logs


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    logs.configure(io.StringIO())


def emit() -> None:
    log = logging.getLogger("feedctl.jobs")
    log.info("started", extra={"job": "fanout", "run_id": 7, "command": "feedctl fanout"})
    log.error(
        "finished: failed: boom",
        extra={"job": "fanout", "run_id": 7, "exit_code": 1, "counts": {"events": 3}},
    )


def test_json_lines_off_a_terminal() -> None:
    stream = io.StringIO()
    logs.configure(stream)
    emit()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["message"] for line in lines] == ["started", "finished: failed: boom"]
    assert all(line["job"] == "fanout" and line["run_id"] == 7 for line in lines)
    assert lines[0]["level"] == "info" and lines[1]["level"] == "error"
    assert lines[0]["command"] == "feedctl fanout"
    assert lines[1]["counts"] == {"events": 3} and lines[1]["exit_code"] == 1
    assert lines[0]["time"].endswith("+00:00")


def test_human_lines_on_a_terminal() -> None:
    stream = Terminal()
    logs.configure(stream)
    emit()
    first, second = stream.getvalue().splitlines()
    assert first.endswith(" fanout#7 started  command=feedctl fanout")
    assert second.endswith(" fanout#7 error: finished: failed: boom  exit_code=1")
    with pytest.raises(json.JSONDecodeError):
        json.loads(first)


def test_configure_replaces_its_own_handler() -> None:
    old, new = io.StringIO(), io.StringIO()
    logs.configure(old)
    logs.configure(new)
    emit()
    assert old.getvalue() == "" and len(new.getvalue().splitlines()) == 2
