"""The embedded store's file: its tables, their upgrades, and how the file is opened and locked."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import stat
from pathlib import Path
from typing import IO

import structlog

from gateway.broker.base import (
    DeliveryState,
    StorageError,
)

log = structlog.get_logger("ggk.broker")

DELIVERY_COUNTS = (
    "CREATE TABLE IF NOT EXISTS delivery_counts (destination TEXT NOT NULL, state TEXT NOT NULL, "
    "n INTEGER NOT NULL, PRIMARY KEY (destination, state)) WITHOUT ROWID"
)


_COUNT_TRIGGERS = ("deliveries_counted", "deliveries_recounted", "deliveries_uncounted")


OPEN_STATES = (
    "("
    + ", ".join(
        f"'{s}'"
        for s in (
            DeliveryState.PENDING,
            DeliveryState.RETRY,
            DeliveryState.INFLIGHT,
            DeliveryState.INBOX,
        )
    )
    + ")"
)
"""SQL list of the delivery states still waiting to reach their receiver (``state IN …``:
an index range per state, never a walk over every delivery ever made)."""


SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    received_at REAL NOT NULL,
    kind TEXT NOT NULL,
    zender TEXT NOT NULL,
    zender_applicatie TEXT NOT NULL,
    ontvanger TEXT NOT NULL,
    referentienummer TEXT NOT NULL,
    cross_ref TEXT,
    functie TEXT,
    message_code TEXT,
    identificatie TEXT,
    payload_sender TEXT,
    digest TEXT NOT NULL,
    envelope BLOB NOT NULL,
    envelope_key TEXT,
    purged_at REAL,
    bv03_ref TEXT NOT NULL,
    bv03_tijdstip TEXT NOT NULL,
    heen_id TEXT,
    retourcodes TEXT,
    answered_at REAL,
    UNIQUE (zender, referentienummer)
);
CREATE INDEX IF NOT EXISTS messages_referentie ON messages (referentienummer);
CREATE INDEX IF NOT EXISTS messages_heen ON messages (heen_id);
-- the heenberichten still without a retour: what an overdue count reads (every metrics
-- scrape), instead of every heenbericht ever received
CREATE INDEX IF NOT EXISTS messages_unanswered ON messages (received_at)
    WHERE kind = 'Di01' AND answered_at IS NULL;
-- a partner's newest sent messages without sorting all it ever sent
CREATE INDEX IF NOT EXISTS messages_zender_received ON messages (zender, received_at);
-- the payloads retention has not dropped yet: the hourly run (in the writer, so every accept
-- waits for it) reads those, not every message ever received
CREATE INDEX IF NOT EXISTS messages_unpurged ON messages (received_at) WHERE purged_at IS NULL;
CREATE INDEX IF NOT EXISTS messages_identificatie
    ON messages (payload_sender, message_code, identificatie);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL REFERENCES messages (id),
    destination TEXT NOT NULL,
    adapter TEXT NOT NULL,
    copy INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    lease_until REAL,
    last_error TEXT,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (state, next_attempt_at);
-- (message_id, destination), unique (routing plans a partner once per message), not
-- (message_id) alone: with equalities on message_id and destination the planner took
-- deliveries_destination and walked every delivery that receiver ever had
-- (tests/test_query_plans.py); a unique index it knows to be one row
CREATE UNIQUE INDEX IF NOT EXISTS deliveries_message_destination
    ON deliveries (message_id, destination);
DROP INDEX IF EXISTS deliveries_message;
CREATE INDEX IF NOT EXISTS deliveries_destination ON deliveries (destination, state);
-- a partner's archive (waiting and acknowledged, newest first, keyset paged) walks its own
-- deliveries in id order instead of sorting every delivery it ever had
CREATE INDEX IF NOT EXISTS deliveries_destination_id ON deliveries (destination, id);
-- deliveries per receiver and state, kept by triggers in the same transaction as the change,
-- so a metrics scrape reads a few rows per partner instead of counting every delivery ever
-- made (the dead letters, kept for ever, included)
"""
    + DELIVERY_COUNTS
    + """;
CREATE TRIGGER IF NOT EXISTS deliveries_counted AFTER INSERT ON deliveries BEGIN
    INSERT INTO delivery_counts (destination, state, n) VALUES (NEW.destination, NEW.state, 1)
        ON CONFLICT (destination, state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS deliveries_recounted AFTER UPDATE OF state, destination
    ON deliveries WHEN OLD.state IS NOT NEW.state OR OLD.destination IS NOT NEW.destination
BEGIN
    UPDATE delivery_counts SET n = n - 1
        WHERE destination = OLD.destination AND state = OLD.state;
    INSERT INTO delivery_counts (destination, state, n) VALUES (NEW.destination, NEW.state, 1)
        ON CONFLICT (destination, state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS deliveries_uncounted AFTER DELETE ON deliveries BEGIN
    UPDATE delivery_counts SET n = n - 1
        WHERE destination = OLD.destination AND state = OLD.state;
END;
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL,
    at REAL NOT NULL,
    event TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS events_message ON events (message_id);
CREATE TABLE IF NOT EXISTS facts (
    message_id TEXT NOT NULL,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    standard TEXT NOT NULL,
    gemeente TEXT NOT NULL,
    aanbieder TEXT NOT NULL,
    categorie TEXT NOT NULL,
    month TEXT NOT NULL,
    client TEXT,
    key TEXT NOT NULL,
    amount INTEGER,
    link TEXT,
    follows TEXT
);
CREATE INDEX IF NOT EXISTS facts_gemeente ON facts (gemeente, month);
CREATE INDEX IF NOT EXISTS facts_link ON facts (link);
CREATE TABLE IF NOT EXISTS refusals (
    at REAL NOT NULL,
    partner TEXT NOT NULL,
    functie TEXT NOT NULL,
    referentienummer TEXT NOT NULL,
    code TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS refusals_partner ON refusals (partner, at);
"""
)


