"""The Kafka backend's local view on SQLite: the tables it adds and every write it makes.

On Kafka each process keeps an embedded store (gateway/broker/sqlite.py) as its view of the
cluster: the records of ``events``, ``audit`` and ``sessions`` are applied to it in order, and the
read views answer from it. The Kafka backend (gateway/broker/kafka.py) decodes the records; it
writes the view only through :class:`LocalView` and :class:`ViewWrite`, never in SQL of its own.
Besides the store's tables the view keeps how far it read each partition, where each
message's payload record lies, and the delivery rounds that replays start.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from gateway.audit import AuditEvent
from gateway.broker import sqlite_sessions
from gateway.broker.base import AcceptOutcome, NewMessage
from gateway.broker.sqlite import SqliteBroker, prior_outcome, store_refusal
from gateway.broker.sqlite_prepared import prepare
from gateway.broker.sqlite_queue import replay_candidates

VIEW_SCHEMA = """
CREATE TABLE IF NOT EXISTS kafka_positions (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
);
CREATE TABLE IF NOT EXISTS kafka_payloads (
    message_id TEXT PRIMARY KEY,
    partition INTEGER NOT NULL,
    record_offset INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS kafka_rounds (
    message_id TEXT NOT NULL,
    destination TEXT NOT NULL,
    round INTEGER NOT NULL DEFAULT 0,
    finished INTEGER NOT NULL DEFAULT -1,
    PRIMARY KEY (message_id, destination)
);
"""

R = TypeVar("R")

SKIPPED_IN_VIEW: tuple[type[Exception], ...] = (sqlite3.IntegrityError,)
"""What the view itself refuses in a record (besides the caller's own ``skippable``)."""


class ViewWrite:
    """One batch being applied to the view, inside the writer thread's transaction."""

    def __init__(self, local: SqliteBroker, db: sqlite3.Connection) -> None:
        self._local = local
        self._db = db

    def message(
        self,
        message: NewMessage,
        received_at: float,
        key_id: str,
        partition: int,
        offset: int,
    ) -> None:
        """An accepted message; its envelope stays in Kafka, the view keeps where."""
        db = self._db
        prepared = prepare(self._local.keyring, message, received_at, sealed=(key_id, b""))
        self._local.store_message(db, message, received_at, prepared)
        db.execute(
            "INSERT OR IGNORE INTO kafka_payloads (message_id, partition, record_offset) "
            "VALUES (?, ?, ?)",
            (message.id, partition, offset),
        )
        db.executemany(
            "INSERT OR IGNORE INTO kafka_rounds (message_id, destination) VALUES (?, ?)",
            [(message.id, d.destination) for d in message.deliveries],
        )

    def delivery(self, meta: dict[str, Any]) -> None:
        """A delivery's new state (a ``pending`` one starts a replay's round), and its
        history.

        A replay sends its ``deliver`` record before its ``pending`` state (a replay that
        cannot send changes nothing), so another process may attempt it and record a state
        of that round first (delivered, dead, a retry): every state moves the view's
        ``round`` up to its own, and a ``pending`` of a round the view has already reached
        only adds its history line. So a late ``pending`` undoes no outcome, and the next
        replay starts a newer round even when a ``pending`` was never written."""
        db = self._db
        state = meta["state"]
        key = (meta["message_id"], meta["destination"])
        round_ = meta.get("round", 0)
        if state == "pending":
            reached = db.execute(
                "SELECT round FROM kafka_rounds WHERE message_id = ? AND destination = ?", key
            ).fetchone()
            if reached is not None and reached[0] >= round_:
                self.history(meta)
                return
        if state in ("delivered", "dead"):
            db.execute(
                "UPDATE kafka_rounds SET round = MAX(round, ?), finished = MAX(finished, ?) "
                "WHERE message_id = ? AND destination = ?",
                (round_, round_, *key),
            )
        else:
            db.execute(
                "UPDATE kafka_rounds SET round = MAX(round, ?) "
                "WHERE message_id = ? AND destination = ?",
                (round_, *key),
            )
        db.execute(
            "UPDATE deliveries SET state = ?, attempts = ?, last_error = ?, "
            "next_attempt_at = COALESCE(?, next_attempt_at), updated_at = ? "
            "WHERE message_id = ? AND destination = ?",
            (
                state,
                meta["attempts"],
                meta.get("error"),
                meta.get("next_at"),
                meta["at"],
                meta["message_id"],
                meta["destination"],
            ),
        )
        self.history(meta)

    def history(self, meta: dict[str, Any]) -> None:
        """The event in the message's history and in this process's audit chain."""
        self._local.record(
            self._db,
            meta["message_id"],
            meta["at"],
            meta["event"],
            meta["detail"],
            actor=meta.get("actor", ""),
            origin=meta.get("origin", ""),
            outcome=meta.get("outcome", ""),
        )

    def session_revoked(self, nonce: str, expires: float, now: float) -> None:
        """A portal sign-out: kept in the view and honoured in memory at once."""
        sqlite_sessions.store(self._db, nonce, expires, now)
        self._local.revocations.add(nonce, expires, now)

    def refusal(self, at: float, partner: str, event: AuditEvent) -> None:
        """A refusal joins its sender's list (the portal's Sent page)."""
        store_refusal(self._db, at, partner, event)


Positions = Iterable[tuple[str, int, int]]
"""(topic, partition, next offset) of every partition read."""


class LocalView:
    """The Kafka backend's door to its view: applying records, and the lookups only a view
    needs (the read views of every backend are the store's own methods)."""

    def __init__(self, local: SqliteBroker) -> None:
        self.local = local

    async def create(self) -> None:
        """The view's own tables, next to the store's."""
        await self.local.write(_create_view_tables)

    async def positions(self) -> dict[tuple[str, int], int]:
        """How far the view has read each partition (the next offset to apply)."""
        rows = await self.local.read("SELECT topic, partition, next_offset FROM kafka_positions")
        return {(r["topic"], r["partition"]): r["next_offset"] for r in rows}

    async def store_positions(self, positions: Positions) -> None:
        """Move the positions on without a record (past transaction markers)."""
        moved = list(positions)
        await self.local.write(lambda db: _store_positions(db, moved))

    async def apply(
        self,
        records: Sequence[R],
        apply_one: Callable[[ViewWrite, R], None],
        positions: Positions,
        skippable: tuple[type[Exception], ...],
        skipped: Callable[[R, Exception], None],
    ) -> None:
        """Apply ``records`` in one transaction with the new ``positions``. The whole batch at
        once; only a batch with a bad record (one raising ``skippable`` or what the view
        refuses) is applied one by one, each bad one reported to ``skipped`` and left out (a
        savepoint per record costs two statements each on the common path)."""
        moved = list(positions)
        await self.local.write(
            lambda db: _apply(self.local, db, records, apply_one, moved, skippable, skipped)
        )

    async def payload_position(self, message_id: str) -> tuple[int, int] | None:
        """The partition and offset of the ``events`` record holding the message's payload."""
        rows = await self.local.read(
            "SELECT partition, record_offset FROM kafka_payloads WHERE message_id = ?",
            (message_id,),
        )
        return (rows[0]["partition"], rows[0]["record_offset"]) if rows else None

    async def inbox_attempts(self, partner: str, message_id: str) -> int | None:
        """The attempts of the delivery waiting in ``partner``'s inbox, None if none waits."""
        rows = await self.local.read(
            "SELECT attempts FROM deliveries WHERE destination = ? AND message_id = ? "
            "AND state = 'inbox'",
            (partner, message_id),
        )
        return int(rows[0]["attempts"]) if rows else None

    async def replay_ids(
        self, message_id: str | None, dead_only: bool, since: float | None, partner: str | None
    ) -> list[int]:
        """The ids of the deliveries a replay selects (read first, then taken in chunks)."""
        return await self.local.replay_ids(message_id, dead_only, since, partner)

    async def replay_rows(
        self,
        message_id: str | None,
        dead_only: bool,
        since: float | None,
        partner: str | None,
        among: Sequence[int],
    ) -> list[dict[str, Any]]:
        """Those of the deliveries ``among`` that a replay still selects, each with the round
        it starts."""

        def select(db: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = replay_candidates(db, message_id, dead_only, since, partner, among=among)
            out = []
            for row in rows:
                current = db.execute(
                    "SELECT round FROM kafka_rounds WHERE message_id = ? AND destination = ?",
                    (row["message_id"], row["destination"]),
                ).fetchone()
                out.append({**dict(row), "round": (current["round"] if current else 0) + 1})
            return out

        result: list[dict[str, Any]] = await self.local.query(select)
        return result

    async def finished_rounds(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """Per (message id, destination): the newest round that was delivered or dead."""

        def select(db: sqlite3.Connection) -> dict[tuple[str, str], int]:
            out = {}
            for key in keys:
                row = db.execute(
                    "SELECT finished FROM kafka_rounds WHERE message_id = ? AND destination = ?",
                    key,
                ).fetchone()
                if row is not None:
                    out[key] = int(row["finished"])
            return out

        result: dict[tuple[str, str], int] = await self.local.query(select)
        return result

    async def prior_outcome(self, message: NewMessage) -> AcceptOutcome | None:
        """What the view knows of an earlier acceptance of this message (duplicate, conflict,
        TR056), or None."""
        result: AcceptOutcome | None = await self.local.query(lambda db: prior_outcome(db, message))
        return result


def _create_view_tables(db: sqlite3.Connection) -> None:
    for statement in VIEW_SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)


def _store_positions(db: sqlite3.Connection, positions: list[tuple[str, int, int]]) -> None:
    db.executemany(
        "INSERT INTO kafka_positions (topic, partition, next_offset) VALUES (?, ?, ?) "
        "ON CONFLICT (topic, partition) DO UPDATE SET next_offset = "
        "MAX(next_offset, excluded.next_offset)",
        positions,
    )


def _apply(
    local: SqliteBroker,
    db: sqlite3.Connection,
    records: Sequence[R],
    apply_one: Callable[[ViewWrite, R], None],
    positions: list[tuple[str, int, int]],
    skippable: tuple[type[Exception], ...],
    skipped: Callable[[R, Exception], None],
) -> None:
    errors = skippable + SKIPPED_IN_VIEW
    write = ViewWrite(local, db)
    db.execute("SAVEPOINT batch")
    try:
        for record in records:
            apply_one(write, record)
    except errors:
        db.execute("ROLLBACK TO batch")
        for record in records:
            db.execute("SAVEPOINT record")
            try:
                apply_one(write, record)
            except errors as exc:
                db.execute("ROLLBACK TO record")
                skipped(record, exc)
            db.execute("RELEASE record")
    db.execute("RELEASE batch")
    _store_positions(db, positions)
