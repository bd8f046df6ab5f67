"""The rebuilds one `feedctl serve` process started: what POST /v1/rebuilds records and
GET /v1/rebuilds/{id} reads.

A user's or a community's rebuild runs within its request; a rebuild of every feed runs on
a thread of its own, one at a time, recording its progress in PostgreSQL after every chunk
like `feedctl rebuild --all` (it is the same pipeline), so a run stopped by a shut-down is
continued by a later one started with `resume`. Records live in this process's memory, the
last MAX_RECORDS of them.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from feedctl.client import Client, RebuildReport
from feedctl.errors import FeedctlError, LockedError
from feedctl.server_errors import as_feedctl_error

MAX_RECORDS = 1_000
Status = Literal["running", "done", "stopped", "failed"]
Kind = Literal["user", "community", "all"]


@dataclasses.dataclass
class RebuildRecord:
    """One rebuild, as GET /v1/rebuilds/{id} shows it."""

    id: str
    kind: Kind
    target_id: int | None
    resume: bool
    status: Status = "running"
    started_at: datetime = dataclasses.field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None
    users_total: int | None = None
    users_done: int = 0
    error: str | None = None
    report: RebuildReport | None = None

    def finish(self, report: RebuildReport) -> None:
        self.report = report
        self.users_done = report.users
        self.status = "stopped" if report.stopped else "done"
        self.finished_at = datetime.now(UTC)

    def fail(self, message: str) -> None:
        self.error = message
        self.status = "failed"
        self.finished_at = datetime.now(UTC)

    def as_json(self) -> dict[str, Any]:
        report = None
        if self.report is not None:
            report = {
                key: value
                for key, value in dataclasses.asdict(self.report).items()
                if key not in ("sample", "dry_run")
            }
        return {
            "id": self.id,
            "kind": self.kind,
            "target_id": self.target_id,
            "resume": self.resume,
            "status": self.status,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "users_total": self.users_total,
            "users_done": self.users_done,
            "error": self.error,
            "report": report,
        }


class _RecordProgress:
    """The Progress protocol (feedctl.progress) written into a record."""

    def __init__(self, record: RebuildRecord) -> None:
        self.record = record

    def phase(self, name: str, total: int | None = None) -> None:
        self.record.users_total = total

    def advance(self, done: int) -> None:
        self.record.users_done += done

    def status(self, text: str) -> None:
        return None


class AlreadyRunning(FeedctlError):
    """This process is rebuilding every feed already."""


class RebuildRuns:
    """The records, and the one background rebuild of every feed."""

    def __init__(self) -> None:
        self._records: collections.OrderedDict[str, RebuildRecord] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def get(self, rebuild_id: str) -> RebuildRecord | None:
        with self._lock:
            return self._records.get(rebuild_id)

    def new(self, kind: Kind, target_id: int | None, resume: bool = False) -> RebuildRecord:
        record = RebuildRecord(uuid.uuid4().hex, kind, target_id, resume)
        with self._lock:
            self._records[record.id] = record
            while len(self._records) > MAX_RECORDS:
                self._records.popitem(last=False)
        return record

    def start_all(self, client: Client, resume: bool) -> RebuildRecord:
        """Start rebuilding every feed on a thread; AlreadyRunning if one runs here."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                raise AlreadyRunning("this server is rebuilding every feed already")
            if self._stop.is_set():
                raise LockedError("the server is shutting down")
        record = self.new("all", None, resume)
        thread = threading.Thread(
            target=self._run_all, args=(client, record), name="feedctl-rebuild-all", daemon=True
        )
        with self._lock:
            self._thread = thread
        thread.start()
        return record

    def _run_all(self, client: Client, record: RebuildRecord) -> None:
        try:
            report = client.rebuild_all(
                resume=record.resume, progress=_RecordProgress(record), stop=self._stop
            )
        except Exception as exc:
            error = as_feedctl_error(exc)
            if isinstance(error, LockedError):
                record.fail("another rebuild of every feed is running (it holds the lock)")
            else:
                record.fail(error.message if error else f"unexpected {type(exc).__name__}")
            return
        record.finish(report)

    def stop(self, timeout: float | None = None) -> None:
        """Ask the background rebuild to stop after its current chunk, and wait for it."""
        self._stop.set()
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
