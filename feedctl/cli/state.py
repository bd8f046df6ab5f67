"""Global options, error handling and output shared by every command."""

from __future__ import annotations

import dataclasses
import functools
import json
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import typer

from feedctl.config import Settings, load_settings
from feedctl.errors import EXIT_FAILED
from feedctl.progress import SILENT, Progress
from feedctl.server_errors import as_feedctl_error

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress as RichProgress
    from rich.progress import TaskID

    from feedctl.context import Context

P = ParamSpec("P")
R = TypeVar("R")


class LazyConsole:
    """A Rich console made at its first use, so that a command that prints nothing
    through it (`--version`, `--help`) never imports Rich."""

    def __init__(self, *, stderr: bool = False) -> None:
        self.stderr = stderr
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=self.stderr, soft_wrap=True)
        return self._console

    def print(self, *objects: Any, **options: Any) -> None:
        self.console.print(*objects, **options)

    @property
    def is_terminal(self) -> bool:
        return self.console.is_terminal


stdout = LazyConsole()
stderr = LazyConsole(stderr=True)


@dataclasses.dataclass
class CliState:
    """What the callback parsed; each command reads it from the Typer context."""

    config_path: Path | None = None
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    verbose: bool = False
    json: bool = False
    _settings: Settings | None = None

    def forget_settings(self) -> None:
        """Resolve the settings again at the next use (an option changed)."""
        self._settings = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path, self.overrides)
        return self._settings

    def notice(self, message: str) -> None:
        """One line on stderr for the human (never mixed into --json output)."""
        stderr.print(f"[dim]{message}[/dim]", highlight=False)

    @contextmanager
    def context(self) -> Iterator[Context]:
        from feedctl.context import open_context

        with open_context(self.settings, self.notice) as ctx:
            yield ctx

    def emit(self, payload: dict[str, Any], human: Callable[[], None]) -> None:
        """--json prints the payload; otherwise the human rendering runs."""
        if self.json:
            sys.stdout.write(json.dumps(payload, default=str) + "\n")
        else:
            human()

    @contextmanager
    def progress(self) -> Iterator[Progress]:
        """The Progress every command hands its pipeline: a bar per phase with count, rate
        and ETA on a terminal; silent with --json or when stderr is not a terminal."""
        if self.json or not stderr.is_terminal:
            yield SILENT
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with RichProgress(*columns, console=stderr.console, transient=True) as bars:
            yield PhaseBars(bars)


class PhaseBars:
    """Progress over Rich: one bar per phase (the previous one goes when the next starts)."""

    def __init__(self, bars: RichProgress) -> None:
        self.bars = bars
        self.task: TaskID | None = None

    def phase(self, name: str, total: int | None = None) -> None:
        if self.task is not None:
            self.bars.remove_task(self.task)
        self.task = self.bars.add_task(name, total=total, status="")

    def advance(self, done: int) -> None:
        if self.task is None:
            self.phase("", None)
        assert self.task is not None
        self.bars.advance(self.task, done)

    def status(self, text: str) -> None:
        if self.task is None:
            self.phase("", None)
        assert self.task is not None
        self.bars.update(self.task, status=text)


def state_of(ctx: typer.Context) -> CliState:
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj


def _verbose(*arguments: object) -> bool:
    """Whether --verbose was given, read from the command's context argument."""
    return any(hasattr(a, "find_root") and state_of(a).verbose for a in arguments)  # type: ignore[arg-type]


def handle_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn library errors into one line on stderr and the error's exit code."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:
            error = as_feedctl_error(exc)
            if _verbose(*args, *kwargs.values()):
                traceback.print_exc(file=sys.stderr)
            if error is None:
                stderr.print(
                    f"[red]error:[/red] unexpected {type(exc).__name__}: {_escape(str(exc))} "
                    "(run with --verbose for the traceback)",
                    highlight=False,
                )
                raise typer.Exit(EXIT_FAILED) from None
            stderr.print(f"[red]error:[/red] {_escape(error.message)}", highlight=False)
            raise typer.Exit(error.exit_code) from None

    return wrapper


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set `stop` (the job finishes its batch) instead of killing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def request_stop(signum: int, frame: object) -> None:
        stop.set()

    for sig in previous:
        signal.signal(sig, request_stop)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _escape(text: str) -> str:
    """Text with Rich markup escaped, so a message prints as written."""
    from rich.markup import escape

    return escape(text)
