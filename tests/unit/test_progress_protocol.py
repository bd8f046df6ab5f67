"""One progress protocol and one way to stop: every pipeline entry point that reports
progress takes a `Progress` and a `stop` event (docs/architecture.md)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import threading
import typing
from collections.abc import Callable
from typing import Any

import feedctl.pipelines
from feedctl.progress import SILENT, Progress


def public_functions() -> list[tuple[str, Callable[..., Any]]]:
    found = []
    prefix = feedctl.pipelines.__name__ + "."
    for info in pkgutil.walk_packages(feedctl.pipelines.__path__, prefix):
        module = importlib.import_module(info.name)
        for name, member in vars(module).items():
            if name.startswith("_") or not inspect.isfunction(member):
                continue
            if member.__module__ == module.__name__:
                found.append((f"{module.__name__}.{name}", member))
    return found


def test_every_pipeline_taking_progress_takes_a_progress_and_a_stop_event() -> None:
    taking = []
    for name, function in public_functions():
        if "progress" not in inspect.signature(function).parameters:
            continue
        taking.append(name)
        hints = typing.get_type_hints(function)
        assert hints["progress"] is Progress, f"{name}: progress is {hints['progress']}"
        assert "stop" in hints, f"{name} takes progress but no stop event"
        assert hints["stop"] == threading.Event | None, f"{name}: stop is {hints['stop']}"
        parameters = inspect.signature(function).parameters
        assert parameters["progress"].default is SILENT, f"{name}: progress defaults to SILENT"
        assert parameters["stop"].default is None, f"{name}: stop defaults to None"
    assert len(taking) >= 10, taking  # the walk found the pipelines


def test_silent_is_a_progress() -> None:
    progress: Progress = SILENT
    progress.phase("anything", None)
    progress.advance(3)
    progress.status("fine")
