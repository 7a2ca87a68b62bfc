"""What the inbound MSH has received: MessageIds and the signal each was answered with.

Duplicate elimination needs, per MessageId, the content it came with and the answer it got: a
resend (the sender lost our acknowledgment) gets the *same* stored signal again and is never
accepted twice; the same MessageId with other content is refused. Rows are written only after
the message is durably accepted, so a crash in between makes the resend go through acceptance
again, where the StUF duplicate check (zender + referentienummer) finds it: still exactly one
accepted message. One SQLite file in the data folder (WAL, synchronous=FULL).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from gateway.safefiles import private_dir


@dataclass(frozen=True, slots=True)
class Received:
    message_id: str
    cpaid: str
    digest: str
    answer: bytes | None
    """The signal sent back (Acknowledgment or MessageError); None for best effort."""
    received_at: float


def state_database(path: Path, table: str) -> sqlite3.Connection:
    """The ebMS state file (0600 in a 0700 folder; WAL, synchronous=FULL) with ``table``
    (its CREATE statement) in place. Shared by the received and the sent records."""
    private_dir(path.parent)
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(table)
    path.chmod(0o600)
    return db


class ReceivedStore:
    def __init__(self, path: Path) -> None:
        self._db = state_database(
            path,
            "CREATE TABLE IF NOT EXISTS received (message_id TEXT PRIMARY KEY, cpaid TEXT NOT "
            "NULL, digest TEXT NOT NULL, answer BLOB, received_at REAL NOT NULL)",
        )
        self._lock = threading.Lock()

    def get(self, message_id: str) -> Received | None:
        with self._lock:
            row = self._db.execute(
                "SELECT message_id, cpaid, digest, answer, received_at FROM received "
                "WHERE message_id = ?",
                (message_id,),
            ).fetchone()
        return Received(*row) if row else None

    def remember(self, message_id: str, cpaid: str, digest: str, answer: bytes | None) -> Received:
        """Record a message and its answer; a concurrent first writer wins and is returned."""
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO received VALUES (?, ?, ?, ?, ?)",
                (message_id, cpaid, digest, answer, time.time()),
            )
        found = self.get(message_id)
        assert found is not None
        return found

    def forget_before(self, moment: float) -> int:
        """Drop entries older than the longest resend window (PersistDuration)."""
        with self._lock:
            return self._db.execute(
                "DELETE FROM received WHERE received_at < ?", (moment,)
            ).rowcount

    def close(self) -> None:
        self._db.close()
