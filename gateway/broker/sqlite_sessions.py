"""Signed-out portal sessions in the embedded store (and a Kafka process's view).

What a revocation means and how long it is kept is gateway/broker/revocations.py's; this is
its table.
"""

from __future__ import annotations

import sqlite3

SCHEMA = """
CREATE TABLE IF NOT EXISTS revoked_sessions (
    nonce TEXT PRIMARY KEY,
    expires REAL NOT NULL
);
"""


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
