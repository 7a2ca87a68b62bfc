"""What the outbound MSH has sent and how the partner answered.

A reliable message is resent byte-identically until an Acknowledgment comes: the same MessageId,
Timestamp and TimeToLive. The first attempt records its Timestamp here, so every later attempt
(after a restart too) builds the identical message; the partner's Acknowledgment or
MessageError, which may arrive on another request or after the attempt gave up waiting, is
recorded against the MessageId and ends the delivery at its next attempt.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

from gateway.ebms.received import state_database

ACKNOWLEDGED = "acknowledged"


@dataclass(frozen=True, slots=True)
class Sent:
    message_id: str
    cpaid: str
    timestamp: str
    outcome: str | None
    """``acknowledged``, ``error:<errorCode>``, or None while unanswered."""
    receipt: list[tuple[str, str]] | None = None
    """(URI, DigestValue) of what we signed, when the CPA asks a signed acknowledgment: the
    references that acknowledgment must repeat. None: any acknowledgment will do."""


class SentStore:
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
