"""The delivery queue on the embedded store: claiming under a lease, settling, replaying."""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Sequence

from gateway.broker.base import (
    DeliveryState,
    Job,
    StorageError,
)
from gateway.broker.sqlite_core import SqliteCore, log
from gateway.keyring import KeyringError

REPLAY_CHUNK = 500
"""Deliveries one commit of an operator's replay makes due again (:meth:`SqliteQueue.replay`)."""

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


def replay_candidates(
    db: sqlite3.Connection,
    message_id: str | None,
    dead_only: bool,
    since: float | None,
    partner: str | None,
    *,
    among: Sequence[int] | None = None,
    columns: str = "d.id, d.message_id, d.destination, d.adapter, m.referentienummer, "
    "m.functie, m.envelope, m.envelope_key",
) -> list[sqlite3.Row]:
    """The pushed deliveries an operator's replay selects (inbox deliveries are fetched, not
    pushed; purged payloads cannot be sent again); with ``among``, only those of these ids
    that still qualify."""
    states = ("dead",) if dead_only else ("dead", "delivered", "retry")
    marks = ", ".join("?" for _ in states)
    # CROSS JOIN: SQLite keeps this order, so the ids lead (not every delivery in a state)
    source = "deliveries d" if among is None else "json_each(?) j CROSS JOIN deliveries d"
    chosen = "" if among is None else "AND d.id = j.value"
    rows: list[sqlite3.Row] = db.execute(
        f"SELECT {columns} FROM {source} "
        f"JOIN messages m ON m.id = d.message_id WHERE d.state IN ({marks}) "
        "AND d.adapter != 'inbox' AND m.purged_at IS NULL "
        "AND (? IS NULL OR d.message_id = ? OR m.referentienummer = ?) "
        "AND (? IS NULL OR m.received_at >= ?) "
        f"AND (? IS NULL OR d.destination = ?) {chosen}",
        (
            *(() if among is None else (json.dumps(list(among)),)),
            *states,
            *(message_id, message_id, message_id, since, since, partner, partner),
        ),
    ).fetchall()
    return rows


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


class SqliteQueue(SqliteCore):
    """The :class:`~gateway.broker.base.DeliveryQueue` role on SQLite."""

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

        jobs: list[Job] = await self.write(op, durable=False)  # lost: claimed again
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

        await self.write(op, durable=False)  # lost in a power failure: delivered again

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

    async def replay_ids(
        self, message_id: str | None, dead_only: bool, since: float | None, partner: str | None
    ) -> list[int]:
        """The ids of the deliveries a replay selects, read before it takes them in chunks."""
        rows = await self.query(
            lambda db: replay_candidates(db, message_id, dead_only, since, partner, columns="d.id")
        )
        return [int(row["id"]) for row in rows]

    async def replay(
        self,
        *,
        message_id: str | None = None,
        dead_only: bool = True,
        since: float | None = None,
        partner: str | None = None,
        actor: str = "",
        chunk: int = REPLAY_CHUNK,
    ) -> int:
        """Make the deliveries :func:`replay_candidates` selects due again, each audited.
        Their ids are read first; then they are made due in commits of ``chunk``, each
        checking that its deliveries still qualify: accepts are committed in between, the
        first deliveries start meanwhile, and one made again before its chunk came is not
        replayed twice."""
        if chunk < 1:
            raise ValueError("chunk is a whole number from 1")
        now = self.clock()
        chosen = await self.replay_ids(message_id, dead_only, since, partner)

        def op(among: list[int], db: sqlite3.Connection) -> int:
            rows = replay_candidates(db, message_id, dead_only, since, partner, among=among)
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

        total = 0
        for start in range(0, len(chosen), chunk):
            try:
                replayed: int = await self.write(
                    functools.partial(op, chosen[start : start + chunk])
                )
            except StorageError:  # the chunks before hold: say so, the caller reports the rest
                log.warning("replay.stopped", replayed=total, left=len(chosen) - start)
                raise
            total += replayed
            if replayed:
                self.wake.set()
        return total
