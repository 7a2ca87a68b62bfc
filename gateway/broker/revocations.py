"""Signed-out portal sessions: the nonces of session cookies that must no longer be honoured.

Portal sessions are stateless signed cookies (gateway/portal/session.py): every process can
check one without asking anyone. Signing out must still kill a copied cookie, so the
session's nonce is recorded with the session's expiry, through the broker: in the embedded
store's table, and on Kafka on the ``events`` topic, which every process's view applies.
Each process keeps the live ones in memory (checked on every page, without I/O) and forgets
a nonce once its session would have expired anyway.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable

import structlog

log = structlog.get_logger("ggk.portal")

SCHEMA = """
CREATE TABLE IF NOT EXISTS revoked_sessions (
    nonce TEXT PRIMARY KEY,
    expires REAL NOT NULL
);
"""

CAPACITY = 100_000
"""Revoked sessions kept at once. A session lives 20 minutes: 100 000 sign-outs in that time
is abuse by a signed-in partner, and then the soonest-expiring are forgotten first."""


class Revocations:
    """The revoked nonces of this process, each with its session's expiry. Thread-safe: on
    Kafka the view's writer thread adds to it while the event loop reads it."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._expiry: dict[str, float] = {}
        self._lock = threading.Lock()

    def add(self, nonce: str, expires: float, now: float) -> None:
        """Remember ``nonce`` until ``expires`` (a session already expired needs nothing)."""
        if expires <= now:
            return
        with self._lock:
            if nonce not in self._expiry and len(self._expiry) >= self.capacity:
                self._make_room(now)
            self._expiry[nonce] = expires

    def load(self, rows: Iterable[tuple[str, float]], now: float) -> None:
        for nonce, expires in rows:
            self.add(nonce, expires, now)

    def revoked(self, nonce: str) -> bool:
        """Whether the session of ``nonce`` was signed out (one dictionary look-up)."""
        return nonce in self._expiry

    def __len__(self) -> int:
        return len(self._expiry)

    def _make_room(self, now: float) -> None:
        """Drop what expired; when still full, the entry that expires first (the least
        harm: its cookie is worthless soonest), loudly."""
        for nonce in [n for n, e in self._expiry.items() if e <= now]:
            del self._expiry[nonce]
        if len(self._expiry) >= self.capacity:
            soonest = min(self._expiry, key=self._expiry.__getitem__)
            del self._expiry[soonest]
            log.warning("portal.revocations_full", capacity=self.capacity)


def store(db: sqlite3.Connection, nonce: str, expires: float, now: float) -> None:
    """Record a revocation in a store (the embedded one, or a Kafka process's view), and
    prune the ones whose sessions expired."""
    db.execute("DELETE FROM revoked_sessions WHERE expires <= ?", (now,))
    if expires > now:
        db.execute(
            "INSERT OR REPLACE INTO revoked_sessions (nonce, expires) VALUES (?, ?)",
            (nonce, expires),
        )


def live(db: sqlite3.Connection, now: float) -> list[tuple[str, float]]:
    """The revocations whose sessions have not expired yet (read at start)."""
    rows = db.execute(
        "SELECT nonce, expires FROM revoked_sessions WHERE expires > ?", (now,)
    ).fetchall()
    return [(str(r[0]), float(r[1])) for r in rows]
