"""Reading lists of ids that operators give in files."""

from __future__ import annotations

from pathlib import Path

from feedctl.errors import BadInputError


def read_ids(path: Path) -> list[int]:
    """One id a line; blank lines and `#` comments allowed; anything else is an error."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise BadInputError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise BadInputError(f"{path} is not a text file of ids") from None
    ids = []
    for number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        if not (text.isascii() and text.isdigit()):
            raise BadInputError(f"{path}:{number}: {text!r} is not a user id")
        ids.append(int(text))
    return ids
