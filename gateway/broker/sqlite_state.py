"""TR056's memory on SQLite: the :class:`~gateway.rules.state.StateStore` of a standalone run.

The rule (gateway/rules/state.py) asks an injected store whether a key was seen; the running
gateway answers it from the broker's own table inside the accepting transaction. This is the
same memory in a file of its own, for validation runs and tests that keep state between runs.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from gateway.rules.state import IdentificatieKey


class SqliteStateStore:
    """TR056 keys in a SQLite table; the primary key makes ``remember`` atomic."""

    def __init__(self, path: Path | str) -> None:
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS seen_identificatie ("
            " sender TEXT NOT NULL, message_code TEXT NOT NULL, identificatie TEXT NOT NULL,"
            " PRIMARY KEY (sender, message_code, identificatie)) WITHOUT ROWID"
        )

    def seen(self, key: IdentificatieKey) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM seen_identificatie WHERE sender=? AND message_code=? AND "
                "identificatie=?",
                (key.sender, key.message_code, key.identificatie),
            ).fetchone()
        return row is not None

    def remember(self, key: IdentificatieKey) -> bool:
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO seen_identificatie VALUES (?, ?, ?)",
                (key.sender, key.message_code, key.identificatie),
            )
        return cursor.rowcount == 1

    def close(self) -> None:
        self._db.close()