def upgrade(db: sqlite3.Connection, path: Path) -> list[str]:
    """Bring a file written by an earlier version up to the schema, before SCHEMA runs (its
    indexes name the new column; its triggers must find the counts already taken). Each step
    in one transaction, announced before it starts (on a large file it reads every row once);
    the names of the steps that ran. Nothing else writes yet: the caller holds the lock."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(messages)")}
    if not columns:
        return []  # a new file: SCHEMA makes it whole
    ran = []
    if "answered_at" not in columns:
        log.warning("broker.store_upgrading", path=str(path), step="answered_at")
        db.execute("BEGIN IMMEDIATE")
        db.execute("ALTER TABLE messages ADD COLUMN answered_at REAL")
        db.execute(
            "UPDATE messages SET answered_at = (SELECT MIN(r.received_at) FROM messages r "
            "WHERE r.heen_id = messages.id) WHERE kind = 'Di01'"
        )
        db.execute("COMMIT")
        ran.append("answered_at")
    counted = {row[1] for row in db.execute("PRAGMA table_info(delivery_counts)")}
    if "destination" not in counted:  # none at all, or per state only (2026-12-01's shape)
        log.warning("broker.store_upgrading", path=str(path), step="delivery_counts")
        db.execute("BEGIN IMMEDIATE")
        for trigger in _COUNT_TRIGGERS:  # SCHEMA makes them anew, for the new table
            db.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        db.execute("DROP TABLE IF EXISTS delivery_counts")
        db.execute(DELIVERY_COUNTS)
        db.execute(
            "INSERT INTO delivery_counts (destination, state, n) "
            "SELECT destination, state, COUNT(*) FROM deliveries GROUP BY destination, state"
        )
        db.execute("COMMIT")
        ran.append("delivery_counts")
    return ran


def private_database(path: Path) -> None:
    """The database file (created if missing) and its -wal/-shm companions are mode 0600 and
    its folder 0700, whoever created them and whatever the umask: they hold sealed
    payloads, audit records and pseudonyms. SQLite gives -wal and -shm the database's mode."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.parent.stat().st_uid == os.getuid():
        os.chmod(path.parent, 0o700)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        os.close(fd)
    else:
        # never open (and close) a database this process may already have connections to:
        # closing any descriptor of a file drops every POSIX lock the process holds on it,
        # SQLite's included; another process (a `ggk` command appending to the audit log)
        # would then take the gateway for gone, checkpoint and reset the WAL under it, and
        # records were lost (tests/test_partners_lifecycle.py shows it)
        if stat.S_ISLNK(st.st_mode):
            raise OSError(f"{path} is a symbolic link; the database must be a plain file")
        os.chmod(path, 0o600)
    for companion in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(f"{path}{companion}", 0o600)


def connect(path: Path) -> sqlite3.Connection:
    private_database(path)
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA foreign_keys=ON")
    # Checkpoints run in their own thread (see SqliteBroker._checkpointer), not inside the
    # writer's commits, where they showed as 300-500 ms Bv03 latency spikes under load.
    db.execute("PRAGMA wal_autocheckpoint=0")
    return db


def exclusive_lock(path: Path) -> IO[bytes]:
    """One gateway process per database: the embedded broker is not a distributed system."""
    handle = os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise StorageError(
            f"{path.parent} is in use by another gateway process; the embedded "
            "broker serves one process (use the Kafka backend for more)"
        ) from None
    return handle
