"""What the inbound MSH has received: MessageIds and the signal each was answered with.

Duplicate elimination needs, per MessageId, the content it came with and the answer it got: a
resend (the sender lost our acknowledgment) gets the *same* stored signal again and is never
accepted twice; the same MessageId with other content is refused. Rows are written only after
the message is durably accepted, so a crash in between makes the resend go through acceptance
again, where the StUF duplicate check (zender + referentienummer) finds it: still exactly one
accepted message. One SQLite file in the data folder (WAL, synchronous=FULL).

Rows are keyed by (partner, MessageId): a MessageId is unique per sending MSH (ebMS 2.0
6.4.1), not across partners. Keyed by MessageId alone, one partner could learn whether
another had used a MessageId (MessageError against Acknowledgment), take a MessageId before
its owner, and, with identical payload bytes, be sent the other's stored signal. Now another
partner's MessageId is simply unknown, and a stored answer is only replayed under the CPA it
was made for (:mod:`gateway.ebms.inbound`).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gateway.safefiles import private_dir


@dataclass(frozen=True, slots=True)
class Received:
    partner: str
    """The partner (registry id) whose CPA it came under: the key, with the MessageId."""
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


TABLE = (
    "CREATE TABLE IF NOT EXISTS received (partner TEXT NOT NULL, message_id TEXT NOT NULL, "
    "cpaid TEXT NOT NULL, digest TEXT NOT NULL, answer BLOB, received_at REAL NOT NULL, "
    "PRIMARY KEY (partner, message_id))"
)
COLUMNS = "partner, message_id, cpaid, digest, answer, received_at"
UNOWNED = ""
"""The partner of a migrated row whose CPA is no longer imported: matches no partner."""


def _per_partner(db: sqlite3.Connection, owners: Mapping[str, str]) -> None:
    """Upgrade a state file from before per-partner keys (``received`` keyed by MessageId
    alone) in place, in one transaction: each row is given the partner of its CPA
    (``owners``: cpaid -> partner id), so a resend of a message received before the upgrade
    still gets its stored signal; a row of a CPA no longer imported is kept, matching no one,
    until the resend window drops it."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(received)")}
    if "partner" in columns:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute("ALTER TABLE received RENAME TO received_by_message_id")
        db.execute(TABLE)
        rows = db.execute(
            "SELECT message_id, cpaid, digest, answer, received_at FROM received_by_message_id"
        ).fetchall()
        db.executemany(
            f"INSERT INTO received ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
            [(owners.get(row[1], UNOWNED), *row) for row in rows],
        )
        db.execute("DROP TABLE received_by_message_id")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


class ReceivedStore:
    def __init__(self, path: Path, owners: Mapping[str, str] | None = None) -> None:
        """``owners`` (cpaid -> partner id) only matters for a state file written before
        rows were keyed per partner: see :func:`_per_partner`."""
        self._db = state_database(path, TABLE)
        _per_partner(self._db, owners or {})
        self._lock = threading.Lock()

    def get(self, partner: str, message_id: str) -> Received | None:
        """What ``partner`` sent as ``message_id`` (another partner's is never returned)."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {COLUMNS} FROM received WHERE partner = ? AND message_id = ?",
                (partner, message_id),
            ).fetchone()
        return Received(*row) if row else None

    def remember(
        self, partner: str, message_id: str, cpaid: str, digest: str, answer: bytes | None
    ) -> Received:
        """Record a message and its answer; a concurrent first writer wins and is returned."""
        with self._lock:
            self._db.execute(
                f"INSERT OR IGNORE INTO received ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                (partner, message_id, cpaid, digest, answer, time.time()),
            )
        found = self.get(partner, message_id)
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
