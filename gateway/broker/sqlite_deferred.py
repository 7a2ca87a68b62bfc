"""Rows that follow their message: a large message's BSN index entries and beleidsinformatie,
written by the commits after the one that answers its sender.

Why: the store has one writer, and everything accepted after a message waits for that
message's commit. A declaratie of 1 MB names some 870 clients: its 870 entries in the BSN
search index land on as many random pages of that index, and its 870 rows of
beleidsinformatie go to two more indexes. That was 10–17 ms of a 15–30 ms commit under load,
growing with the history, and the messages accepted meanwhile waited for all of it (they were
the Bv03 p99 at 100 msg/s; docs/benchmarks.md, "Copies in the window; rows that follow
their message"). Neither is needed for the Bv03: the audit record itself, chained and
committed with the message, names every pseudonym; the facts only feed the figures.

So a message with more than :data:`DEFER_ROWS` BSNs and facts commits markers instead (while
fewer than :data:`BACKLOG_LIMIT` are waiting: under a stream of large messages the writer
stays at most that far behind, and the rest are written with their message as before): its
audit record's sequence number in ``audit_bsn_deferred`` (gateway/broker/sqlite_audit.py,
with how many of its pseudonyms are indexed so far) and its fact rows, in chunks, in
``facts_deferred``. The writer works them off a :data:`CHUNK` at a time: one chunk at the
start of each later commit, and in commits of their own when nothing else is queued
(gateway/broker/sqlite_core.py). A marker and the rows it stands for change in one
transaction, so a crash leaves one or the other, never both or neither; markers left at a
crash are worked off after the restart. A facts chunk that cannot be read (damaged, or of a
column this version does not know) is logged at error level with its message id and
dropped (those facts are then missing from the figures): never retried forever, never
holding up the markers after it.

What reads these rows sees the markers: a BSN search also looks in the records still marked
(their chained pseudonym lists), ``audit verify`` takes a marked record's index as written as
far as its marker says, and the figures are counted after the rows marked when they were
asked for are written (:func:`rounds` chunks, one per commit, so that nothing else waits
longer than a chunk; a clean stop writes all that is left with :func:`drain_all`).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import structlog

from gateway.broker import sqlite_audit

log = structlog.get_logger("ggk.broker")

FactRow = tuple[Any, ...]
"""One fact as a row of the ``facts`` table, without its message id and time (the columns
:data:`FACT_COLUMNS`)."""

FACT_COLUMNS = (
    "kind",
    "standard",
    "gemeente",
    "aanbieder",
    "categorie",
    "month",
    "client",
    "key",
    "amount",
    "link",
    "follows",
)
"""The columns of a :data:`FactRow`, in its order."""

DEFER_ROWS = 128
"""A message with more BSNs and facts than this writes its index entries and facts later."""

CHUNK = 128
"""Index entries, and fact rows, written per commit while markers remain (1–5 ms)."""

BACKLOG_LIMIT = 64
"""Markers (facts chunks and marked audit records) beyond which a large message writes its
rows with its commit: about eight declaraties of 870 clients, some 60 chunks, a few hundred
ms of the writer in all (what a figures request or a clean stop may wait for)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS facts_deferred (
    id INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL,
    at REAL NOT NULL,
    rows TEXT NOT NULL
);
"""


def defers(bsns: int, facts: int) -> bool:
    """Whether a message naming ``bsns`` BSNs with ``facts`` facts may defer their rows."""
    return bsns + facts > DEFER_ROWS


def store_facts(
    db: sqlite3.Connection,
    message_id: str,
    at: float,
    rows: tuple[FactRow, ...],
    columns: tuple[str, ...] = FACT_COLUMNS,
) -> None:
    """Insert a message's beleidsinformatie rows in the caller's transaction."""
    db.executemany(
        f"INSERT INTO facts (message_id, at, {', '.join(columns)}) "
        f"VALUES (?, ?, {', '.join('?' for _ in columns)})",
        [(message_id, at, *row) for row in rows],
    )


def chunks(rows: tuple[FactRow, ...]) -> tuple[str, ...]:
    """``rows`` as the chunks :func:`defer_facts` keeps, each naming its columns (made
    before the transaction)."""
    return tuple(
        json.dumps({"columns": FACT_COLUMNS, "rows": rows[start : start + CHUNK]})
        for start in range(0, len(rows), CHUNK)
    )


def defer_facts(db: sqlite3.Connection, message_id: str, at: float, kept: tuple[str, ...]) -> None:
    """Keep a message's fact rows, as :func:`chunks`, to be inserted later (in the caller's
    transaction)."""
    db.executemany(
        "INSERT INTO facts_deferred (message_id, at, rows) VALUES (?, ?, ?)",
        [(message_id, at, chunk) for chunk in kept],
    )


def backlog(db: sqlite3.Connection) -> int:
    """Markers waiting: facts chunks and marked audit records."""
    row = db.execute(
        "SELECT (SELECT count(*) FROM facts_deferred) + (SELECT count(*) FROM audit_bsn_deferred)"
    ).fetchone()
    return int(row[0])


def has_room(db: sqlite3.Connection) -> bool:
    """Whether a large message may defer its rows (:data:`BACKLOG_LIMIT`)."""
    return backlog(db) < BACKLOG_LIMIT


def rounds(db: sqlite3.Connection) -> int:
    """How many :func:`drain_one` calls write every row marked now (the oldest go first)."""
    kept = db.execute("SELECT count(*) FROM facts_deferred").fetchone()[0]
    return max(int(kept), sqlite_audit.marked_chunks(db, CHUNK))


def drain_index(db: sqlite3.Connection) -> None:
    """One chunk of the oldest marked audit record's index entries (caller's transaction)."""
    sqlite_audit.index_marked(db, CHUNK)


def drain_facts(db: sqlite3.Connection) -> None:
    """The oldest facts chunk into the facts table (caller's transaction); one that cannot be
    read is logged and dropped."""
    kept = db.execute(
        "SELECT id, message_id, at, rows FROM facts_deferred ORDER BY id LIMIT 1"
    ).fetchone()
    if kept is None:
        return
    parsed = _read_chunk(kept[3])
    if parsed is None:
        log.error("figures.deferred_facts_unreadable", message_id=str(kept[1])[:64])
    else:
        store_facts(db, kept[1], kept[2], parsed[1], parsed[0])
    db.execute("DELETE FROM facts_deferred WHERE id = ?", (kept[0],))


def _read_chunk(text: str) -> tuple[tuple[str, ...], tuple[FactRow, ...]] | None:
    """The columns and rows of a kept chunk, or None when it is not one this version wrote."""
    try:
        chunk = json.loads(text)
        columns = tuple(str(c) for c in chunk["columns"])
        rows = tuple(tuple(row) for row in chunk["rows"])
    except (ValueError, TypeError, KeyError):
        return None
    if not set(columns) <= set(FACT_COLUMNS) or any(len(r) != len(columns) for r in rows):
        return None
    return columns, rows


def drain_one(db: sqlite3.Connection) -> None:
    """One index chunk and one facts chunk (caller's transaction)."""
    drain_index(db)
    drain_facts(db)


def drain_all(db: sqlite3.Connection) -> None:
    """Write every marked row, in the caller's transaction."""
    while backlog(db):
        drain_one(db)
