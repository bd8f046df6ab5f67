"""`feedctl serve` as a real process on a free loopback port, against a test's own servers."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from feedctl.config import Settings

from ops_tools import free_port
from processes import feedctl_env

TOKEN = "test-token-0123456789abcdef"


class Served:
    """A running `feedctl serve`: its URL, its process and its log."""

    def __init__(self, process: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.process = process
        self.url = url
        self.log = log

    def client(self, **options: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **options)  # type: ignore[arg-type]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, then the exit code (the process must end by itself within `timeout`)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


@contextlib.contextmanager
def serving(
    settings: Settings, tmp_path: Path, *args: str, token: str | None = TOKEN
) -> Iterator[Served]:
    port = free_port()
    extra = {"FEEDCTL_API_TOKEN": token} if token else {}
    log = tmp_path / f"serve-{port}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "feedctl", "serve", "--port", str(port), *args],
            env=feedctl_env(settings, **extra),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    served = Served(process, f"http://127.0.0.1:{port}", log)
    try:
        _wait_until_up(served)
        yield served
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def _wait_until_up(served: Served, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            raise AssertionError(f"feedctl serve exited early:\n{served.log_text()}")
        try:
            if httpx.get(served.url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"feedctl serve did not answer in time:\n{served.log_text()}")
