"""A consistent copy of an embedded store while the gateway serves, and the checks a restored
copy must pass before a gateway is started on it.

SQLite's online backup API copies a database page by page from one read transaction: the copy
is the database as it was at one commit, whatever the writer does meanwhile. Every message
whose Bv03 was sent before the copy began is in it (a Bv03 follows its commit), and so is
every audit record written with it (same transaction), so the copy's audit chain verifies.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

from gateway.broker import sqlite_audit
from gateway.broker.base import StorageError, StoreFacts
from gateway.keyring import Keyring

PAGES_PER_STEP = 4096
"""Pages copied per step (16 MiB at 4 KiB pages): the writer waits at most one step."""


def snapshot(source: Path, target: Path, progress: Callable[[int, int], None]) -> StoreFacts:
    """Copy the database at ``source`` into a new file ``target`` (mode 0600), consistent at
    one commit; ``progress(done_pages, total_pages)`` after each step."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    os.close(fd)
    try:
        reader = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open {source.name} for reading: {exc}") from None
    try:
        copy = sqlite3.connect(str(target))
        try:
            reader.backup(
                copy,
                pages=PAGES_PER_STEP,
                progress=lambda _status, remaining, total: progress(total - remaining, total),
            )
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            return facts(copy)
        finally:
            copy.close()
    except sqlite3.Error as exc:
        raise StorageError(f"copying {source.name} failed: {exc}") from None
    finally:
        reader.close()


def facts(db: sqlite3.Connection) -> StoreFacts:
    """Counts of a store (an ebMS state file has neither table: zeros)."""
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    messages = 0
    if "messages" in tables:
        messages = db.execute("SELECT count(*) FROM messages").fetchone()[0]
    audit_records, head = 0, None
    if "audit" in tables:
        row = db.execute("SELECT count(*), max(seq) FROM audit").fetchone()
        audit_records = row[0]
        if row[1] is not None:
            head = db.execute("SELECT hash FROM audit WHERE seq = ?", (row[1],)).fetchone()[0]
    return StoreFacts(messages, audit_records, head)


def check_copy(path: Path) -> StoreFacts:
    """A restored file is a sound SQLite database (``PRAGMA integrity_check``); its facts."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StorageError(f"{path.name} cannot be opened: {exc}") from None
    try:
        verdict = db.execute("PRAGMA integrity_check").fetchone()[0]
        if verdict != "ok":
            raise StorageError(f"{path.name} is damaged: {verdict}")
        return facts(db)
    except sqlite3.DatabaseError as exc:
        raise StorageError(f"{path.name} is not a database: {exc}") from None
    finally:
        db.close()


def keyring_problem(path: Path, keyring: Keyring) -> str | None:
    """Why ``keyring`` cannot open the store at ``path`` (its audit chain has other keys)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        return sqlite_audit.keyring_mismatch(db, keyring) if "audit" in tables else None
    finally:
        db.close()
