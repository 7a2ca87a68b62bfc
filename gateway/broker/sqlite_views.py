"""The read views, partner inbox and figures of the embedded store: what is looked up, listed
and counted (every query an index range: tests/test_query_plans.py).
"""

from __future__ import annotations

import os
import sqlite3

from gateway import stats
from gateway.broker import sqlite_deferred, sqlite_figures
from gateway.broker.base import (
    ArchiveItem,
    ArchiveQuery,
    DeadLetter,
    DeliveryCounts,
    DeliveryHealth,
    DestinationQueue,
    InboxItem,
    MessageRef,
    OpsSnapshot,
    OverdueMessage,
    RefusalItem,
    SentItem,
)
from gateway.broker.message_view import (
    ConversationEntry,
    DeliveryRow,
    EventRow,
    MessageSummary,
    MessageView,
)
from gateway.broker.sqlite_core import SqliteCore
from gateway.broker.sqlite_schema import OPEN_STATES
from gateway.standards import MESSAGES, Kind

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


class SqliteViews(SqliteCore):
    """The :class:`~gateway.broker.base.ReadViews`, :class:`~gateway.broker.base.PartnerInbox`
    and :class:`~gateway.broker.base.Figures` roles on SQLite."""

    async def find_conversation(
        self,
        referentienummer: str,
        *,
        zender: str,
        ontvanger: str,
        kinds: tuple[str, ...] = ("Di01", "Du01"),
    ) -> MessageRef | None:
        marks = ", ".join("?" * len(kinds))
        rows = await self.read(
            "SELECT id, zender, ontvanger, kind, functie, referentienummer FROM messages "
            f"WHERE referentienummer = ? AND zender = ? AND ontvanger = ? AND kind IN ({marks}) "
            "LIMIT 1",
            (referentienummer, zender, ontvanger, *kinds),
        )
        return MessageRef(**dict(rows[0])) if rows else None

    async def find_heen(
        self, payload_sender: str, message_code: str, identificatie: str, *, ontvanger: str
    ) -> MessageRef | None:
        rows = await self.read(
            "SELECT id, zender, ontvanger, referentienummer FROM messages WHERE "
            "payload_sender = ? AND message_code = ? AND identificatie = ? AND kind = 'Di01' "
            "AND ontvanger = ? ORDER BY received_at DESC LIMIT 1",
            (payload_sender, message_code, identificatie, ontvanger),
        )
        return MessageRef(**dict(rows[0])) if rows else None

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
        # an answer whose reference named no message between its two parties ([gateway]
        # conversations = "lenient", or accepted before that was strict)
        message = MessageSummary(
            **data, unlinked=data["kind"] != "Di01" and data["heen_id"] is None
        )
        mid = message.id
        deliveries = tuple(
            DeliveryRow(**dict(r))
            for r in await self.read(
                "SELECT destination, adapter, copy, state, attempts, next_attempt_at, last_error, "
                "updated_at FROM deliveries WHERE message_id = ? AND (? IS NULL "
                "OR destination = ? OR (? = ? AND destination = ?)) ORDER BY id",
                (mid, viewer, viewer, viewer, message.zender, message.ontvanger),
            )
        )
        events = (
            tuple(
                EventRow(**dict(r))
                for r in await self.read(
                    "SELECT at, event, detail FROM events WHERE message_id = ? ORDER BY id", (mid,)
                )
            )
            if viewer is None or viewer == message.zender
            else ()
        )
        heen_id = message.heen_id or mid
        conversation = tuple(
            ConversationEntry(**dict(r))
            for r in await self.read(
                "SELECT id, kind, functie, zender, ontvanger, received_at, retourcodes "
                f"FROM messages m WHERE (id = ? OR heen_id = ?) AND {_VISIBLE} "
                "ORDER BY received_at",
                (heen_id, heen_id, viewer, viewer, viewer, viewer),
            )
        )
        return MessageView(message, deliveries, events, conversation)

    async def inbox(self, partner: str, limit: int, after: int = 0) -> list[InboxItem]:
        rows = await self.read(
            "SELECT d.id AS cursor, m.id, m.kind, m.functie, m.zender, m.referentienummer, "
            "m.cross_ref, m.received_at, (m.kind <> 'Di01' AND m.heen_id IS NULL) AS unlinked "
            "FROM deliveries d JOIN messages m ON m.id = d.message_id "
            "WHERE d.destination = ? AND d.state = 'inbox' AND d.id > ? ORDER BY d.id LIMIT ?",
            (partner, after, limit),
        )
        return [InboxItem(**{**dict(r), "unlinked": bool(r["unlinked"])}) for r in rows]

    async def sent(self, partner: str, limit: int) -> list[SentItem]:
        rows = await self.read(
            "SELECT m.id, m.kind, m.functie, m.ontvanger, m.referentienummer, m.received_at, "
            "m.bv03_ref, (SELECT GROUP_CONCAT(d.state) FROM deliveries d "
            "WHERE d.message_id = m.id AND d.destination = m.ontvanger) AS states, "
            "(SELECT r.functie || ' ' || COALESCE(r.retourcodes, '') FROM messages r "
            "WHERE r.heen_id = m.id ORDER BY r.received_at DESC LIMIT 1) AS retour "
            "FROM messages m WHERE m.zender = ? ORDER BY m.received_at DESC LIMIT ?",
            (partner, limit),
        )
        return [SentItem(**dict(r)) for r in rows]

    async def received(self, partner: str, query: ArchiveQuery, limit: int) -> list[ArchiveItem]:
        rows = await self.read(
            "SELECT d.id AS cursor, m.id, m.kind, m.functie, m.zender, m.referentienummer, "
            "m.received_at, d.state, "
            "(SELECT r.functie || ' ' || COALESCE(r.retourcodes, '') FROM messages r "
            "WHERE r.heen_id = m.id ORDER BY r.received_at DESC LIMIT 1) AS retour "
            "FROM deliveries d JOIN messages m ON m.id = d.message_id "
            "WHERE d.destination = ? AND d.adapter = 'inbox' "
            "AND d.state IN ('inbox', 'delivered') AND (? IS NULL OR d.state = ?) "
            "AND (? IS NULL OR d.id < ?) AND (? IS NULL OR m.received_at >= ?) "
            "AND (? IS NULL OR m.received_at < ?) AND (? IS NULL OR m.functie = ?) "
            "ORDER BY d.id DESC LIMIT ?",
            (
                partner,
                *(query.status,) * 2,
                *(query.before,) * 2,
                *(query.since,) * 2,
                *(query.until,) * 2,
                *(query.functie,) * 2,
                limit,
            ),
        )
        return [ArchiveItem(**dict(r)) for r in rows]

    async def message_envelope(self, message_id: str, viewer: str | None) -> bytes | None:
        sealed = await self.message_sealed(message_id, viewer)
        return None if sealed is None else self.open_envelope(message_id, *sealed)

    async def message_sealed(
        self, message_id: str, viewer: str | None
    ) -> tuple[str | None, bytes] | None:
        """The sealed envelope (key id, ciphertext) of a message ``viewer`` sent or received
        (None: an operator); None when there is none for it, or retention purged it."""
        rows = await self.read(
            "SELECT m.envelope, m.envelope_key FROM messages m WHERE m.id = ? "
            f"AND m.purged_at IS NULL AND {_VISIBLE}",
            (message_id, viewer, viewer, viewer, viewer),
        )
        if not rows:
            return None
        return rows[0]["envelope_key"], bytes(rows[0]["envelope"])

    async def inbox_envelope(self, partner: str, message_id: str) -> bytes | None:
        sealed = await self.inbox_sealed(partner, message_id)
        return None if sealed is None else self.open_envelope(message_id, *sealed)

    async def stored_envelope(self, message_id: str) -> bytes | None:
        sealed = await self.stored_sealed(message_id)
        return None if sealed is None else self.open_envelope(message_id, *sealed)

    async def stored_sealed(self, message_id: str) -> tuple[str, bytes] | None:
        """The sealed envelope (key id, ciphertext) of a stored message; None when there is
        no such message or retention purged its envelope."""
        rows = await self.read(
            "SELECT envelope, envelope_key FROM messages WHERE id = ? AND purged_at IS NULL "
            "AND envelope_key IS NOT NULL",
            (message_id,),
        )
        if not rows:
            return None
        return rows[0]["envelope_key"], bytes(rows[0]["envelope"])

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
    ) -> list[DeadLetter]:
        rows = await self.read(
            "SELECT d.id AS cursor, m.id, m.referentienummer, m.functie, m.zender, "
            "d.destination, d.attempts, d.last_error, d.updated_at FROM deliveries d "
            "JOIN messages m ON m.id = d.message_id WHERE d.state = 'dead' "
            "AND (? IS NULL OR d.destination = ?) AND d.id > ? ORDER BY d.id LIMIT ?",
            (partner, partner, after, limit),
        )
        return [DeadLetter(**dict(r)) for r in rows]

    async def overdue(self, older_than: float, limit: int) -> list[OverdueMessage]:
        rows = await self.read(
            "SELECT m.id, m.functie, m.zender, m.ontvanger, m.referentienummer, m.received_at "
            f"FROM messages m WHERE {_OVERDUE} ORDER BY m.received_at LIMIT ?",
            (older_than, *AWAITING_RETOUR, limit),
        )
        return [OverdueMessage(**dict(r)) for r in rows]

    async def refusals(self, partner: str, limit: int) -> list[RefusalItem]:
        rows = await self.read(
            "SELECT at, functie, referentienummer, code FROM refusals WHERE partner = ? "
            "ORDER BY at DESC LIMIT ?",
            (partner, limit),
        )
        return [RefusalItem(**dict(r)) for r in rows]

    async def delivery_health(self, destinations: list[str]) -> dict[str, DeliveryHealth]:
        """Per destination: when a delivery last succeeded, how many are being retried, and
        the newest error of those retried or dead (each query walks one index range; all
        of them in one trip to the reader thread)."""

        def health(db: sqlite3.Connection, destination: str) -> DeliveryHealth:
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
            return DeliveryHealth(
                last_delivered_at=last["updated_at"] if last else None,
                retrying=int(retrying["n"]),
                last_failure_at=failure["updated_at"] if failure else None,
                last_error=failure["last_error"] if failure else None,
            )

        result: dict[str, DeliveryHealth] = await self.query(
            lambda db: {d: health(db, d) for d in destinations}
        )
        return result

    async def counts(self) -> DeliveryCounts:
        rows = await self.read(
            "SELECT state, SUM(n) AS n FROM delivery_counts GROUP BY state HAVING SUM(n) > 0"
        )
        return DeliveryCounts(**{r["state"]: int(r["n"]) for r in rows})

    async def figures(self, scope: stats.Scope) -> stats.RawFigures:
        # the facts of large messages accepted before count too (gateway/broker/
        # sqlite_deferred.py): what is marked now is written first, a chunk per commit, so
        # nothing else waits longer than a chunk behind it
        for _ in range(await self.query(sqlite_deferred.rounds)):
            await self.write(sqlite_deferred.drain_one, durable=False)
        result: stats.RawFigures = await self.query(lambda db: sqlite_figures.count(db, scope))
        return result

    async def ops_snapshot(self, overdue_before: float) -> OpsSnapshot:
        counted = await self.read(
            "SELECT destination, state, n FROM delivery_counts "
            f"WHERE n > 0 AND (state IN {OPEN_STATES} OR state = 'dead')"
        )
        # the age of each queue: a join over what is open (the states named, an index range
        # each), never over the dead letters, which are kept for ever
        oldest = await self.read(
            "SELECT d.destination, MIN(m.received_at) AS oldest "
            "FROM deliveries d JOIN messages m ON m.id = d.message_id "
            f"WHERE d.state IN {OPEN_STATES} GROUP BY d.destination"
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
