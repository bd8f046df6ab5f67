"""feed_entry rows as PostgreSQL binary COPY files: export, load, and read with numpy."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg import sql

ENTRY_COLUMNS: Final = ("user_id", "post_id", "community_id", "author_id", "score", "created_at")
_SIGNATURE: Final = b"PGCOPY\n\xff\r\n\x00"
_TRAILER: Final = b"\xff\xff"
_CHUNK: Final = 1 << 20

# One feed_entry row in binary COPY: a field count, then (length, value) per column.
# Every column is 8 bytes and NOT NULL, so rows have a fixed size.
ROW_DTYPE: Final = np.dtype(
    [("fields", ">i2")]
    + [
        pair
        for name, kind in zip(
            ENTRY_COLUMNS, (">i8", ">i8", ">i8", ">i8", ">f8", ">i8"), strict=True
        )
        for pair in ((f"{name}_len", ">i4"), (name, kind))
    ]
)


@dataclasses.dataclass(frozen=True)
class Members:
    """The (user, post, score) of every row of a COPY file, in file order."""

    user_id: npt.NDArray[np.int64]
    post_id: npt.NDArray[np.int64]
    score: npt.NDArray[np.float64]


def _columns() -> sql.Composable:
    return sql.SQL(", ").join(map(sql.Identifier, ENTRY_COLUMNS))


def export_entries(conn: psycopg.Connection[Any], order_by: str, path: Path) -> int:
    """COPY every feed_entry row, ordered by `order_by`, into a binary file; return bytes."""
    statement = sql.SQL("COPY (SELECT {} FROM feed_entry ORDER BY {}) TO STDOUT (FORMAT BINARY)")
    query = statement.format(_columns(), sql.SQL(order_by))
    written = 0
    with conn.cursor() as cur, cur.copy(query) as copy, path.open("wb") as out:
        for data in copy:
            written += out.write(data)
    return written


def load_entries(conn: psycopg.Connection[Any], table: str, path: Path) -> None:
    """COPY a binary file into `table` in one transaction (committed on return)."""
    query = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(table), _columns()
    )
    with (
        conn.transaction(),
        conn.cursor() as cur,
        cur.copy(query) as copy,
        path.open("rb") as source,
    ):
        while chunk := source.read(_CHUNK):
            copy.write(chunk)


def _header_size(path: Path) -> int:
    with path.open("rb") as source:
        head = source.read(19)
    if head[:11] != _SIGNATURE:
        raise ValueError(f"{path} is not a PostgreSQL binary COPY file")
    extension = int.from_bytes(head[15:19], "big")
    return 19 + extension


def rows_of(path: Path) -> npt.NDArray[np.void]:
    """The rows of a binary COPY file of feed_entry, memory-mapped (not read into RAM)."""
    header = _header_size(path)
    body = path.stat().st_size - header - len(_TRAILER)
    if body % ROW_DTYPE.itemsize:
        raise ValueError(f"{path}: rows are not {ROW_DTYPE.itemsize} bytes each")
    rows = np.memmap(
        path, dtype=ROW_DTYPE, mode="r", offset=header, shape=(body // ROW_DTYPE.itemsize,)
    )
    if len(rows) and not (rows["fields"][:1000] == len(ENTRY_COLUMNS)).all():
        raise ValueError(f"{path}: unexpected field count")
    return rows


def members_of(path: Path) -> Members:
    rows = rows_of(path)
    return Members(
        user_id=rows["user_id"].astype(np.int64),
        post_id=rows["post_id"].astype(np.int64),
        score=rows["score"].astype(np.float64),
    )
