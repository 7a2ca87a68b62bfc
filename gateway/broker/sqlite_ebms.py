"""The ebMS MSH's own state on SQLite: what it received and what it sent (one file, ebms.sqlite).

A store of its own, not the broker's: it belongs to the MSH endpoint of this process (the
partner's MSH resends to the endpoint it knows), lives in its own file in the data folder and
is opened only when ``[ebms]`` is configured. Its rules are gateway/ebms/received.py's and
gateway/ebms/sent.py's (the :class:`~gateway.ebms.received.ReceivedLog` and
:class:`~gateway.ebms.sent.SentLog` protocols); here is only how they are kept.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from gateway.ebms.received import Received
from gateway.ebms.sent import Sent
from gateway.safefiles import private_dir


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
    """The inbound MSH's :class:`~gateway.ebms.received.ReceivedLog` on SQLite."""

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
        self,
        partner: str,
        message_id: str,
        cpaid: str,
        digest: str,
        answer: bytes | None,
        at: float | None = None,
    ) -> Received:
        """Record a message and its answer; a concurrent first writer wins and is returned.
        ``at``: when it was received (default now; a record read from the cluster keeps the
        time of the process that received it)."""
        with self._lock:
            self._db.execute(
                f"INSERT OR IGNORE INTO received ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                (partner, message_id, cpaid, digest, answer, time.time() if at is None else at),
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


class SentStore:
    """The outbound MSH's :class:`~gateway.ebms.sent.SentLog` on SQLite."""

    def __init__(self, path: Path) -> None:
        self._db = state_database(
            path,
            "CREATE TABLE IF NOT EXISTS sent (message_id TEXT PRIMARY KEY, cpaid TEXT NOT NULL, "
            "timestamp TEXT NOT NULL, outcome TEXT)",
        )
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(sent)")}
        if "receipt" not in columns:  # a state file from before signed acknowledgments
            self._db.execute("ALTER TABLE sent ADD COLUMN receipt TEXT")
        self._lock = threading.Lock()

    def first_attempt(self, message_id: str, cpaid: str, timestamp: str) -> Sent:
        """The record of ``message_id``: created now, or as the first attempt left it."""
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO sent (message_id, cpaid, timestamp) VALUES (?, ?, ?)",
                (message_id, cpaid, timestamp),
            )
        found = self.get(message_id)
        assert found is not None
        return found

    def expect_receipt(self, message_id: str, references: list[tuple[str, str]]) -> None:
        """What a signed acknowledgment of ``message_id`` must repeat (every attempt signs
        the identical message, so every attempt writes the same)."""
        with self._lock:
            self._db.execute(
                "UPDATE sent SET receipt = ? WHERE message_id = ?",
                (json.dumps(references), message_id),
            )

    def get(self, message_id: str) -> Sent | None:
        with self._lock:
            row = self._db.execute(
                "SELECT message_id, cpaid, timestamp, outcome, receipt FROM sent "
                "WHERE message_id = ?",
                (message_id,),
            ).fetchone()
        if row is None:
            return None
        receipt = [(uri, digest) for uri, digest in json.loads(row[4])] if row[4] else None
        return Sent(row[0], row[1], row[2], row[3], receipt)

    def answer(self, message_id: str, cpaid: str, outcome: str) -> bool:
        """Record the partner's answer to a message we sent under ``cpaid``; False when there
        is no such unanswered message (an unknown or repeated signal)."""
        with self._lock:
            cursor = self._db.execute(
                "UPDATE sent SET outcome = ? WHERE message_id = ? AND cpaid = ? "
                "AND outcome IS NULL",
                (outcome, message_id, cpaid),
            )
        return cursor.rowcount == 1

    def close(self) -> None:
        self._db.close()


Change = tuple[Any, ...]
"""One record of the cluster's ebMS state, as gateway/broker/kafka_ebms.py reads it:
``("received", partner, message_id, cpaid, digest, answer, at)``, ``("sent", message_id,
cpaid, timestamp)``, ``("receipt", message_id, references)`` or ``("answer", message_id, cpaid,
outcome)``."""


class StateCopy:
    """This process's copy of the cluster's ebMS state (Kafka backend): the records applied to
    the ``received`` and ``sent`` tables of the state file in batches, one transaction (and one
    fsync) each, with how far the topic was read (per partition the next offset), so a restart
    reads on from there. Every apply keeps the first record of a key, so applying one again
    (a crash between two batches) changes nothing."""

    def __init__(self, path: Path) -> None:
        self._db = state_database(
            path,
            "CREATE TABLE IF NOT EXISTS positions (topic TEXT NOT NULL, partition INTEGER NOT "
            "NULL, next_offset INTEGER NOT NULL, PRIMARY KEY (topic, partition))",
        )
        self._lock = threading.Lock()

    def positions(self, topic: str) -> dict[int, int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT partition, next_offset FROM positions WHERE topic = ?", (topic,)
            ).fetchall()
        return {int(p): int(o) for p, o in rows}

    def apply(self, topic: str, changes: list[Change], positions: Mapping[int, int]) -> list[str]:
        """Apply ``changes`` in order and store ``positions``, in one transaction; the
        MessageIds whose answer this recorded."""
        settled: list[str] = []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for change in changes:
                    if self._apply_one(change):
                        settled.append(str(change[1]))
                self._db.executemany(
                    "INSERT INTO positions (topic, partition, next_offset) VALUES (?, ?, ?) "
                    "ON CONFLICT (topic, partition) DO UPDATE SET next_offset = "
                    "MAX(next_offset, excluded.next_offset)",
                    [(topic, p, o) for p, o in positions.items()],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return settled

    def _apply_one(self, change: Change) -> bool:
        kind = change[0]
        if kind == "received":
            self._db.execute(
                f"INSERT OR IGNORE INTO received ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                change[1:],
            )
        elif kind == "sent":
            self._db.execute(
                "INSERT OR IGNORE INTO sent (message_id, cpaid, timestamp) VALUES (?, ?, ?)",
                change[1:],
            )
        elif kind == "receipt":
            self._db.execute(
                "UPDATE sent SET receipt = ? WHERE message_id = ?",
                (json.dumps(change[2]), change[1]),
            )
        elif kind == "answer":
            cursor = self._db.execute(
                "UPDATE sent SET outcome = ? WHERE message_id = ? AND cpaid = ? "
                "AND outcome IS NULL",
                (change[3], change[1], change[2]),
            )
            return cursor.rowcount == 1
        else:
            raise ValueError(f"unknown change {kind!r}")
        return False

    def close(self) -> None:
        self._db.close()


class LocalMshState:
    """The :class:`~gateway.ebms.state.MshState` of one process (the embedded backend)."""

    shared = False

    def __init__(self, path: Path, owners: Mapping[str, str]) -> None:
        self.received = ReceivedStore(path, owners)
        self.sent = SentStore(path)
        self.on_settled: Callable[[str], None] | None = None

    async def start(self) -> None:
        """Nothing to read: the file is the state."""

    async def close(self) -> None:
        self.sent.close()
        self.received.close()
