"""Coefficient search spaces: parsing a space file and drawing the heuristics to try.

A space file is TOML with one table per coefficient to search; a coefficient left out keeps
the baseline's value:

    [half_life_hours]
    min = 2.0
    max = 96.0
    log = true            # draw uniformly in log space (for scales)

    [comments_weight]
    values = [0.5, 1.0, 2.0, 4.0]

When every searched coefficient is a list of values and all their combinations fit in the
budget, the search is that grid; otherwise it is `budget` seeded random draws.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

from feedctl.errors import BadInputError
from feedctl.rank.heuristic import Heuristic, parse_heuristic

COEFFICIENTS = ("half_life_hours", "reactions_weight", "comments_weight", "reputation_weight")


@dataclasses.dataclass(frozen=True)
class Dimension:
    name: str
    values: tuple[float, ...] = ()  # a list of values, or else the range below
    low: float = 0.0
    high: float = 0.0
    log: bool = False


def _float(source: str, where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadInputError(f"{source}: {where} must be a finite number, got {value!r}")
    return float(value)


def parse_space(raw: dict[str, Any], source: str) -> list[Dimension]:
    """Validate a decoded space file; every problem names its key."""
    space: list[Dimension] = []
    for name, table in raw.items():
        if name not in COEFFICIENTS:
            raise BadInputError(
                f"{source}: unknown coefficient {name!r} (known: {', '.join(COEFFICIENTS)})"
            )
        if not isinstance(table, dict):
            raise BadInputError(f"{source}: {name} must be a table with min/max or values")
        unknown = set(table) - {"min", "max", "log", "values"}
        if unknown:
            raise BadInputError(f"{source}: {name} has unknown keys {sorted(unknown)}")
        if "values" in table:
            if set(table) != {"values"}:
                raise BadInputError(f"{source}: {name} takes either values or min/max, not both")
            values = table["values"]
            if not isinstance(values, list) or not values:
                raise BadInputError(f"{source}: {name}.values must be a non-empty list")
            numbers = tuple(_float(source, f"{name}.values", v) for v in values)
            space.append(Dimension(name, values=numbers))
            continue
        if "min" not in table or "max" not in table:
            raise BadInputError(f"{source}: {name} needs min and max (or values)")
        low = _float(source, f"{name}.min", table["min"])
        high = _float(source, f"{name}.max", table["max"])
        log = table.get("log", False)
        if not isinstance(log, bool):
            raise BadInputError(f"{source}: {name}.log must be true or false")
        if low > high:
            raise BadInputError(f"{source}: {name}.min must not exceed {name}.max")
        if log and low <= 0:
            raise BadInputError(f"{source}: {name} with log = true needs min > 0")
        space.append(Dimension(name, low=low, high=high, log=log))
    if not space:
        raise BadInputError(f"{source}: the space names no coefficient to search")
    return space


def load_space(path: Path) -> list[Dimension]:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInputError(f"space file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise BadInputError(f"space file {path} is not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"space file {path} cannot be read: {exc}") from None
    return parse_space(raw, str(path))


def trials(space: list[Dimension], baseline: Heuristic, budget: int, seed: int) -> list[Heuristic]:
    """The heuristics to try (named trial-1, trial-2, ...): the grid when it fits the
    budget, otherwise `budget` random draws. Each is validated as a heuristic file is."""
    grid = all(d.values for d in space) and math.prod(len(d.values) for d in space) <= budget
    points: list[dict[str, float]]
    if grid:
        points = [
            dict(zip([d.name for d in space], combo, strict=True))
            for combo in itertools.product(*(d.values for d in space))
        ]
    else:
        rng = np.random.default_rng(seed)
        points = [{d.name: _draw(rng, d) for d in space} for _ in range(budget)]
    return [
        parse_heuristic(
            {**baseline.coefficients(), **point, "version": f"trial-{index}"}, "search space"
        )
        for index, point in enumerate(points, start=1)
    ]


def _draw(rng: np.random.Generator, dimension: Dimension) -> float:
    if dimension.values:
        return float(dimension.values[int(rng.integers(len(dimension.values)))])
    if dimension.log:
        return float(math.exp(rng.uniform(math.log(dimension.low), math.log(dimension.high))))
    return float(rng.uniform(dimension.low, dimension.high))


def tuned_version(heuristic: Heuristic) -> str:
    """A version name that stands for these coefficients only: `tuned-` and a short hash."""
    text = json.dumps(heuristic.coefficients(), sort_keys=True)
    return "tuned-" + hashlib.sha256(text.encode()).hexdigest()[:10]


def heuristic_toml(heuristic: Heuristic, comment: str) -> str:
    """A heuristic file that `load_heuristic` reads back to the same heuristic."""
    lines = [f"# {line}".rstrip() for line in comment.splitlines()]
    lines.append(f"version = {json.dumps(heuristic.version)}")
    lines += [f"{name} = {value!r}" for name, value in heuristic.coefficients().items()]
    return "\n".join(lines) + "\n"
