"""Imports point down: front ends (cli and api, then jobs, then the client) above pipelines,
pipelines above read, read above cache/db/rank, everything above the ground modules
(docs/architecture.md).

Every `import` in feedctl, at module level or inside a function, is checked against the
layer of the module that makes it: a module may import its own layer and the layers below.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import feedctl

PACKAGE = Path(feedctl.__file__).parent

# Top to bottom. A module belongs to the first entry that is it or a package holding it.
LAYERS: list[tuple[str, ...]] = [
    ("feedctl.__main__", "feedctl.cli", "feedctl.api"),  # front ends: the CLI, the HTTP API
    ("feedctl.jobs",),  # the second front end: what cron calls
    ("feedctl.client",),  # the app's entry point: pooled reads, rebuilds and repair marks
    ("feedctl.pipelines", "feedctl.synth"),  # orchestration: returns counts
    ("feedctl.context", "feedctl.metrics"),  # what one run opens and reports
    ("feedctl.read",),  # what app servers import
    ("feedctl.cache", "feedctl.db", "feedctl.rank", "feedctl.services"),  # stores, scoring
    (  # ground
        "feedctl.config",
        "feedctl.errors",
        "feedctl.durations",
        "feedctl.server_errors",
        "feedctl.faults",
        "feedctl.logs",
        "feedctl.progress",
        "feedctl",
    ),
]


# The package itself re-exports the app's entry points, imported lazily in a module
# __getattr__ (so `import feedctl` stays light): the one upward import allowed.
LAZY_EXPORTS = {"feedctl": {"feedctl.client"}}


def layer_of(module: str) -> int:
    for depth, names in enumerate(LAYERS):
        if any(module == name or module.startswith(name + ".") for name in names):
            return depth
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, module: str) -> set[str]:
    """The feedctl modules a file imports (relative imports resolved)."""
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "feedctl" or name.startswith("feedctl.")}


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer() -> None:
    assert len(SOURCES) > 40
    for path in SOURCES:
        layer_of(module_name(path))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path: Path) -> None:
    module = module_name(path)
    depth = layer_of(module)
    modules = {_known(name) for name in imported(path, module)} - {""}
    allowed = LAZY_EXPORTS.get(module, set())
    upward = sorted(name for name in modules if layer_of(name) < depth and name not in allowed)
    assert not upward, f"{module} (layer {depth}) imports upward: {upward}"


def _known(name: str) -> str:
    """`name`, or the module it names an attribute of (`from feedctl.x import y`)."""
    for candidate in (name, name.rpartition(".")[0]):
        if candidate and (
            (PACKAGE.parent / candidate.replace(".", "/")).with_suffix(".py").is_file()
            or (PACKAGE.parent / candidate.replace(".", "/") / "__init__.py").is_file()
        ):
            return candidate
    return ""


def test_the_read_library_pulls_in_no_pipeline_or_embedded_server_code() -> None:
    read = [p for p in SOURCES if module_name(p).startswith("feedctl.read")]
    assert read
    for path in read:
        names = imported(path, module_name(path))
        assert not {n for n in names if n.startswith(("feedctl.pipelines", "feedctl.services"))}
