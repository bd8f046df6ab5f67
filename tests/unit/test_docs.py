"""docs/cli.md documents every command, with the `--help` the commands print today.

The reference is regenerated in memory by scripts/cli_doc.py (what `make docs` runs) and
compared with the file, so a command added, renamed or changed without `make docs` fails
here, in `make test` and in CI.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLI_DOC = ROOT / "docs" / "cli.md"


def _load_cli_doc() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cli_doc", ROOT / "scripts" / "cli_doc.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cli_doc = _load_cli_doc()


def test_every_runnable_command_has_a_section_in_the_reference() -> None:
    runnable = [path for path, command in cli_doc.commands() if cli_doc.is_runnable(command)]
    documented = cli_doc.documented_commands(CLI_DOC.read_text(encoding="utf-8"))
    assert "feedctl rank" in runnable  # a group that runs without a subcommand counts
    missing = [path for path in runnable if path not in documented]
    assert not missing, f"not in docs/cli.md: {missing}; run `make docs` and describe them"


def test_the_reference_is_what_make_docs_writes() -> None:
    document = CLI_DOC.read_text(encoding="utf-8")
    wanted = cli_doc.regenerate(document, cli_doc.help_texts())
    assert wanted == document, "docs/cli.md is out of date: run `make docs`"


def test_the_help_text_does_not_depend_on_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    first = cli_doc.help_texts()
    for name, value in {
        "COLUMNS": "40",
        "TERMINAL_WIDTH": "60",
        "FORCE_COLOR": "1",
        "CI": "true",
        "TERM": "dumb",
    }.items():
        monkeypatch.setenv(name, value)
    assert cli_doc.help_texts() == first
    assert not any("\x1b[" in text for text in first.values())


def test_a_new_command_gets_a_section_and_a_removed_one_is_named() -> None:
    texts = {"feedctl": "Usage: feedctl", "feedctl new": "Usage: feedctl new"}
    document = "# Commands\n\n" + cli_doc.block("feedctl", "old text") + "\n"
    written = cli_doc.regenerate(document, texts)
    assert cli_doc.block("feedctl", "Usage: feedctl") in written
    assert written.endswith(
        "## feedctl new\n\n" + cli_doc.block("feedctl new", texts["feedctl new"]) + "\n"
    )
    assert cli_doc.regenerate(written, texts) == written
    with pytest.raises(cli_doc.StaleBlockError, match="`feedctl new`"):
        cli_doc.regenerate(written, {"feedctl": "Usage: feedctl"})


def test_help_paragraphs_of_several_lines_keep_their_line_breaks() -> None:
    text = "One line.\n\n- first item\n- second item"
    assert cli_doc.keep_line_breaks(text) == "One line.\n\n\b\n- first item\n- second item"
