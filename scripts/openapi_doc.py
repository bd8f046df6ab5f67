"""Write the HTTP API's OpenAPI schema (what `feedctl serve` publishes at /openapi.json)
into docs/openapi.json: `make docs`. With `--check` it writes nothing and exits 1 when the
file is not what it would write (tests/unit/test_openapi_doc.py checks the same)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from feedctl.api.app import create_app
from feedctl.config import Settings

DOC = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"


def schema_text() -> str:
    """The schema as the file holds it: sorted keys, two-space indent, a final newline."""
    schema = create_app(Settings()).openapi()  # opens nothing: the pools open at start-up
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    wanted = schema_text()
    current = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    if "--check" in argv:
        if current != wanted:
            print(f"{DOC} is out of date: run `make docs`", file=sys.stderr)
            return 1
        return 0
    if current != wanted:
        DOC.write_text(wanted, encoding="utf-8")
        print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
