"""The embedded broker: one SQLite file in WAL mode, no server to run.

Durability without one fsync per message: every write goes through a single writer thread
that takes whatever operations are queued (up to ``batch_max``), runs them in one transaction
(each in its own savepoint, so one bad operation does not sink the others) and commits once
with ``synchronous=FULL``. Callers await their own operation's result, which is only set after
that commit returned, so an ``accept`` that resolved is on disk (group commit).

Reads use their own connection; WAL lets them run while the writer writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import structlog

from gateway import audit, stats
from gateway.broker import revocations, sqlite_audit, sqlite_figures
from gateway.broker.base import (
    AcceptOutcome,
    DeliveryState,
    DestinationQueue,
    Job,
    MessageView,
    NewMessage,
    OpsSnapshot,
    StorageError,
)
from gateway.figures import Fact
from gateway.keyring import Keyring, KeyringError
from gateway.standards import MESSAGES, Kind

DELIVERY_COUNTS = (
    "CREATE TABLE IF NOT EXISTS delivery_counts (destination TEXT NOT NULL, state TEXT NOT NULL, "
    "n INTEGER NOT NULL, PRIMARY KEY (destination, state)) WITHOUT ROWID"
)
_COUNT_TRIGGERS = ("deliveries_counted", "deliveries_recounted", "deliveries_uncounted")
_OPEN_STATES = (
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

log = structlog.get_logger("ggk.broker")

Op = Callable[[sqlite3.Connection], Any]

_VISIBLE = (
    "(? IS NULL OR m.zender = ? OR m.ontvanger = ? OR EXISTS (SELECT 1 FROM deliveries v "
    "WHERE v.message_id = m.id AND v.destination = ?))"
)
"""A message row ``m`` a viewer (bound four times; NULL = an operator) sent or received."""

AWAITING_RETOUR = tuple(
    sorted(m.code for m in MESSAGES.values() if m.kind is Kind.HEEN and m.pair is not None)
)
"""Heenberichten that must be answered by a retourbericht (OP090)."""

_OVERDUE = (
    "m.kind = 'Di01' AND m.answered_at IS NULL AND m.received_at < ? "
    f"AND m.functie IN ({', '.join('?' for _ in AWAITING_RETOUR)})"
)
"""Message rows ``m`` still without a retour (bind: received before, then AWAITING_RETOUR);
read from the partial index ``messages_unanswered``, so it costs what is unanswered."""


def _upgrade(db: sqlite3.Connection, path: Path) -> list[str]:
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
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for companion in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(f"{path}{companion}", 0o600)


def _connect(path: Path) -> sqlite3.Connection:
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


_CLAIM = (
    "UPDATE deliveries SET state = 'inflight', lease_until = ?, "
    "attempts = attempts + 1, updated_at = ? WHERE id IN ("
    " SELECT id FROM deliveries WHERE"
    " (state IN ('pending', 'retry') AND next_attempt_at <= ?)"
    " OR (state = 'inflight' AND lease_until < ?)"
    " ORDER BY next_attempt_at, id LIMIT ?)"
    " RETURNING id, message_id, destination, adapter, attempts"
)

_DUE = (
    "SELECT id, destination FROM deliveries WHERE"
    " ((state IN ('pending', 'retry') AND next_attempt_at <= ?)"
    " OR (state = 'inflight' AND lease_until < ?))"
    " AND destination NOT IN (SELECT value FROM json_each(?))"
    " ORDER BY next_attempt_at, id LIMIT ?"
)
_LEASE = (
    "UPDATE deliveries SET state = 'inflight', lease_until = ?, attempts = attempts + 1, "
    "updated_at = ? WHERE id IN (SELECT value FROM json_each(?))"
    " RETURNING id, message_id, destination, adapter, attempts"
)
_BUSY = (
    "SELECT destination, count(*) FROM deliveries"
    " WHERE state = 'inflight' AND lease_until >= ? GROUP BY destination"
)


class SqliteBroker:
    """The embedded default broker (see module docstring)."""

    def __init__(
        self,
        path: Path,
        keyring: Keyring,
        *,
        batch_max: int = 512,
        clock: Callable[[], float] = time.time,
        audit_enabled: bool = True,
        max_bytes: int | None = None,
        durable: bool = True,
    ) -> None:
        """``durable=False`` commits without waiting for the disk (``synchronous=NORMAL``):
        for a file that can be rebuilt from elsewhere (a Kafka view, which stores its Kafka
        positions in the same transactions: after a power loss it re-reads what it lost)."""
        self.path = path
        self.durable = durable
        self.keyring = keyring
        self.max_bytes = max_bytes
        self.audit_enabled = audit_enabled
        self.batch_max = batch_max
        self.clock = clock
        self.wake = asyncio.Event()
        """Set whenever new work may be due; delivery workers wait on it."""
        self._queue: asyncio.Queue[tuple[Op, asyncio.Future[Any]] | None] | None = None
        self._writer_task: asyncio.Task[None] | None = None
        self._write_db: sqlite3.Connection | None = None
        self._read_db: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()
        self._lock_file: IO[bytes] | None = None
        self._checkpoint_db: sqlite3.Connection | None = None
        self._checkpoint_task: asyncio.Task[None] | None = None
        self.revocations = revocations.Revocations()
        """Signed-out portal sessions, in memory (loaded at start, added to on sign-out)."""

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        private_database(self.path)
        self._lock_file = _exclusive_lock(self.path.with_suffix(".lock"))
        self._write_db = await asyncio.to_thread(_connect, self.path)
        if not self.durable:
            self._write_db.execute("PRAGMA synchronous=NORMAL")
        upgraded = await asyncio.to_thread(_upgrade, self._write_db, self.path)
        if upgraded:
            log.info("broker.store_upgraded", path=str(self.path), steps=upgraded)
        await asyncio.to_thread(
            self._write_db.executescript, SCHEMA + sqlite_audit.SCHEMA + revocations.SCHEMA
        )
        mismatch = await asyncio.to_thread(
            sqlite_audit.keyring_mismatch, self._write_db, self.keyring
        )
        if mismatch is not None:
            self._write_db.close()
            self._lock_file.close()
            raise StorageError(f"{self.path}: {mismatch}")
        if self.max_bytes is not None:
            # SQLite refuses to grow past this (SQLITE_FULL, transaction rolled back), which
            # the writer reports as StorageError: new messages get StUF046, nothing half-done.
            page_size = self._write_db.execute("PRAGMA page_size").fetchone()[0]
            self._write_db.execute(f"PRAGMA max_page_count = {self.max_bytes // page_size}")
        self._checkpoint_db = await asyncio.to_thread(_connect, self.path)
        self._checkpoint_task = asyncio.create_task(self._checkpointer(), name="sqlite-checkpoint")
        recovered = await asyncio.to_thread(self._recover_leases)
        if recovered:
            log.warning("broker.leases_recovered", deliveries=recovered)
        self._read_db = await asyncio.to_thread(_connect, self.path)
        now = self.clock()
        self.revocations.load(await self.query(lambda db: revocations.live(db, now)), now)
        self._queue = asyncio.Queue()
        self._writer_task = asyncio.create_task(self._writer(), name="sqlite-writer")

    async def _checkpointer(self, interval: float = 1.0) -> None:
        """Copy the WAL back into the database regularly without blocking the writer."""
        db = self._checkpoint_db
        assert db is not None
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(db.execute, "PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error as exc:
                log.warning("broker.checkpoint_failed", error=str(exc))

    def _recover_leases(self) -> int:
        """Deliveries in flight belonged to a process that is gone (we hold the lock now):
        make them due at once instead of waiting for their leases to run out."""
        db = self._write_db
        assert db is not None
        now = self.clock()
        db.execute("BEGIN IMMEDIATE")
        rows = db.execute(
            "UPDATE deliveries SET state = 'retry', next_attempt_at = ?, "
            "lease_until = NULL, updated_at = ? WHERE state = 'inflight' "
            "RETURNING message_id, destination",
            (now, now),
        ).fetchall()
        for row in rows:
            self.record(
                db,
                row["message_id"],
                now,
                "lease_recovered",
                f"{row['destination']}: in flight when the gateway stopped",
            )
        db.execute("COMMIT")
        return len(rows)

    # --- history and audit --------------------------------------------------------------------

    def record(
        self,
        db: sqlite3.Connection,
        message_id: str,
        at: float,
        event: str,
        detail: str,
        *,
        actor: str = "",
        origin: str = "",
        outcome: str = "",
        bsns: tuple[str, ...] = (),
        secret: dict[str, Any] | None = None,
        about: NewMessage | None = None,
    ) -> None:
        """A message's history event and its audit record, in the caller's transaction.
        ``about``: the message itself when the caller has it in hand (as it is stored), so
        its parties are not read back from the table once per record."""
        db.execute(
            "INSERT INTO events (message_id, at, event, detail) VALUES (?, ?, ?, ?)",
            (message_id, at, event, detail),
        )
        if not self.audit_enabled:
            return
        if about is not None and about.id == message_id:
            parties = (about.referentienummer, about.zender, about.ontvanger, about.functie)
        else:
            parties = db.execute(
                "SELECT referentienummer, zender, ontvanger, functie FROM messages WHERE id = ?",
                (message_id,),
            ).fetchone() or ("", "", "", "")
        referentienummer, zender, ontvanger, functie = parties
        sqlite_audit.append(
            db,
            self.keyring,
            audit.AuditEvent(
                action=event,
                object=message_id,
                referentienummer=referentienummer,
                zender=zender,
                ontvanger=ontvanger,
                functie=functie or "",
                actor=actor,
                origin=origin,
                outcome=outcome or detail,
                bsns=bsns,
                secret=secret or {},
            ),
            at,
        )

    def open_envelope(self, message_id: str, key_id: str | None, sealed: bytes) -> bytes:
        """The envelope, decrypted; StorageError when retention purged it."""
        if key_id is None:
            raise StorageError(f"the payload of {message_id} was purged (retention)")
        return self.keyring.decrypt(key_id, bytes(sealed), envelope_aad(message_id))

    async def audit_event(self, event: audit.AuditEvent, *, refused_by: str | None = None) -> None:
        """An audit record that belongs to no stored message (a rejection, an admin act)."""
        if not self.audit_enabled:
            return
        now = self.clock()

        def op(db: sqlite3.Connection) -> None:
            sqlite_audit.append(db, self.keyring, event, now)
            if refused_by is not None:
                store_refusal(db, now, refused_by, event)

        await self.write(op)

    async def revoke_session(self, nonce: str, expires: float) -> None:
        now = self.clock()
        await self.write(
            functools.partial(revocations.store, nonce=nonce, expires=expires, now=now)
        )
        self.revocations.add(nonce, expires, now)

    def session_revoked(self, nonce: str) -> bool:
        return self.revocations.revoked(nonce)

    def signins_paused(self) -> float:
        return self.revocations.full_for(self.clock())

    async def refusals(self, partner: str, limit: int) -> list[dict[str, Any]]:
        rows = await self.read(
            "SELECT at, functie, referentienummer, code FROM refusals WHERE partner = ? "
            "ORDER BY at DESC LIMIT ?",
            (partner, limit),
        )
        return [dict(r) for r in rows]

    async def checkpoint(self) -> dict[str, Any] | None:
        now = self.clock()
        result: dict[str, Any] | None = await self.write(
            lambda db: sqlite_audit.checkpoint(db, self.keyring, now)
        )
        return result

    async def purge(self, older_than: float) -> int:
        """Retention: drop the payloads of messages received before ``older_than`` whose
        deliveries are all finished. Metadata, history and audit stay; the purge is audited."""
        now = self.clock()

        def op(db: sqlite3.Connection) -> int:
            rows = db.execute(
                "UPDATE messages SET envelope = X'', envelope_key = NULL, purged_at = ? "
                "WHERE received_at < ? AND purged_at IS NULL AND NOT EXISTS (SELECT 1 FROM "
                f"deliveries d WHERE d.message_id = messages.id AND d.state IN {_OPEN_STATES}) "
                "RETURNING id",
                (now, older_than),
            ).fetchall()
            for row in rows:
                self.record(
                    db,
                    row["id"],
                    now,
                    "payload_purged",
                    "retention",
                    actor="retention",
                    outcome="purged",
                )
            return len(rows)

        count: int = await self.write(op)
        return count

    async def close(self) -> None:
        if self._checkpoint_task is not None:
            self._checkpoint_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpoint_task
        if self._queue is not None and self._writer_task is not None:
            await self._queue.put(None)
            await self._writer_task
        for db in (self._write_db, self._read_db, self._checkpoint_db):
            if db is not None:
                db.close()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    # --- the single writer -------------------------------------------------------------------

    async def _writer(self) -> None:
        assert self._queue is not None
        while True:
            item = await self._queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < self.batch_max:
                try:
                    nxt = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if nxt is None:
                    await self._queue.put(None)
                    break
                batch.append(nxt)
            try:
                results = await asyncio.to_thread(self._apply, [op for op, _ in batch])
            except Exception as exc:  # the commit itself failed: nothing in the batch holds
                error = StorageError(f"commit failed: {exc}")
                results = [error] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    def _apply(self, ops: list[Op]) -> list[Any]:
        db = self._write_db
        assert db is not None
        results: list[Any] = []
        db.execute("BEGIN IMMEDIATE")
        try:
            for op in ops:
                db.execute("SAVEPOINT op")
                try:
                    results.append(op(db))
                    db.execute("RELEASE op")
                except sqlite3.Error as exc:
                    db.execute("ROLLBACK TO op")
                    db.execute("RELEASE op")
                    results.append(StorageError(str(exc)))
                except Exception as exc:  # one caller's failure must not sink the batch
                    db.execute("ROLLBACK TO op")
                    db.execute("RELEASE op")
                    results.append(exc)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return results

    async def write(self, op: Op) -> Any:
        if self._queue is None:
            raise StorageError("broker is not started")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self._queue.put((op, future))
        return await future

    async def read(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        rows: list[sqlite3.Row] = await self.query(lambda db: db.execute(sql, params).fetchall())
        return rows

    async def query(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``fn`` on the read connection (WAL: it does not wait for the writer)."""

        def run() -> Any:
            assert self._read_db is not None
            with self._read_lock:
                return fn(self._read_db)

        return await asyncio.to_thread(run)

    # --- accepting ---------------------------------------------------------------------------

    async def accept(self, message: NewMessage) -> AcceptOutcome:
        now = self.clock()

        def op(db: sqlite3.Connection) -> AcceptOutcome:
            earlier = prior_outcome(db, message)
            if earlier is not None:
                if earlier.status != "tr056":
                    self.record(
                        db,
                        earlier.message_id,
                        now,
                        f"{earlier.status}_submission",
                        message.actor,
                        actor=message.actor,
                        origin=message.origin,
                        outcome=earlier.status,
                    )
                return earlier
            self.store_message(db, message, now)
            return AcceptOutcome("accepted", message.id, message.bv03_ref, message.bv03_tijdstip)

        outcome: AcceptOutcome = await self.write(op)
        if outcome.status == "accepted":
            self.wake.set()
        return outcome

    def store_message(
        self,
        db: sqlite3.Connection,
        message: NewMessage,
        now: float,
        sealed: tuple[str, bytes] | None = None,
    ) -> None:
        """Insert an accepted message, its deliveries and their history, in the caller's
        transaction. ``sealed`` is the envelope already encrypted (key id, ciphertext), as the
        Kafka backend receives it; otherwise it is encrypted here."""
        key_id, ciphertext = sealed or self.keyring.encrypt(
            message.envelope, envelope_aad(message.id)
        )
        db.execute(
            "INSERT INTO messages (id, received_at, kind, zender, zender_applicatie, "
            "ontvanger, referentienummer, cross_ref, functie, message_code, identificatie, "
            "payload_sender, digest, envelope, envelope_key, bv03_ref, bv03_tijdstip, heen_id, "
            "retourcodes, answered_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
            # a retour that came first: a Kafka view may apply it before its heenbericht
            "?, ?, ?, (SELECT MIN(received_at) FROM messages WHERE heen_id = ?))",
            (
                message.id,
                now,
                message.kind,
                message.zender,
                message.zender_applicatie,
                message.ontvanger,
                message.referentienummer,
                message.cross_ref,
                message.functie,
                message.message_code,
                message.identificatie,
                message.payload_sender,
                message.digest,
                ciphertext,
                key_id,
                message.bv03_ref,
                message.bv03_tijdstip,
                message.heen_id,
                message.retourcodes,
                message.id,
            ),
        )
        self.record(
            db,
            message.id,
            now,
            "accepted",
            message.actor,
            actor=message.actor,
            origin=message.origin,
            outcome="accepted",
            bsns=message.bsns,
            secret={"payload_sha256": message.payload_digest},
            about=message,
        )
        for planned in message.deliveries:
            state = DeliveryState.INBOX if planned.held else DeliveryState.PENDING
            db.execute(
                "INSERT INTO deliveries (message_id, destination, adapter, copy, state, "
                "next_attempt_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    message.id,
                    planned.destination,
                    planned.adapter,
                    int(planned.copy),
                    state.value,
                    now,
                    now,
                ),
            )
            self.record(
                db,
                message.id,
                now,
                "routed",
                f"{planned.destination} via {planned.adapter}"
                + (" (copy)" if planned.copy else ""),
                about=message,
            )
        if message.heen_id:
            db.execute(
                "UPDATE messages SET answered_at = ? WHERE id = ? AND answered_at IS NULL",
                (now, message.heen_id),
            )
            self.record(
                db,
                message.heen_id,
                now,
                "retour_received",
                f"{message.functie} {message.id} {message.retourcodes or ''}".strip(),
            )
        if message.facts:
            store_facts(db, message.id, now, message.facts)

    # --- delivering --------------------------------------------------------------------------

    async def claim(
        self, limit: int, lease_seconds: float, per_destination: int | None = None
    ) -> list[Job]:
        """Up to ``limit`` due deliveries, oldest first, leased for ``lease_seconds``; with
        ``per_destination`` never more than that many in flight to one receiver, so a slow
        receiver cannot take every slot (:func:`_capped`)."""
        now = self.clock()

        def op(db: sqlite3.Connection) -> list[Job]:
            if per_destination is None:
                rows = db.execute(_CLAIM, (now + lease_seconds, now, now, now, limit)).fetchall()
            else:
                rows = _capped(db, now, now + lease_seconds, limit, per_destination)
            jobs = []
            for row in sorted(rows, key=lambda r: r["id"]):
                msg = db.execute(
                    "SELECT referentienummer, functie, envelope, envelope_key FROM messages "
                    "WHERE id = ?",
                    (row["message_id"],),
                ).fetchone()
                try:
                    envelope = self.open_envelope(
                        row["message_id"], msg["envelope_key"], msg["envelope"]
                    )
                except (KeyringError, StorageError) as exc:
                    # Retrying cannot help: dead-letter this one, keep claiming the others.
                    db.execute(
                        "UPDATE deliveries SET state = 'dead', last_error = ?, "
                        "lease_until = NULL, updated_at = ? WHERE id = ?",
                        (str(exc)[:300], now, row["id"]),
                    )
                    self.record(
                        db,
                        row["message_id"],
                        now,
                        "dead_lettered",
                        f"{row['destination']}: {exc}",
                        outcome="unreadable",
                    )
                    continue
                jobs.append(
                    Job(
                        row["id"],
                        row["message_id"],
                        row["destination"],
                        row["adapter"],
                        row["attempts"],
                        msg["referentienummer"],
                        msg["functie"] or "",
                        envelope,
                    )
                )
            return jobs

        jobs: list[Job] = await self.write(op)
        return jobs

    async def _finish(
        self, job: Job, state: DeliveryState, *, error: str | None, at: float | None, event: str
    ) -> None:
        now = self.clock()

        def op(db: sqlite3.Connection) -> None:
            updated = db.execute(
                "UPDATE deliveries SET state = ?, last_error = ?, next_attempt_at = "
                "COALESCE(?, next_attempt_at), lease_until = NULL, updated_at = ? "
                "WHERE id = ? AND attempts = ? AND state = 'inflight'",
                (state.value, error, at, now, job.delivery_id, job.attempts),
            ).rowcount
            if updated:  # a stale worker whose lease ran out must not overwrite a newer attempt
                detail = f"{job.destination} attempt {job.attempts}"
                if error:
                    detail += f": {error}"
                self.record(db, job.message_id, now, event, detail)

        await self.write(op)

    async def delivered(self, job: Job) -> None:
        await self._finish(job, DeliveryState.DELIVERED, error=None, at=None, event="delivered")

    async def retry(self, job: Job, error: str, at: float) -> None:
        await self._finish(job, DeliveryState.RETRY, error=error, at=at, event="retry_scheduled")

    async def dead(self, job: Job, error: str) -> None:
        await self._finish(job, DeliveryState.DEAD, error=error, at=None, event="dead_lettered")

    async def next_due(self) -> float | None:
        rows = await self.read(
            "SELECT MIN(CASE WHEN state = 'inflight' THEN lease_until ELSE next_attempt_at END) "
            "AS due FROM deliveries WHERE state IN ('pending', 'retry', 'inflight')"
        )
        due = rows[0]["due"] if rows else None
        return float(due) if due is not None else None

    # --- queries -----------------------------------------------------------------------------

    async def find_conversation(
        self,
        referentienummer: str,
        *,
        zender: str,
        ontvanger: str,
        kinds: tuple[str, ...] = ("Di01", "Du01"),
    ) -> dict[str, Any] | None:
        marks = ", ".join("?" * len(kinds))
        rows = await self.read(
            "SELECT id, zender, ontvanger, kind, functie, referentienummer FROM messages "
            f"WHERE referentienummer = ? AND zender = ? AND ontvanger = ? AND kind IN ({marks}) "
            "LIMIT 1",
            (referentienummer, zender, ontvanger, *kinds),
        )
        return dict(rows[0]) if rows else None

    async def find_heen(
        self, payload_sender: str, message_code: str, identificatie: str, *, ontvanger: str
    ) -> dict[str, Any] | None:
        rows = await self.read(
            "SELECT id, zender, ontvanger, referentienummer FROM messages WHERE "
            "payload_sender = ? AND message_code = ? AND identificatie = ? AND kind = 'Di01' "
            "AND ontvanger = ? ORDER BY received_at DESC LIMIT 1",
            (payload_sender, message_code, identificatie, ontvanger),
        )
        return dict(rows[0]) if rows else None

    async def view(self, message_id: str, viewer: str | None = None) -> MessageView | None:
        rows = await self.read(
            "SELECT id, received_at, kind, zender, ontvanger, referentienummer, cross_ref, "
            "functie, message_code, heen_id, retourcodes FROM messages m WHERE (id = ? "
            f"OR referentienummer = ?) AND {_VISIBLE} ORDER BY received_at LIMIT 1",
            (message_id, message_id, viewer, viewer, viewer, viewer),
        )
        if not rows:
            return None
        data = dict(rows[0])
        mid = data["id"]
        # an answer whose reference named no message between its two parties ([gateway]
        # conversations = "lenient", or accepted before that was strict)
        data["unlinked"] = data["kind"] != "Di01" and data["heen_id"] is None
        deliveries = [
            dict(r)
            for r in await self.read(
                "SELECT destination, adapter, copy, state, attempts, next_attempt_at, last_error, "
                "updated_at FROM deliveries WHERE message_id = ? AND (? IS NULL OR ? = ? "
                "OR destination = ?) ORDER BY id",
                (mid, viewer, viewer, data["zender"], viewer),
            )
        ]
        events = (
            [
                dict(r)
                for r in await self.read(
                    "SELECT at, event, detail FROM events WHERE message_id = ? ORDER BY id", (mid,)
                )
            ]
            if viewer is None or viewer == data["zender"]
            else []
        )
        heen_id = data["heen_id"] or mid
        conversation = [
            dict(r)
            for r in await self.read(
                "SELECT id, kind, functie, zender, ontvanger, received_at, retourcodes "
                f"FROM messages m WHERE (id = ? OR heen_id = ?) AND {_VISIBLE} "
                "ORDER BY received_at",
                (heen_id, heen_id, viewer, viewer, viewer, viewer),
            )
        ]
        return MessageView(data, deliveries, events, conversation)

    async def inbox(self, partner: str, limit: int, after: int = 0) -> list[dict[str, Any]]:
        rows = await self.read(
            "SELECT d.id AS cursor, m.id, m.kind, m.functie, m.zender, m.referentienummer, "
            "m.cross_ref, m.received_at, (m.kind <> 'Di01' AND m.heen_id IS NULL) AS unlinked "
            "FROM deliveries d JOIN messages m ON m.id = d.message_id "
            "WHERE d.destination = ? AND d.state = 'inbox' AND d.id > ? ORDER BY d.id LIMIT ?",
            (partner, after, limit),
        )
        return [{**dict(r), "unlinked": bool(r["unlinked"])} for r in rows]

    async def sent(self, partner: str, limit: int) -> list[dict[str, Any]]:
        rows = await self.read(
            "SELECT m.id, m.kind, m.functie, m.ontvanger, m.referentienummer, m.received_at, "
            "m.bv03_ref, (SELECT GROUP_CONCAT(d.state) FROM deliveries d "
            "WHERE d.message_id = m.id) AS states, "
            "(SELECT r.functie || ' ' || COALESCE(r.retourcodes, '') FROM messages r "
            "WHERE r.heen_id = m.id ORDER BY r.received_at DESC LIMIT 1) AS retour "
            "FROM messages m WHERE m.zender = ? ORDER BY m.received_at DESC LIMIT ?",
            (partner, limit),
        )
        return [dict(r) for r in rows]

    async def inbox_envelope(self, partner: str, message_id: str) -> bytes | None:
        sealed = await self.inbox_sealed(partner, message_id)
        return None if sealed is None else self.open_envelope(message_id, *sealed)

    async def inbox_sealed(self, partner: str, message_id: str) -> tuple[str | None, bytes] | None:
        """The sealed envelope (key id, ciphertext) of a message in ``partner``'s inbox; None
        when it is not there (or not the partner's)."""
        rows = await self.read(
            "SELECT m.envelope, m.envelope_key FROM deliveries d "
            "JOIN messages m ON m.id = d.message_id "
            "WHERE d.destination = ? AND m.id = ? AND d.state IN ('inbox', 'delivered') "
            "AND d.adapter = 'inbox' AND m.purged_at IS NULL",
            (partner, message_id),
        )
        if not rows:
            return None
        return rows[0]["envelope_key"], bytes(rows[0]["envelope"])

    async def ack(self, partner: str, message_id: str) -> bool:
        now = self.clock()

        def op(db: sqlite3.Connection) -> bool:
            updated = db.execute(
                "UPDATE deliveries SET state = 'delivered', updated_at = ? WHERE "
                "destination = ? AND message_id = ? AND state = 'inbox'",
                (now, partner, message_id),
            ).rowcount
            if updated:
                self.record(db, message_id, now, "delivered", f"{partner} fetched from inbox")
            return bool(updated)

        result: bool = await self.write(op)
        return result

    async def dead_letters(
        self, partner: str | None, limit: int, after: int = 0
    ) -> list[dict[str, Any]]:
        rows = await self.read(
            "SELECT d.id AS cursor, m.id, m.referentienummer, m.functie, m.zender, "
            "d.destination, d.attempts, d.last_error, d.updated_at FROM deliveries d "
            "JOIN messages m ON m.id = d.message_id WHERE d.state = 'dead' "
            "AND (? IS NULL OR d.destination = ?) AND d.id > ? ORDER BY d.id LIMIT ?",
            (partner, partner, after, limit),
        )
        return [dict(r) for r in rows]

    async def replay(
        self,
        *,
        message_id: str | None = None,
        dead_only: bool = True,
        since: float | None = None,
        partner: str | None = None,
        actor: str = "",
    ) -> int:
        now = self.clock()

        def op(db: sqlite3.Connection) -> int:
            rows = replay_candidates(db, message_id, dead_only, since, partner)
            for row in rows:
                db.execute(
                    "UPDATE deliveries SET state = 'pending', next_attempt_at = ?, "
                    "attempts = 0, last_error = NULL, updated_at = ? WHERE id = ?",
                    (now, now, row["id"]),
                )
                self.record(
                    db,
                    row["message_id"],
                    now,
                    "replayed",
                    f"{row['destination']} by {actor or 'operator'}",
                    actor=actor or "operator",
                )
            return len(rows)

        count: int = await self.write(op)
        if count:
            self.wake.set()
        return count

    async def overdue(self, older_than: float, limit: int) -> list[dict[str, Any]]:
        rows = await self.read(
            "SELECT m.id, m.functie, m.zender, m.ontvanger, m.referentienummer, m.received_at "
            f"FROM messages m WHERE {_OVERDUE} ORDER BY m.received_at LIMIT ?",
            (older_than, *AWAITING_RETOUR, limit),
        )
        return [dict(r) for r in rows]

    async def audit_search(
        self,
        *,
        message: str | None = None,
        bsn: str | None = None,
        partner: str | None = None,
        since: float | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await self.query(
            lambda db: sqlite_audit.search(
                db,
                self.keyring,
                message=message,
                bsn=bsn,
                partner=partner,
                since=since,
                limit=limit,
            )
        )
        return found

    async def figures(self, scope: stats.Scope) -> stats.RawFigures:
        result: stats.RawFigures = await self.query(lambda db: sqlite_figures.count(db, scope))
        return result

    async def counts(self) -> dict[str, int]:
        rows = await self.read(
            "SELECT state, SUM(n) AS n FROM delivery_counts GROUP BY state HAVING SUM(n) > 0"
        )
        return {r["state"]: int(r["n"]) for r in rows}

    async def delivery_health(self, destinations: list[str]) -> dict[str, dict[str, Any]]:
        """Per destination: when a delivery last succeeded, how many are being retried, and
        the newest error of those retried or dead (each query walks one index range; all
        of them in one trip to the reader thread)."""

        def health(db: sqlite3.Connection, destination: str) -> dict[str, Any]:
            last = db.execute(
                "SELECT updated_at FROM deliveries WHERE destination = ? AND state = 'delivered' "
                "ORDER BY id DESC LIMIT 1",
                (destination,),
            ).fetchone()
            retrying = db.execute(
                "SELECT COUNT(*) AS n FROM deliveries WHERE destination = ? AND state = 'retry'",
                (destination,),
            ).fetchone()
            failure = db.execute(
                "SELECT last_error, updated_at FROM deliveries WHERE destination = ? "
                "AND state IN ('retry', 'dead') ORDER BY updated_at DESC LIMIT 1",
                (destination,),
            ).fetchone()
            return {
                "last_delivered_at": last["updated_at"] if last else None,
                "retrying": int(retrying["n"]),
                "last_failure_at": failure["updated_at"] if failure else None,
                "last_error": failure["last_error"] if failure else None,
            }

        result: dict[str, dict[str, Any]] = await self.query(
            lambda db: {d: health(db, d) for d in destinations}
        )
        return result

    async def ops_snapshot(self, overdue_before: float) -> OpsSnapshot:
        counted = await self.read(
            "SELECT destination, state, n FROM delivery_counts "
            f"WHERE n > 0 AND (state IN {_OPEN_STATES} OR state = 'dead')"
        )
        # the age of each queue: a join over what is open (the states named, an index range
        # each), never over the dead letters, which are kept for ever
        oldest = await self.read(
            "SELECT d.destination, MIN(m.received_at) AS oldest "
            "FROM deliveries d JOIN messages m ON m.id = d.message_id "
            f"WHERE d.state IN {_OPEN_STATES} GROUP BY d.destination"
        )
        waiting: dict[str, int] = {}
        dead: dict[str, int] = {}
        for r in counted:
            into = dead if r["state"] == "dead" else waiting
            into[r["destination"]] = into.get(r["destination"], 0) + int(r["n"])
        oldest_at = {r["destination"]: r["oldest"] for r in oldest}
        overdue = await self.read(
            f"SELECT COUNT(*) AS n FROM messages m WHERE {_OVERDUE}",
            (overdue_before, *AWAITING_RETOUR),
        )
        checkpoint = await self.read("SELECT MAX(at) AS at FROM audit_checkpoint")
        size = sum(
            os.stat(f"{self.path}{suffix}").st_size
            for suffix in ("", "-wal")
            if os.path.exists(f"{self.path}{suffix}")
        )
        return OpsSnapshot(
            queues=tuple(
                DestinationQueue(d, waiting.get(d, 0), oldest_at.get(d), dead.get(d, 0))
                for d in sorted(waiting.keys() | dead.keys())
            ),
            overdue=int(overdue[0]["n"]),
            store_bytes=size,
            last_checkpoint_at=checkpoint[0]["at"] if checkpoint else None,
        )


def prior_outcome(db: sqlite3.Connection, message: NewMessage) -> AcceptOutcome | None:
    """What an earlier message decides for this one: ``duplicate`` or ``conflict`` (same zender
    and referentienummer), ``tr056`` (a heenbericht's Identificatie reused), or None: it is new."""
    existing = db.execute(
        "SELECT id, digest, bv03_ref, bv03_tijdstip FROM messages "
        "WHERE zender = ? AND referentienummer = ?",
        (message.zender, message.referentienummer),
    ).fetchone()
    if existing is not None:
        status = "duplicate" if existing["digest"] == message.digest else "conflict"
        return AcceptOutcome(
            status, existing["id"], existing["bv03_ref"], existing["bv03_tijdstip"]
        )
    if (
        message.kind == "Di01"  # TR056 concerns heenberichten only
        and message.identificatie
        and message.payload_sender
        and message.message_code
    ):
        reused = db.execute(
            "SELECT id FROM messages WHERE payload_sender = ? AND message_code = ? "
            "AND identificatie = ? AND kind = ? LIMIT 1",
            (message.payload_sender, message.message_code, message.identificatie, message.kind),
        ).fetchone()
        if reused is not None:
            return AcceptOutcome("tr056", reused["id"], "", "")
    return None


def replay_candidates(
    db: sqlite3.Connection,
    message_id: str | None,
    dead_only: bool,
    since: float | None,
    partner: str | None,
) -> list[sqlite3.Row]:
    """The pushed deliveries an operator's replay selects (inbox deliveries are fetched, not
    pushed; purged payloads cannot be sent again)."""
    states = ("dead",) if dead_only else ("dead", "delivered", "retry")
    marks = ", ".join("?" for _ in states)
    rows: list[sqlite3.Row] = db.execute(
        f"SELECT d.id, d.message_id, d.destination, d.adapter, m.referentienummer, m.functie, "
        f"m.envelope, m.envelope_key FROM deliveries d "
        f"JOIN messages m ON m.id = d.message_id WHERE d.state IN ({marks}) "
        "AND d.adapter != 'inbox' AND m.purged_at IS NULL "
        "AND (? IS NULL OR d.message_id = ? OR m.referentienummer = ?) "
        "AND (? IS NULL OR m.received_at >= ?) "
        "AND (? IS NULL OR d.destination = ?)",
        (*states, message_id, message_id, message_id, since, since, partner, partner),
    ).fetchall()
    return rows


def _exclusive_lock(path: Path) -> IO[bytes]:
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


def reencrypt_payloads(path: Path, keyring: Keyring) -> int:
    """Re-encrypt every stored payload with the keyring's active key (gateway stopped).

    Audit records keep the key they were written with: the hash chain covers their
    ciphertext, so re-encrypting them would be indistinguishable from tampering.
    """
    lock = _exclusive_lock(path.with_suffix(".lock"))
    try:
        db = _connect(path)
        try:
            db.execute("BEGIN IMMEDIATE")
            rows = db.execute(
                "SELECT id, envelope, envelope_key FROM messages WHERE "
                "envelope_key IS NOT NULL AND envelope_key != ?",
                (keyring.active,),
            ).fetchall()
            for row in rows:
                plain = keyring.decrypt(
                    row["envelope_key"], bytes(row["envelope"]), envelope_aad(row["id"])
                )
                key_id, sealed = keyring.encrypt(plain, envelope_aad(row["id"]))
                db.execute(
                    "UPDATE messages SET envelope = ?, envelope_key = ? WHERE id = ?",
                    (sealed, key_id, row["id"]),
                )
            db.execute("COMMIT")
            return len(rows)
        finally:
            db.close()
    finally:
        lock.close()


def envelope_aad(message_id: str) -> bytes:
    return f"ggk-envelope:{message_id}".encode()


def _capped(
    db: sqlite3.Connection, now: float, lease_until: float, limit: int, cap: int
) -> list[sqlite3.Row]:
    """Lease up to ``limit`` due deliveries, oldest first, at most ``cap`` in flight per
    receiver. Receivers at their cap are left out of the query; of the rest, what does not fit
    beside a receiver's deliveries in flight is skipped, and a second and third round look
    further (with the receivers that filled up left out), so one receiver's backlog at the head
    holds up the others for no round. Each round costs what the plain claim costs (the due
    rows are ordered once), unlike ranking every due row per receiver (a window function: six
    times the cost at 20,000 due rows)."""
    busy: dict[str, int] = dict(db.execute(_BUSY, (now,)).fetchall())
    leased: list[sqlite3.Row] = []
    for _ in range(3):
        full = [destination for destination, n in busy.items() if n >= cap]
        candidates = db.execute(_DUE, (now, now, json.dumps(full), limit - len(leased))).fetchall()
        chosen = []
        for row in candidates:
            if busy.get(row["destination"], 0) < cap:
                busy[row["destination"]] = busy.get(row["destination"], 0) + 1
                chosen.append(row["id"])
        if chosen:
            leased += db.execute(_LEASE, (lease_until, now, json.dumps(chosen))).fetchall()
        if len(leased) >= limit or len(chosen) == len(candidates):
            break  # enough, or nothing was skipped: there is no more to find
    return leased


def store_facts(
    db: sqlite3.Connection, message_id: str, at: float, facts: tuple[Fact, ...]
) -> None:
    """A message's beleidsinformatie; a fact without a business date counts in the month the
    message arrived (UTC)."""
    arrived = time.strftime("%Y-%m", time.gmtime(at))
    db.executemany(
        "INSERT INTO facts (message_id, at, kind, standard, gemeente, aanbieder, categorie, "
        "month, client, key, amount, link, follows) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                message_id,
                at,
                f.kind.value,
                f.standard,
                f.gemeente,
                f.aanbieder,
                f.categorie,
                f.month or arrived,
                f.client,
                f.key,
                f.amount,
                f.link,
                f.follows,
            )
            for f in facts
        ],
    )


def store_refusal(db: sqlite3.Connection, at: float, partner: str, event: audit.AuditEvent) -> None:
    """A refused submission in its sender's list: only what the audit record shows in the
    clear (code, functie label, referentienummer), under the authenticated partner, never
    under the zender the refused envelope claimed."""
    db.execute(
        "INSERT INTO refusals (at, partner, functie, referentienummer, code) "
        "VALUES (?, ?, ?, ?, ?)",
        (at, partner, event.functie, event.referentienummer, event.outcome),
    )
