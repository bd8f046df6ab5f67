"""What the embedded PostgreSQL and Redis share: ports, processes, commands, one base class.

psutil comes with the `embedded` extra, so it is imported where a process is looked at,
never when feedctl.services is imported.
"""

from __future__ import annotations

import abc
import contextlib
import importlib.util
import os
import pwd
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from feedctl.errors import NotInstalledError, ServiceUnavailableError

if TYPE_CHECKING:
    import psutil

EMBEDDED_EXTRA = "pip install 'feedctl[embedded]'"
HOST = "127.0.0.1"
STOP_STEP_SECONDS = 5.0  # how long each way of stopping a server gets before the next


@dataclass(frozen=True)
class ServiceStatus:
    """What `feedctl services status` shows for one server."""

    name: str
    running: bool
    url: str | None
    pid: int | None
    data_dir: Path


# --- ports ---------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def port_free(port: int) -> bool:
    """True when a server could listen on the port (TIME_WAIT leftovers do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def port_open(port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on the port."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(check: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    """Poll `check()` until it is true or `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)


def port_released(port: int, timeout: float = 2.0) -> bool:
    """Wait until nothing listens on the port and it can be bound again.

    A killed server's socket can stay bound for a moment after the process is gone.
    Gives up at once when something accepts connections on the port.
    """
    return wait_until(lambda: port_free(port) or port_open(port, 0.1), timeout) and (
        port_free(port)
    )


# --- processes -----------------------------------------------------------------------


def process_alive(process: psutil.Process) -> bool:
    """True while any thread of the process runs.

    A zombie leader alone is dead, but while its other threads are torn down (after a
    SIGKILL) they may still hold the server's port.
    """
    import psutil

    gone = (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    try:
        if not process.is_running():  # also: the pid now belongs to another process
            return False
        if process.status() not in gone:
            return True
        threads = process.threads()
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # it exists; its state cannot be read
    for thread in threads:
        try:
            if psutil.Process(thread.id).status() not in gone:
                return True
        except psutil.NoSuchProcess:
            continue  # the thread just ended
    return False


def live_process(pid: int, name_prefix: str | None = None) -> psutil.Process | None:
    """The live process with this pid, when its executable's name starts with `name_prefix`.

    A name that cannot be read counts as a match (the process exists, it is not ours to see).
    """
    import psutil

    try:
        process = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None
    if not process_alive(process):
        return None
    if name_prefix is None:
        return process
    try:
        name: str = process.name()
    except psutil.AccessDenied:
        return process
    except psutil.NoSuchProcess:
        return None
    return process if name.startswith(name_prefix) else None


def process_title(process: psutil.Process) -> str | None:
    """The command line a process shows (servers put their address there), or None."""
    import psutil

    try:
        return " ".join(process.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def send_signal(process: psutil.Process, signal: int) -> None:
    """Signal the process; nothing when it is gone (or its pid went to another process)."""
    import psutil

    with contextlib.suppress(psutil.NoSuchProcess):
        process.send_signal(signal)


# --- files and commands ---------------------------------------------------------------


def read_pid(path: Path) -> int | None:
    """The pid on the first line of a pid file, or None."""
    try:
        return int(path.read_text().split("\n", 1)[0].strip())
    except (OSError, ValueError):
        return None


def tail(path: Path, lines: int = 3) -> str:
    """The last lines of a log file, joined on one line."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"no log at {path}"
    kept = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    return " | ".join(kept) or f"{path} is empty"


def _child_env() -> dict[str, str]:
    """The environment without PG* variables, which could redirect the tools."""
    return {key: value for key, value in os.environ.items() if not key.startswith("PG")}


def run(args: list[str], *, account: pwd.struct_passwd | None, timeout: float) -> tuple[int, str]:
    """Run a command (as `account` if given); return its exit code and output."""
    extra: dict[str, Any] = {}
    if account is not None:
        extra = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    with tempfile.TemporaryFile("w+") as out:
        try:
            done = subprocess.run(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd="/",
                env=_child_env(),
                timeout=timeout,
                check=False,
                **extra,
            )
            code = done.returncode
        except subprocess.TimeoutExpired:
            code = -1
        except OSError as exc:
            raise ServiceUnavailableError(f"cannot run {args[0]}: {exc}") from exc
        out.seek(0)
        return code, out.read().strip()


# --- one embedded server -------------------------------------------------------------


class EmbeddedServer(abc.ABC):
    """One server on 127.0.0.1, from the binaries of a pip package, with its data folder.

    Subclasses say how to find the server of their data folder, how to launch it and how
    to stop it; claiming a port, adopting a running server and waiting for the port to
    close after a stop are the same for every server. Not locked against other
    processes: `feedctl.services.home` adds that.
    """

    name: ClassVar[str]  # "postgres" or "redis": the status name and the folder under home
    label: ClassVar[str]  # how messages call it
    package: ClassVar[str]  # the pip package that ships the binaries

    def __init__(
        self, data_dir: Path, port: int | None = None, *, strict_port: bool = True
    ) -> None:
        """With `port`, start there; `strict_port=False` takes another free port when it
        is taken (a preference, such as the port a previous run used)."""
        self._data_dir = data_dir
        self._port = port if port is not None else free_port()
        self._port_fixed = port is not None and strict_port

    @classmethod
    def installed(cls) -> bool:
        """Whether the `embedded` extra is there for this server (looked up, not imported)."""
        return all(importlib.util.find_spec(name) is not None for name in (cls.package, "psutil"))

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    @property
    def port(self) -> int:
        return self._port

    @property
    @abc.abstractmethod
    def url(self) -> str:
        """The URL clients connect to."""

    @property
    def pid(self) -> int | None:
        """The server's pid while it runs."""
        found = self._listening()
        return found[0].pid if found is not None else None

    @property
    def running(self) -> bool:
        return self._listening() is not None

    def status(self) -> ServiceStatus:
        pid = self.pid
        running = pid is not None
        return ServiceStatus(self.name, running, self.url if running else None, pid, self.data_dir)

    @abc.abstractmethod
    def _recorded(self) -> tuple[psutil.Process, int] | None:
        """(process, port) of the live server its data folder records, listening or not."""

    def _listening(self) -> tuple[psutil.Process, int] | None:
        """(process, port) of the live server of this data folder that accepts connections."""
        found = self._recorded()
        if found is None or not port_open(found[1]):
            return None
        self._port = found[1]
        return found

    @abc.abstractmethod
    def _prepare(self) -> None:
        """Before the server is looked for and started: folders, accounts, initialisation."""

    @abc.abstractmethod
    def _launch(self) -> None:
        """Start the server on `self.port`; return once it answers."""

    @abc.abstractmethod
    def _stop_steps(self, process: psutil.Process) -> Sequence[Callable[[], None]]:
        """Ways to stop the server, gentlest first; each gets STOP_STEP_SECONDS to work."""

    @abc.abstractmethod
    def _stopped(self) -> None:
        """After the process is gone: what the server leaves behind (such as a pid file)."""

    def start(self) -> str:
        """Start the server (or adopt the one already running here); return its URL."""
        if not self.installed():
            raise NotInstalledError(f"the embedded {self.label} is not installed: {EMBEDDED_EXTRA}")
        self._prepare()
        if self._listening() is not None:
            return self.url
        self._claim_port()
        self._launch()
        self._port_fixed = True
        return self.url

    def _claim_port(self) -> None:
        if port_released(self._port):
            return
        if self._port_fixed:
            raise ServiceUnavailableError(
                f"cannot start {self.label} on {HOST}:{self._port}: the port is in use"
            )
        self._port = free_port()

    def stop(self) -> None:
        """Stop the server, each way in turn until the process is gone; wait for the port."""
        found = self._recorded()  # also a server that does not listen (yet)
        if found is None:
            return
        process, self._port = found
        for step in self._stop_steps(process):
            step()
            if wait_until(lambda: not process_alive(process), STOP_STEP_SECONDS):
                break
        self._stopped()
        if not wait_until(lambda: not port_open(self._port, 0.1), 10):
            raise ServiceUnavailableError(
                f"{self.label} still listens on {HOST}:{self._port} after stopping"
            )
        port_released(self._port)
