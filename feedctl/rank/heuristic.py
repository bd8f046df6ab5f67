"""The versioned heuristic file: its model and its validation."""

from __future__ import annotations

import dataclasses
import math
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from feedctl.errors import HeuristicError


@dataclasses.dataclass(frozen=True)
class Heuristic:
    """Coefficients of the rank key (see `feedctl.rank.scoring`)."""

    version: str
    half_life_hours: float
    reactions_weight: float
    comments_weight: float
    reputation_weight: float

    def coefficients(self) -> dict[str, float]:
        """Everything but the version: what a version name stands for."""
        return {key: getattr(self, key) for key in _NUMBERS}


_NUMBERS = ("half_life_hours", "reactions_weight", "comments_weight", "reputation_weight")


def _number(source: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise HeuristicError(f"{source}: {key} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise HeuristicError(f"{source}: {key} must be finite, got {value!r}")
    if key == "half_life_hours" and number <= 0:
        raise HeuristicError(f"{source}: half_life_hours must be positive, got {value!r}")
    if number < 0:
        raise HeuristicError(f"{source}: {key} must not be negative, got {value!r}")
    return number


def parse_heuristic(raw: dict[str, Any], source: str) -> Heuristic:
    """Validate a decoded TOML table; every problem names its key."""
    known = {"version", *_NUMBERS}
    for key in raw:
        if key not in known:
            raise HeuristicError(
                f"{source}: unknown key {key!r} (known: {', '.join(sorted(known))})"
            )
    for key in known:
        if key not in raw:
            raise HeuristicError(f"{source}: missing key {key!r}")
    version = raw["version"]
    if not isinstance(version, str) or not version.strip():
        raise HeuristicError(f"{source}: version must be a non-empty string, got {version!r}")
    numbers = {key: _number(source, key, raw[key]) for key in _NUMBERS}
    return Heuristic(version=version.strip(), **numbers)


def heuristic_from_record(version: str, coefficients: dict[str, Any], source: str) -> Heuristic:
    """A heuristic stored in PostgreSQL (version and coefficients), validated again."""
    return parse_heuristic({"version": version, **coefficients}, source)


def load_heuristic(path: Path | None = None) -> Heuristic:
    """Read a heuristic file, or the default that ships with feedctl."""
    if path is None:
        text = resources.files("feedctl.rank").joinpath("default_heuristic.toml").read_text()
        return parse_heuristic(tomllib.loads(text), "default heuristic")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HeuristicError(f"heuristic file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise HeuristicError(f"heuristic file {path} is not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise HeuristicError(f"heuristic file {path} cannot be read: {exc}") from None
    return parse_heuristic(raw, str(path))
