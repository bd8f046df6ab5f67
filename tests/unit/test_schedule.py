"""cron.d/feedctl: valid cron syntax, every line runs an existing job, every job is run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from feedctl.jobs.definitions import load_jobs

REPO = Path(__file__).resolve().parents[2]
CRON_FILE = REPO / "cron.d" / "feedctl"

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
# field: (lowest, highest, names)
FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, MONTHS),
    ("day of week", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)
SPECIAL = {
    "@reboot",
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
}
ENVIRONMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\s*=")
USER = re.compile(r"^[a-z_][a-z0-9_-]*$")
JOB_RUN = re.compile(r"(?:^|\s)feedctl jobs run ([a-z0-9_-]+)(?:\s|$)")


def field_error(text: str, low: int, high: int, names: tuple[str, ...]) -> str | None:
    """Why one cron time field is invalid (vixie cron / cronie syntax), or None."""
    for item in text.split(","):
        base, _, step = item.partition("/")
        if step and not (step.isdigit() and int(step) > 0):
            return f"bad step {step!r}"
        if base == "*":
            continue
        first, dash, last = base.partition("-")
        bounds = []
        for part in (first, last) if dash else (first,):
            if part.lower() in names:
                bounds.append(names.index(part.lower()) + (1 if low == 1 else 0))
            elif part.isdigit():
                bounds.append(int(part))
            else:
                return f"{part!r} is not a number or name"
        if any(not low <= b <= high for b in bounds):
            return f"{base!r} is outside {low}-{high}"
        if dash and bounds[0] > bounds[1]:
            return f"range {base!r} runs backwards"
        if step and not dash:
            return f"a step needs * or a range, not {base!r}"
    return None


def schedule_error(line: str) -> str | None:
    """Why a job line of an /etc/cron.d file is invalid, or None."""
    words = line.split()
    if words[0].startswith("@"):
        if words[0] not in SPECIAL:
            return f"unknown special schedule {words[0]!r}"
        rest = words[1:]
    else:
        if len(words) < 7:
            return "expected five time fields, a user and a command"
        for (name, low, high, names), text in zip(FIELDS, words[:5], strict=True):
            problem = field_error(text, low, high, names)
            if problem:
                return f"{name}: {problem}"
        rest = words[5:]
    if len(rest) < 2 or not USER.match(rest[0]):
        return "expected a user name, then a command"
    return None


def job_lines() -> list[str]:
    lines = []
    for raw in CRON_FILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and not ENVIRONMENT.match(line):
            lines.append(line)
    return lines


def test_cron_file_is_installable_as_is() -> None:
    text = CRON_FILE.read_text(encoding="utf-8")
    assert text.endswith("\n"), "cron ignores a last line without a newline"
    assert "." not in CRON_FILE.name, "cron ignores /etc/cron.d files with dots in the name"
    assert "\r" not in text and "\t" not in text


def test_every_cron_line_is_valid_and_runs_an_existing_job() -> None:
    jobs = {job.name for job in load_jobs(REPO / "jobs")}
    scheduled = []
    for line in job_lines():
        assert schedule_error(line) is None, f"{line!r}: {schedule_error(line)}"
        found = JOB_RUN.findall(line)
        assert len(found) == 1, f"{line!r} does not run exactly one `feedctl jobs run NAME`"
        assert found[0] in jobs, f"{line!r} runs {found[0]!r}, which is not in jobs/"
        scheduled.append(found[0])
    assert sorted(scheduled) == sorted(jobs), "every job is scheduled exactly once"


@pytest.mark.parametrize(
    "line",
    [
        "* * * * * feedctl feedctl jobs run fanout",
        "*/5 * * * * feedctl cmd",
        "0,30 8-18/2 1-15 jan-jun mon-fri feedctl cmd",
        "15 3 * * sun feedctl cmd",
        "0 0 * * 7 feedctl cmd",
        "@hourly feedctl cmd",
    ],
)
def test_valid_schedules_pass(line: str) -> None:
    assert schedule_error(line) is None


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("60 * * * * u cmd", "outside 0-59"),
        ("* 24 * * * u cmd", "outside 0-23"),
        ("* * 0 * * u cmd", "outside 1-31"),
        ("* * * 13 * u cmd", "outside 1-12"),
        ("* * * * 8 u cmd", "outside 0-7"),
        ("*/0 * * * * u cmd", "bad step"),
        ("5-2 * * * * u cmd", "backwards"),
        ("5/2 * * * * u cmd", "a step needs"),
        ("x * * * * u cmd", "not a number"),
        ("* * * * funday u cmd", "not a number"),
        ("* * * * * feedctl", "five time fields"),
        ("* * * * * 9user cmd", "user name"),
        ("@sometimes u cmd", "unknown special"),
    ],
)
def test_invalid_schedules_are_caught(line: str, fragment: str) -> None:
    problem = schedule_error(line)
    assert problem is not None and fragment in problem
