"""Log lines of job runs: one JSON object a line when stderr is not a terminal (cron, a
log shipper), a short human line on a terminal. Every line of a run carries its job name
and run id.

The library logs through `logging.getLogger("feedctl....")` with `extra={...}` fields; the
CLI chooses the format with `configure`.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

ROOT = "feedctl"
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The `extra` fields a record was logged with."""
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


class JsonLines(logging.Formatter):
    """{"time", "level", "logger", "message", ...extra fields} on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **fields_of(record),
        }
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class HumanLines(logging.Formatter):
    """`12:00:01 fanout#42 finished: succeeded  exit_code=0  seconds=1.2` (the counts are
    left to the table the command prints)."""

    def format(self, record: logging.LogRecord) -> str:
        fields = fields_of(record)
        when = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        who = str(fields.pop("job", record.name))
        run_id = fields.pop("run_id", None)
        if run_id is not None:
            who += f"#{run_id}"
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        fields.pop("counts", None)
        fields.pop("outcome", None)  # the message says it
        details = "  ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        line = f"{when} {who} {level}{record.getMessage()}"
        if details:
            line += f"  {details}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


_installed: list[logging.Handler] = []


def configure(stream: TextIO | None = None, *, as_json: bool | None = None) -> None:
    """Send feedctl's log records to `stream` (stderr): JSON lines unless it is a terminal."""
    target = stream or sys.stderr
    if as_json is None:
        as_json = not (hasattr(target, "isatty") and target.isatty())
    logger = logging.getLogger(ROOT)
    for handler in _installed:
        logger.removeHandler(handler)
    _installed.clear()
    handler = logging.StreamHandler(target)
    handler.setFormatter(JsonLines() if as_json else HumanLines())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    _installed.append(handler)
