"""Inserting many rows into the embedded store in one statement.

Why not ``executemany``: Python's sqlite3 gives the GIL up around every row's step, and the
writer thread must take it back from the event loop each time. While the loop is busy that
wait lasts up to the interpreter's switch interval (5 ms), so a declaratie of 1 MB with 870
clients (870 BSN pseudonyms and 870 rows of beleidsinformatie) held the single writer for
10–15 ms of such waits under load, where the inserts themselves take 2–3 ms; every message
accepted meanwhile waited behind it. Measured beside a thread keeping the GIL busy, 868 rows
took 5 s by ``executemany`` and 14 ms as one statement over a JSON array (docs/benchmarks.md,
"A large message holds the writer only for its inserts"). A few rows go by ``executemany``,
which costs less when there is nothing to wait for.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

ONE_STATEMENT_FROM = 17
"""From this many rows on they are inserted in one statement (most messages name one BSN and
a few products; a declaratie or a national fan-out hundreds)."""


def insert_rows(
    db: sqlite3.Connection,
    table: str,
    same: Mapping[str, Any],
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
) -> None:
    """Insert ``rows`` (values of ``columns``: text, integers and NULLs) into ``table``, every
    row with the values of ``same`` (bound once), in the caller's transaction. ``table`` and
    the column names are the caller's constants, never a partner's input."""
    if not rows:
        return
    names = ", ".join((*same, *columns))
    if len(rows) < ONE_STATEMENT_FROM:
        marks = ", ".join("?" for _ in range(len(same) + len(columns)))
        fixed = tuple(same.values())
        db.executemany(
            f"INSERT INTO {table} ({names}) VALUES ({marks})", [(*fixed, *row) for row in rows]
        )
        return
    picks = ", ".join(
        [*("?" for _ in same), *(f"json_extract(value, '$[{i}]')" for i in range(len(columns)))]
    )
    db.execute(
        f"INSERT INTO {table} ({names}) SELECT {picks} FROM json_each(?)",
        (*same.values(), json.dumps(rows, ensure_ascii=False)),
    )
