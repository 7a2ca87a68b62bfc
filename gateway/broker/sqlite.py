"""The embedded broker: one SQLite file in WAL mode, no server to run.

Durability without one fsync per message: every write goes through a single writer thread
that takes whatever operations are queued (up to ``batch_max``), runs them in one transaction
(each in its own savepoint, so one bad operation does not sink the others) and commits once
with ``synchronous=FULL``. Callers await their own operation's result, which is only set after
that commit returned, so an ``accept`` that resolved is on disk (group commit). A group of
delivery claims and outcomes only does not wait for the disk (``SqliteCore.write``): losing one
in a power failure means a delivery made again, which at-least-once already allows.

Reads use their own connection; WAL lets them run while the writer writes.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from gateway import audit
from gateway.broker import sqlite_audit, sqlite_sessions
from gateway.broker.base import (
    AcceptOutcome,
    AuditRecord,
    DeliveryState,
    DirectDeliveries,
    Job,
    NewMessage,
    ReencryptionStopped,
    SignedCheckpoint,
    StorageError,
)
from gateway.broker.sqlite_core import envelope_aad, log
from gateway.broker.sqlite_deferred import defer_facts, has_room, store_facts
from gateway.broker.sqlite_prepared import PreparedAccept, is_large, prepare
from gateway.broker.sqlite_queue import SqliteQueue
from gateway.broker.sqlite_schema import OPEN_STATES, connect, exclusive_lock
from gateway.broker.sqlite_views import SqliteViews
from gateway.keyring import Keyring, KeyringError

PURGE_CHUNK = 500
"""Messages whose payloads one retention commit drops (:meth:`SqliteBroker.purge`)."""


class SqliteBroker(SqliteQueue, SqliteViews):
    """The embedded default broker (see module docstring): accepting, retention, audit and
    sessions here; the engine in sqlite_core.py, the queue in sqlite_queue.py, the read views
    in sqlite_views.py, the file in sqlite_schema.py."""

    direct: DirectDeliveries | None = None
    """Free delivery workers an accept hands its deliveries to (gateway/delivery.py)."""

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
            functools.partial(sqlite_sessions.store, nonce=nonce, expires=expires, now=now)
        )
        self.revocations.add(nonce, expires, now)

    def session_revoked(self, nonce: str) -> bool:
        return self.revocations.revoked(nonce)

    def signins_paused(self) -> float:
        return self.revocations.full_for(self.clock())

    async def checkpoint(self) -> SignedCheckpoint | None:
        now = self.clock()
        made: dict[str, Any] | None = await self.write(
            lambda db: sqlite_audit.checkpoint(db, self.keyring, now)
        )
        # one chain here; its head is record ``seq``, numbered from 1
        return None if made is None else SignedCheckpoint(heads=1, records=int(made["seq"]))

    async def purge(self, older_than: float, *, chunk: int = PURGE_CHUNK) -> int:
        """Retention: drop the payloads of messages received before ``older_than`` whose
        deliveries are all finished. Metadata, history and audit stay; the purge is audited.

        In commits of ``chunk`` messages, oldest first: accepts are committed in between
        (one statement over a day of messages held the writer for its whole length), and a
        commit's statement journal, which the writer keeps in memory (sqlite_core), stays
        the size of one chunk's pages."""
        if chunk < 1:
            raise ValueError("chunk is a whole number from 1")
        now = self.clock()
        total, since = 0, 0.0  # times are seconds since the epoch
        while True:
            try:
                rows = await self.write(
                    functools.partial(self._purge_chunk, now, older_than, since, chunk)
                )
            except StorageError:  # the chunks before hold: say so, the caller reports the rest
                log.warning("retention.stopped", purged=total)
                raise
            total += len(rows)
            if len(rows) < chunk:
                return total
            # received later than or at the same time as this chunk's last: a message held
            # back by an open delivery is not read again by the next chunk
            since = max(row["received_at"] for row in rows)

    def _purge_chunk(
        self, now: float, older_than: float, since: float, chunk: int, db: sqlite3.Connection
    ) -> list[sqlite3.Row]:
        rows: list[sqlite3.Row] = db.execute(
            "UPDATE messages SET envelope = X'', envelope_key = NULL, purged_at = ? "
            "WHERE id IN (SELECT m.id FROM messages m WHERE m.purged_at IS NULL "
            "AND m.received_at < ? AND m.received_at >= ? AND NOT EXISTS (SELECT 1 FROM "
            f"deliveries d WHERE d.message_id = m.id AND d.state IN {OPEN_STATES}) "
            "ORDER BY m.received_at LIMIT ?) RETURNING id, received_at",
            (now, older_than, since, chunk),
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
        return rows

    async def accept(self, message: NewMessage) -> AcceptOutcome:
        now = self.clock()
        # made before the queue (gateway/broker/sqlite_prepared.py); before the workers are held
        # below, so a caller cancelled while a thread prepares leaves nothing reserved
        prepared = (
            await asyncio.to_thread(prepare, self.keyring, message, now)
            if is_large(message)
            else prepare(self.keyring, message, now)
        )
        pushed = [planned.destination for planned in message.deliveries if not planned.held]
        lease = self.direct.reserve(pushed) if self.direct is not None and pushed else None
        reserved = self.direct if lease is not None else None  # workers held for this accept

        def op(db: sqlite3.Connection) -> tuple[AcceptOutcome, list[Job]]:
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
                return earlier, []
            # the lease runs from the commit: the writer's queue may have been long
            lease_until = None if lease is None else self.clock() + lease
            jobs = self.store_message(db, message, now, prepared, lease_until=lease_until)
            accepted = AcceptOutcome(
                "accepted", message.id, message.bv03_ref, message.bv03_tijdstip
            )
            return accepted, jobs

        def settle(done: asyncio.Future[tuple[AcceptOutcome, list[Job]]]) -> None:
            """Hand the committed deliveries over, or give the workers back; run by the
            writer's result, so a cancelled caller leaves no delivery idle for a lease."""
            failed = done.cancelled() or done.exception() is not None
            outcome, jobs = (None, []) if failed else done.result()
            if reserved is not None:
                if jobs:
                    reserved.hand_over(jobs)
                else:
                    reserved.release(pushed)
            if outcome is not None and outcome.status == "accepted" and not jobs:
                self.wake.set()

        try:
            future = self.submit(op)
        except StorageError:  # not started: nothing was queued
            if reserved is not None:
                reserved.release(pushed)
            raise
        future.add_done_callback(settle)
        outcome: AcceptOutcome
        outcome, _ = await asyncio.shield(future)
        return outcome

    def store_message(
        self,
        db: sqlite3.Connection,
        message: NewMessage,
        now: float,
        prepared: PreparedAccept,
        *,
        lease_until: float | None = None,
    ) -> list[Job]:
        """Insert an accepted message, its deliveries and their history, in the caller's
        transaction; ``prepared`` (:func:`gateway.broker.sqlite_prepared.prepare` of ``message`` at
        ``now``) holds what needs no transaction. ``lease_until``: the
        deliveries to push are stored in flight under that lease, as a claim would leave
        them, and returned as jobs (:class:`gateway.broker.base.DirectDeliveries`)."""
        # a large message's index entries and facts follow its commit, while the writer is
        # not too far behind with those of the ones before (gateway/broker/sqlite_deferred.py)
        deferred = prepared.deferred is not None and has_room(db)
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
                prepared.ciphertext,
                prepared.key_id,
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
            pseudonyms=prepared.pseudonyms,
            secret={"payload_sha256": message.payload_digest},
            about=message,
            defer_index=deferred,
        )
        jobs: list[Job] = []
        for planned in message.deliveries:
            leased = lease_until is not None and not planned.held
            if planned.held:
                state = DeliveryState.INBOX
            else:
                state = DeliveryState.INFLIGHT if leased else DeliveryState.PENDING
            delivery_id = db.execute(
                "INSERT INTO deliveries (message_id, destination, adapter, copy, state, "
                "next_attempt_at, updated_at, attempts, lease_until) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    message.id,
                    planned.destination,
                    planned.adapter,
                    int(planned.copy),
                    state.value,
                    now,
                    now,
                    1 if leased else 0,
                    lease_until if leased else None,
                ),
            ).lastrowid
            if leased:
                assert delivery_id is not None
                jobs.append(
                    Job(
                        delivery_id,
                        message.id,
                        planned.destination,
                        planned.adapter,
                        1,
                        message.referentienummer,
                        message.functie or "",
                        message.envelope,
                    )
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
        if prepared.deferred is not None and deferred:  # written by the commits after this one
            defer_facts(db, message.id, now, prepared.deferred)
        elif prepared.fact_rows:
            store_facts(db, message.id, now, prepared.fact_rows)
        return jobs

    async def audit_search(
        self,
        *,
        message: str | None = None,
        bsn: str | None = None,
        partner: str | None = None,
        since: float | None = None,
        limit: int = 1000,
    ) -> list[AuditRecord]:
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
        return [AuditRecord(**row) for row in found]


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


REENCRYPT_ROWS = 500
"""At most this many payloads are re-encrypted in one commit (:func:`reencrypt_payloads`)."""
REENCRYPT_BYTES = 32 * 1024 * 1024
"""A commit of :func:`reencrypt_payloads` ends once its payloads reach this many bytes."""


def reencrypt_payloads(
    path: Path,
    keyring: Keyring,
    progress: Callable[[int, int], None] | None = None,
    *,
    rows: int = REENCRYPT_ROWS,
) -> int:
    """Re-encrypt every stored payload with the keyring's active key (gateway stopped);
    how many. ``progress(done, total)`` after each commit.

    In commits of at most ``rows`` payloads and :data:`REENCRYPT_BYTES`, each payload read
    when its turn comes, the WAL copied back after each commit: neither memory nor disk
    grows with the store (it read every sealed payload at once, in one transaction, before).
    A run that stops partway raises :class:`ReencryptionStopped`; its commits hold, the rest
    is still under its old key, which the keyring still opens, and running it again
    (``ggk keys reencrypt``) does the rest.

    Audit records keep the key they were written with: the hash chain covers their
    ciphertext, so re-encrypting them would be indistinguishable from tampering.
    """
    lock = exclusive_lock(path.with_suffix(".lock"))
    try:
        db = connect(path)
        try:
            stale = "envelope_key IS NOT NULL AND envelope_key != ?"
            done = total = 0
            after = ""
            try:
                total = db.execute(
                    f"SELECT count(*) FROM messages WHERE {stale}", (keyring.active,)
                ).fetchone()[0]
                while True:
                    page = db.execute(
                        f"SELECT id, length(envelope) FROM messages WHERE id > ? AND {stale} "
                        "ORDER BY id LIMIT ?",
                        (after, keyring.active, rows),
                    ).fetchall()
                    if not page:
                        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                        return done
                    after = page[-1][0]
                    for commit in _by_size(page, REENCRYPT_BYTES):
                        db.execute("BEGIN IMMEDIATE")
                        for message_id in commit:
                            _reencrypt_one(db, keyring, message_id)
                        db.execute("COMMIT")
                        db.execute("PRAGMA wal_checkpoint(PASSIVE)")  # the gateway is stopped
                        done += len(commit)
                        if progress is not None:
                            progress(done, total)
            except (sqlite3.Error, KeyringError) as exc:
                raise ReencryptionStopped(done, total, str(exc)) from None
        finally:
            db.close()
    finally:
        lock.close()


def _by_size(page: list[sqlite3.Row], limit: int) -> Iterator[list[str]]:
    """The ids of ``page`` (id, payload length) in groups of at most ``limit`` bytes (a
    larger payload alone)."""
    group: list[str] = []
    size = 0
    for message_id, length in page:
        if group and size + (length or 0) > limit:
            yield group
            group, size = [], 0
        group.append(message_id)
        size += length or 0
    if group:
        yield group


def _reencrypt_one(db: sqlite3.Connection, keyring: Keyring, message_id: str) -> None:
    row = db.execute(
        "SELECT envelope, envelope_key FROM messages WHERE id = ?", (message_id,)
    ).fetchone()
    aad = envelope_aad(message_id)
    plain = keyring.decrypt(row["envelope_key"], bytes(row["envelope"]), aad)
    key_id, sealed = keyring.encrypt(plain, aad)
    db.execute(
        "UPDATE messages SET envelope = ?, envelope_key = ? WHERE id = ?",
        (sealed, key_id, message_id),
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
