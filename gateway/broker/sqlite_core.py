"""The embedded store's engine: one writer thread committing groups of operations, a read
connection, the history-and-audit record every change writes (gateway/broker/sqlite.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import structlog

from gateway import audit
from gateway.broker import packing, revocations, sqlite_audit, sqlite_deferred, sqlite_sessions
from gateway.broker.base import (
    NewMessage,
    StorageError,
)
from gateway.broker.sqlite_schema import SCHEMA, connect, exclusive_lock, private_database, upgrade
from gateway.keyring import Keyring
from gateway.metrics import CHECKPOINT_SECONDS, COMMIT_OPERATIONS

log = structlog.get_logger("ggk.broker")


Op = Callable[[sqlite3.Connection], Any]


WAL_RESTART_FRAMES = 8192
"""A WAL longer than this (32 MiB of 4 KiB pages) is made to start over (see
``SqliteCore._checkpointer``); the file is cut back to :data:`WAL_KEPT_BYTES` then."""
WAL_KEPT_BYTES = 64 * 1024 * 1024


def _checkpoint(db: sqlite3.Connection, by: str) -> tuple[int, int, int]:
    """A PASSIVE checkpoint on ``db``: (busy, frames in the WAL, frames copied back); its
    time in ``ggk_sqlite_checkpoint_seconds{by}``."""
    with CHECKPOINT_SECONDS.labels(by=by).time():
        busy, frames, copied = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return int(busy), int(frames), int(copied)


@dataclass(slots=True)
class _Queued:
    """One operation waiting for the writer."""

    op: Op
    future: asyncio.Future[Any]
    durable: bool


def envelope_aad(message_id: str) -> bytes:
    return f"ggk-envelope:{message_id}".encode()


class SqliteCore:
    """Connections, the group-committing writer and the history record; the roles
    (gateway/broker/sqlite_queue.py, sqlite_views.py, sqlite.py) build on it."""

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
        self._queue: asyncio.Queue[_Queued | None] | None = None
        self._waits_for_disk = True
        """The writer connection's ``synchronous`` setting: FULL (True) or NORMAL."""
        self.checkpoint_interval = 1.0
        self.wal_restart_frames = WAL_RESTART_FRAMES
        self._restart_wal = False
        """Set by the checkpointer: the writer checkpoints before its next commit."""
        self._deferred = False
        """Rows deferred by a large message are left (gateway/broker/sqlite_deferred.py):
        the writer works a chunk off per commit, and in commits of their own when idle (also
        those a crash left, found at start)."""
        self._writer_task: asyncio.Task[None] | None = None
        self._write_db: sqlite3.Connection | None = None
        self._read_db: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()
        self._lock_file: IO[bytes] | None = None
        self._checkpoint_db: sqlite3.Connection | None = None
        self._checkpoint_task: asyncio.Task[None] | None = None
        self.revocations = revocations.Revocations()
        """Signed-out portal sessions, in memory (loaded at start, added to on sign-out)."""

    async def start(self) -> None:
        private_database(self.path)
        self._lock_file = exclusive_lock(self.path.with_suffix(".lock"))
        self._write_db = await asyncio.to_thread(connect, self.path)
        if not self.durable:
            self._write_db.execute("PRAGMA synchronous=NORMAL")
            self._waits_for_disk = False
        self._write_db.execute(f"PRAGMA journal_size_limit = {WAL_KEPT_BYTES}")
        upgraded = await asyncio.to_thread(upgrade, self._write_db, self.path)
        if upgraded:
            log.info("broker.store_upgraded", path=str(self.path), steps=upgraded)
        await asyncio.to_thread(
            self._write_db.executescript,
            SCHEMA + sqlite_audit.SCHEMA + sqlite_deferred.SCHEMA + sqlite_sessions.SCHEMA,
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
        # After the upgrade and the schema (an index built over a large file sorts in temp
        # storage): from here on the writer's temp storage is its statement journals. Each
        # operation of a group commit runs in a savepoint, which keeps the first copy of
        # every page the operation changes; past 64 KiB SQLite moved that journal to a file,
        # and most of the writer's pwrite calls went to it (44,093 of 57,313 for 600
        # toewijzingen, 91 MiB against 22 MiB of WAL). In memory it is one operation's
        # pages: every operation of the writer is bounded (retention purges in chunks).
        self._write_db.execute("PRAGMA temp_store=MEMORY")
        self._checkpoint_db = await asyncio.to_thread(connect, self.path)
        self._checkpoint_task = asyncio.create_task(self._checkpointer(), name="sqlite-checkpoint")
        self._deferred = bool(await asyncio.to_thread(sqlite_deferred.backlog, self._write_db))
        recovered = await asyncio.to_thread(self._recover_leases)
        if recovered:
            log.warning("broker.leases_recovered", deliveries=recovered)
        self._read_db = await asyncio.to_thread(connect, self.path)
        now = self.clock()
        self.revocations.load(await self.query(lambda db: sqlite_sessions.live(db, now)), now)
        self._queue = asyncio.Queue()
        self._writer_task = asyncio.create_task(self._writer(), name="sqlite-writer")

    async def _checkpointer(self) -> None:
        """Copy the WAL back into the database regularly without blocking the writer, and
        see that the WAL starts over.

        Why the second part: SQLite starts the WAL from its beginning at a write only when
        every frame in it was copied back. Under steady load the writer commits while this
        checkpoint runs, so that moment never came: the WAL of a gateway taking 100 msg/s
        grew by 24 MB a second (30 GB in 21 minutes, its index mapped into the gateway's
        memory). When the WAL is longer than :data:`WAL_RESTART_FRAMES`, the writer copies
        the few frames committed since this checkpoint itself, between two commits (PASSIVE:
        it waits for no reader), so that its next commit starts the WAL over;
        ``journal_size_limit`` then cuts the file back."""
        db = self._checkpoint_db
        assert db is not None
        while True:
            await asyncio.sleep(self.checkpoint_interval)
            try:
                busy, frames, _ = await asyncio.to_thread(_checkpoint, db, "checkpointer")
            except sqlite3.Error as exc:
                log.warning("broker.checkpoint_failed", error=str(exc))
                continue
            if not busy and frames > self.wal_restart_frames:
                self._restart_wal = True

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
        pseudonyms: tuple[str, ...] | None = None,
        secret: dict[str, Any] | None = None,
        about: NewMessage | None = None,
        defer_index: bool = False,
    ) -> None:
        """A message's history event and its audit record, in the caller's transaction.
        ``pseudonyms``: those of ``bsns``, when made before the transaction.
        ``about``: the message itself when the caller has it in hand (as it is stored), so
        its parties are not read back from the table once per record. ``defer_index``: its
        BSN index entries are written by later commits (gateway/broker/sqlite_deferred.py)."""
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
            pseudonyms,
            defer_index=defer_index,
        )

    def open_envelope(self, message_id: str, key_id: str | None, sealed: bytes) -> bytes:
        """The envelope, decrypted (and unpacked: gateway/broker/packing.py); StorageError
        when retention purged it."""
        if key_id is None:
            raise StorageError(f"the payload of {message_id} was purged (retention)")
        plaintext = self.keyring.decrypt(key_id, bytes(sealed), envelope_aad(message_id))
        try:
            return packing.unpack(plaintext)
        except zlib.error:  # authenticated, so only a fault of ours: a delivery's dead letter
            raise StorageError(f"the stored payload of {message_id} cannot be unpacked") from None

    async def close(self) -> None:
        if self._checkpoint_task is not None:
            self._checkpoint_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpoint_task
        if self._queue is not None and self._writer_task is not None:
            if self._deferred and not self._writer_task.done():  # a clean stop writes them all
                try:
                    await self.write(sqlite_deferred.drain_all)
                except Exception as exc:  # left for the next start; the writer stops anyway
                    log.warning("broker.deferred_rows_failed", error=type(exc).__name__)
            await self._queue.put(None)
            await self._writer_task
        for db in (self._write_db, self._read_db, self._checkpoint_db):
            if db is not None:
                db.close()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    async def _writer(self) -> None:
        assert self._queue is not None
        while True:
            if self._deferred and self._queue.empty():
                # nothing waits: a commit of its own for the next deferred rows, not waiting
                # for the disk (a commit lost at a crash leaves their markers, done again)
                try:
                    await asyncio.to_thread(self._apply, [], False)
                except Exception as exc:  # the commit failed: tried again after the next
                    log.warning("broker.deferred_rows_failed", error=type(exc).__name__)
                    self._deferred = False
                continue
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
            COMMIT_OPERATIONS.observe(len(batch))
            durable = self.durable and any(item.durable for item in batch)
            try:
                results = await asyncio.to_thread(self._apply, [item.op for item in batch], durable)
            except Exception as exc:  # the commit itself failed: nothing in the batch holds
                error = StorageError(f"commit failed: {exc}")
                results = [error] * len(batch)
            for item, result in zip(batch, results, strict=True):
                if item.future.done():
                    continue
                if isinstance(result, BaseException):
                    item.future.set_exception(result)
                else:
                    item.future.set_result(result)

    def _apply(self, ops: list[Op], durable: bool = True) -> list[Any]:
        db = self._write_db
        assert db is not None
        results: list[Any] = []
        if durable != self._waits_for_disk:
            db.execute("PRAGMA synchronous=FULL" if durable else "PRAGMA synchronous=NORMAL")
            self._waits_for_disk = durable
        if self._restart_wal:  # see _checkpointer: this commit starts the WAL over
            self._restart_wal = False
            try:
                _checkpoint(db, "writer")
            except sqlite3.Error as exc:  # the commits go on; the checkpointer asks again
                log.warning("broker.checkpoint_failed", error=str(exc))
        db.execute("BEGIN IMMEDIATE")
        try:
            drained = not self._deferred or self._drain_chunk(db)
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
            deferred = sqlite_deferred.backlog(db) > 0
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        # after a chunk that failed, the next commit writes none: no commits of its own
        # going round on the same failure
        self._deferred = deferred and drained
        return results

    def _drain_chunk(self, db: sqlite3.Connection) -> bool:
        """A chunk of deferred index entries and one of facts (gateway/broker/
        sqlite_deferred.py), before a commit's own work, each in a savepoint of its own: a
        failure (a full store) must neither sink the operations after it nor hold up the
        other part. False when either failed."""
        done = True
        for part in (sqlite_deferred.drain_index, sqlite_deferred.drain_facts):
            db.execute("SAVEPOINT deferred")
            try:
                part(db)
            except sqlite3.Error as exc:
                db.execute("ROLLBACK TO deferred")
                log.warning("broker.deferred_rows_failed", error=type(exc).__name__)
                done = False
            db.execute("RELEASE deferred")
        return done

    async def write(self, op: Op, *, durable: bool = True) -> Any:
        """Run ``op`` in the writer's next group commit; its result once committed.

        ``durable=False`` is for a change the gateway can lose on a power failure because
        what follows from losing it is already the contract: a delivery's claim or outcome
        (lost, the delivery is made again: at-least-once, receivers drop the duplicate by
        its idempotency key). Such a commit does not wait for the disk when nothing in its
        group needs to (``synchronous=NORMAL``: safe against a crash of the process, since
        the WAL is in the operating system's cache; the next commit that waits for the disk
        writes it out, in order). An accepted message always waits: its Bv03 promises it.
        """
        return await self.submit(op, durable=durable)

    def submit(self, op: Op, *, durable: bool = True) -> asyncio.Future[Any]:
        """Queue ``op`` for the writer (:meth:`write`); the future of its result, which the
        writer settles even when whoever awaits it was cancelled meanwhile."""
        if self._queue is None:
            raise StorageError("broker is not started")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Queued(op, future, durable))  # unbounded: never waits
        return future

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
