"""Rows that follow their message: a large message's BSN index entries and beleidsinformatie,
written by the commits after the one that answers its sender.

Why: the store has one writer, and everything accepted after a message waits for that
message's commit. A declaratie of 1 MB names some 870 clients: its 870 entries in the BSN
search index land on as many random pages of that index, and its 870 rows of
beleidsinformatie go to two more indexes. That was 10–17 ms of a 15–30 ms commit under load,
growing with the history, and the messages accepted meanwhile waited for all of it (they were
the Bv03 p99 at 100 msg/s; docs/benchmarks.md, "Rows that follow their message"). Neither is
needed for the Bv03: the audit record itself, chained and committed with the message, names
every pseudonym; the facts only feed the figures.

So a message with more than :data:`DEFER_ROWS` BSNs and facts commits markers instead: its
audit record's sequence number in ``audit_bsn_deferred`` (gateway/broker/sqlite_audit.py,
with how many of its pseudonyms are indexed so far) and its fact rows, in chunks, in
``facts_deferred``. The writer works them off a :data:`CHUNK` at a time: one chunk at the
start of each later commit, and in commits of their own when nothing else is queued
(gateway/broker/sqlite_core.py). A marker and the rows it stands for change in one
transaction, so a crash leaves one or the other, never both or neither; markers left at a
crash are worked off after the restart.

What reads these rows sees the markers: a BSN search also looks in the records still marked
(their chained pseudonym lists), ``audit verify`` takes a marked record's index as written as
far as its marker says, and the figures are counted after every marker is worked off
(:func:`drain_all`, one commit: figures are asked for rarely).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from gateway.broker import sqlite_audit

FactRow = tuple[Any, ...]
"""One fact as a row of the ``facts`` table, without its message id and time (the columns
:func:`store_facts` inserts after those two)."""

DEFER_ROWS = 128
"""A message with more BSNs and facts than this writes its index entries and facts later."""

CHUNK = 128
"""Index entries, and fact rows, written per commit while markers remain (1–2 ms)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS facts_deferred (
    id INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL,
    at REAL NOT NULL,
    rows TEXT NOT NULL
);
"""


def defers(bsns: int, facts: int) -> bool:
    """Whether a message naming ``bsns`` BSNs with ``facts`` facts defers their rows."""
    return bsns + facts > DEFER_ROWS


def store_facts(
    db: sqlite3.Connection, message_id: str, at: float, rows: tuple[FactRow, ...]
) -> None:
    """Insert a message's beleidsinformatie rows in the caller's transaction."""
    db.executemany(
        "INSERT INTO facts (message_id, at, kind, standard, gemeente, aanbieder, categorie, "
        "month, client, key, amount, link, follows) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(message_id, at, *row) for row in rows],
    )


def chunks(rows: tuple[FactRow, ...]) -> tuple[str, ...]:
    """``rows`` as the chunks :func:`defer_facts` keeps (made before the transaction)."""
    return tuple(json.dumps(rows[start : start + CHUNK]) for start in range(0, len(rows), CHUNK))


def defer_facts(db: sqlite3.Connection, message_id: str, at: float, kept: tuple[str, ...]) -> None:
    """Keep a message's fact rows, as :func:`chunks`, to be inserted later (in the caller's
    transaction)."""
    db.executemany(
        "INSERT INTO facts_deferred (message_id, at, rows) VALUES (?, ?, ?)",
        [(message_id, at, chunk) for chunk in kept],
    )


def pending(db: sqlite3.Connection) -> bool:
    """Whether any marker is left."""
    row = db.execute(
        "SELECT EXISTS (SELECT 1 FROM audit_bsn_deferred) OR EXISTS (SELECT 1 FROM facts_deferred)"
    ).fetchone()
    return bool(row[0])


def drain_one(db: sqlite3.Connection) -> None:
    """Write one chunk of the oldest index marker and one of the oldest facts marker, in the
    caller's transaction."""
    sqlite_audit.index_marked(db, CHUNK)
    kept = db.execute(
        "SELECT id, message_id, at, rows FROM facts_deferred ORDER BY id LIMIT 1"
    ).fetchone()
    if kept is not None:
        store_facts(db, kept[1], kept[2], tuple(tuple(row) for row in json.loads(kept[3])))
        db.execute("DELETE FROM facts_deferred WHERE id = ?", (kept[0],))


def drain_all(db: sqlite3.Connection) -> None:
    """Write every marked row, in the caller's transaction."""
    while pending(db):
        drain_one(db)
