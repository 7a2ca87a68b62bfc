"""The Kafka backend: several gateway processes share the work over Apache Kafka.

Kafka holds the truth; each process keeps a local SQLite *view* of it (the embedded broker's
schema, so status, inbox, dead letters, overdue and the audit chain are answered by the same
SQL). Four loops per process:

1. **Accept** (request path): a message new to the view is produced to ``<p>.accepted``, keyed
   by its receiver, with an idempotent ``acks=all`` producer; the Bv03 is
   returned only after the broker acknowledged. Concurrent requests share the producer's
   batches (pipelined, not one round trip per message).
2. **Router** (consumer group ``<p>.router`` on ``accepted``): one owner per key at a time, by
   Kafka's group protocol (a resend has the same receiver, so it meets its original at the
   same owner). It decides duplicate / conflict / TR056 against the view, then, one Kafka
   transaction per fetched batch, writes each ``message`` record to ``<p>.events``, one ``deliver``
   record per pushed delivery to ``<p>.deliver.<adapter>`` (keyed by receiver: one receiver's
   deliveries keep their order), and its consumer offsets. A partition changes owner only
   after the view has read every committed event, so the new owner decides with all earlier
   decisions in view.
3. **Delivery** (consumer group ``<p>.delivery`` on the deliver and retry topics): feeds the
   :class:`~gateway.delivery.DeliveryService` through :meth:`claim`, one delivery per receiver
   at a time (order), and commits an offset only when every record before it was delivered,
   rescheduled (``<p>.retry.<n>s`` with a not-before time) or dead-lettered (``<p>.dlq``).
   A record redelivered after a crash or rebalance is skipped when the view already has it
   delivered in the same round; what slips through carries the same Idempotency-Key.
4. **View** (every partition of ``<p>.events`` and ``<p>.audit``, ``read_committed``): applies
   records to the local SQLite view, with the offsets in the same transaction (exactly once
   across restarts). It also reads ``<p>.sessions`` (portal sign-outs), from its beginning at
   every start: that topic keeps only the revocations of sessions that may still be alive.
   The view holds no audit chain: the records themselves are the cluster's audit trail,
   chained per partition by one owner each (5).
5. **Ledger** (consumer group ``<p>.ledger`` on ``events`` and ``audit``): keeps the hash
   chains of the partitions this process owns and publishes their signed heads
   (:mod:`gateway.broker.kafka_ledger`), so the audit work is done once in the cluster, not
   once per process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Awaitable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from gateway import audit, stats
from gateway.broker import kafka_audit, kafka_topics
from gateway.broker import kafka_records as rec
from gateway.broker.base import (
    AcceptOutcome,
    ArchiveItem,
    ArchiveQuery,
    AuditRecord,
    DeadLetter,
    DeliveryCounts,
    DeliveryHealth,
    InboxItem,
    MessageRef,
    NewMessage,
    OpsSnapshot,
    OverdueMessage,
    PayloadUnreadable,
    RefusalItem,
    SentItem,
    SignedCheckpoint,
    StorageError,
)
from gateway.broker.kafka_consumer import new_consumer
from gateway.broker.kafka_core import CLOSE_STEP_SECONDS, MAX_RECORD_BYTES, bounded, log
from gateway.broker.kafka_core import client_settings as client_settings
from gateway.broker.kafka_ledger import LedgerError, LedgerKeeper
from gateway.broker.kafka_payloads import PayloadReader
from gateway.broker.kafka_routing import KafkaRouting
from gateway.broker.message_view import MessageView
from gateway.broker.sqlite_queue import REPLAY_CHUNK


class KafkaBroker(KafkaRouting):
    """The Kafka backend (see module docstring); the same interface as the embedded broker:
    lifecycle, accepting, sessions and the queries its view answers here; the state and view
    loop in kafka_core.py, routing and delivering in kafka_routing.py."""

    async def start(self) -> None:
        await self.local.start()
        await self.local_view.create()
        settings = client_settings(self.config)
        try:
            if self.config.create_topics:
                await kafka_topics.create(
                    self.config.bootstrap,
                    kafka_topics.plan(
                        self.config.prefix,
                        partitions=self.config.partitions,
                        replication=self.config.replication,
                    ),
                    settings,
                )
            self._producer = AIOKafkaProducer(
                **settings,
                acks="all",
                enable_idempotence=True,
                linger_ms=self.config.linger_ms,
                max_request_size=MAX_RECORD_BYTES,
            )
            await self._producer.start()
            self._router_producer = AIOKafkaProducer(
                **settings,
                transactional_id=f"{self.config.prefix}.router.{self.node}",
                # a process killed inside a transaction holds back every read_committed
                # reader of those partitions until the broker aborts it: after 10 s, not 60
                transaction_timeout_ms=10_000,
                linger_ms=self.config.linger_ms,
                max_request_size=MAX_RECORD_BYTES,
            )
            await self._router_producer.start()
            await self._start_view(settings)
            self._payloads = PayloadReader(settings, self.t_events)
            await self._payloads.start()
            self._tasks.append(asyncio.create_task(self._view_loop(), name="kafka-view"))
            await self._catch_up()
            if self.audit_enabled:
                self.ledger = LedgerKeeper(
                    settings,
                    self.config.prefix,
                    [self.t_events, self.t_audit],
                    self.keyring,
                    self.node,
                    self._send,
                )
                try:
                    await self.ledger.start()
                except LedgerError as exc:
                    raise StorageError(str(exc)) from None
            self._router = await self._group_consumer(
                settings, "router", [self.t_accepted], _RouterListener(self)
            )
            self._delivery = await self._group_consumer(
                settings,
                "delivery",
                [*self.deliver_topics, *self.retry_topics.values()],
                _DeliveryListener(self),
            )
        except KafkaError as exc:
            await self.close()
            raise StorageError(f"kafka at {self.config.bootstrap}: {exc}") from None
        self._tasks += [
            asyncio.create_task(self._router_loop(), name="kafka-router"),
            asyncio.create_task(self._fetch_loop(), name="kafka-fetch"),
            asyncio.create_task(self._commit_loop(), name="kafka-commit"),
        ]
        self._tasks.append(asyncio.create_task(self.settle.run(), name="kafka-settle"))

    async def _group_consumer(
        self,
        settings: dict[str, Any],
        group: str,
        topics: list[str],
        listener: ConsumerRebalanceListener,
    ) -> AIOKafkaConsumer:
        """A member of ``<prefix>.<group>``: offsets committed by us only after the work is
        done, committed records only (``read_committed``), from the start for a new group."""
        consumer = new_consumer(
            settings,
            group_id=f"{self.config.prefix}.{group}",
            # static membership (KIP-345): a process restarted after a crash rejoins as
            # itself and gets its partitions back at once, without a rebalance of the others
            # or waiting out its old session; one that does not come back is replaced after
            # the session timeout (10 s), as before
            group_instance_id=self.node,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_partition_fetch_bytes=MAX_RECORD_BYTES,
        )
        consumer.subscribe(topics, listener=listener)
        await consumer.start()
        return consumer

    async def close(self) -> None:
        """Stop every loop and client; each step bounded (CLOSE_STEP_SECONDS, logged when
        cut short), so a stop never hangs on a cluster that does not answer."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            await bounded("task " + task.get_name(), task)
        self._tasks = []
        if self.ledger is not None:
            await bounded("ledger", self.ledger.close())
            self.ledger = None
        if self._payloads is not None:
            await bounded("payload reader", self._payloads.close())
            self._payloads = None
        if self._delivery is not None:
            await bounded("delivery offsets", self._commit())
        clients = {
            "delivery consumer": self._delivery,
            "router consumer": self._router,
            "view consumer": self._view_consumer,
            "router producer": self._router_producer,
            "producer": self._producer,
        }
        for name, client in clients.items():
            if client is not None:
                await bounded(name, client.stop())
        self._delivery = self._router = self._view_consumer = None
        self._producer = self._router_producer = None
        await self.local.close()

    async def accept(self, message: NewMessage) -> AcceptOutcome:
        earlier = await self.local_view.prior_outcome(message)
        if earlier is not None:
            if earlier.status != "tr056":
                await self._event(
                    earlier.message_id,
                    t="event",
                    event=f"{earlier.status}_submission",
                    detail=message.actor,
                    actor=message.actor,
                    origin=message.origin,
                    outcome=earlier.status,
                )
            outcome: AcceptOutcome = earlier
            return outcome
        value = rec.message_record(self.keyring, message, self.clock())
        # keyed by receiver: one receiver's messages are routed in the order accepted (and a
        # resend of a message, which has the same receiver, meets its original at one owner)
        await self._send(self.t_accepted, value, message.ontvanger)
        return AcceptOutcome("accepted", message.id, message.bv03_ref, message.bv03_tijdstip)

    async def find_conversation(
        self,
        referentienummer: str,
        *,
        zender: str,
        ontvanger: str,
        kinds: tuple[str, ...] = ("Di01", "Du01"),
    ) -> MessageRef | None:
        def lookup() -> Awaitable[MessageRef | None]:
            return self.local.find_conversation(
                referentienummer, zender=zender, ontvanger=ontvanger, kinds=kinds
            )

        return await lookup() or await self._after_settling(lookup)

    async def find_heen(
        self, payload_sender: str, message_code: str, identificatie: str, *, ontvanger: str
    ) -> MessageRef | None:
        def lookup() -> Awaitable[MessageRef | None]:
            return self.local.find_heen(
                payload_sender, message_code, identificatie, ontvanger=ontvanger
            )

        return await lookup() or await self._after_settling(lookup)

    async def view(self, message_id: str, viewer: str | None = None) -> MessageView | None:
        return await self.local.view(message_id, viewer)

    async def inbox(self, partner: str, limit: int, after: int = 0) -> list[InboxItem]:
        return await self.local.inbox(partner, limit, after)

    async def refusals(self, partner: str, limit: int) -> list[RefusalItem]:
        return await self.local.refusals(partner, limit)

    async def delivery_health(self, destinations: list[str]) -> dict[str, DeliveryHealth]:
        return await self.local.delivery_health(destinations)

    async def sent(self, partner: str, limit: int) -> list[SentItem]:
        return await self.local.sent(partner, limit)

    async def inbox_envelope(self, partner: str, message_id: str) -> bytes | None:
        sealed = await self.local.inbox_sealed(partner, message_id)
        if sealed is None:
            return None
        key_id, stored = sealed
        if key_id is not None:
            stored = await self._sealed_envelope(message_id, stored)
        return self.local.open_envelope(message_id, key_id, stored)

    async def received(self, partner: str, query: ArchiveQuery, limit: int) -> list[ArchiveItem]:
        return await self.local.received(partner, query, limit)

    async def message_envelope(self, message_id: str, viewer: str | None) -> bytes | None:
        sealed = await self.local.message_sealed(message_id, viewer)
        if sealed is None:
            return None
        key_id, stored = sealed
        if key_id is not None:
            stored = await self._sealed_envelope(message_id, stored)
        return self.local.open_envelope(message_id, key_id, stored)

    async def stored_envelope(self, message_id: str) -> bytes | None:
        sealed = await self.local.stored_sealed(message_id)
        if sealed is None:
            return None
        key_id, stored = sealed
        return self.local.open_envelope(
            message_id, key_id, await self._sealed_envelope(message_id, stored)
        )

    async def _sealed_envelope(self, message_id: str, stored: bytes) -> bytes:
        """A message's sealed envelope: from the ``events`` record the view points at (a view
        made before views kept no envelopes still has it: ``stored``)."""
        if stored:
            return stored
        where = await self.local_view.payload_position(message_id)
        if self._payloads is None:
            raise StorageError("kafka backend is not started")
        if where is None:
            raise PayloadUnreadable(f"the view does not know where the payload of {message_id} is")
        value = await self._payloads.read(*where)
        try:
            return rec.unframe(value)[1]
        except rec.RecordError as exc:
            raise PayloadUnreadable(f"the events record of {message_id}: {exc}") from None

    async def ack(self, partner: str, message_id: str) -> bool:
        attempts = await self.local_view.inbox_attempts(partner, message_id)
        if attempts is None:
            return False
        await self._event(
            message_id,
            t="delivery",
            destination=partner,
            state="delivered",
            attempts=attempts,
            round=0,
            event="delivered",
            detail=f"{partner} fetched from inbox",
        )
        return True

    async def dead_letters(
        self, partner: str | None, limit: int, after: int = 0
    ) -> list[DeadLetter]:
        return await self.local.dead_letters(partner, limit, after)

    async def replay(
        self,
        *,
        message_id: str | None = None,
        dead_only: bool = True,
        since: float | None = None,
        partner: str | None = None,
        actor: str = "",
    ) -> int:
        """Push the selected deliveries again in a new round: a ``deliver`` record (from the
        view's copy of the dead letter) and a ``pending`` state for the view. Their ids are
        read first, their rows :data:`REPLAY_CHUNK` at a time, as the embedded store does
        (each still qualifying when its chunk comes)."""
        chosen = await self.local_view.replay_ids(message_id, dead_only, since, partner)
        replayed = 0
        for start in range(0, len(chosen), REPLAY_CHUNK):
            among = chosen[start : start + REPLAY_CHUNK]
            try:
                rows = await self.local_view.replay_rows(
                    message_id, dead_only, since, partner, among
                )
                for row in rows:
                    replayed += await self._replay_row(row, actor)
            except StorageError:  # the ones before hold: say so, the caller reports the rest
                log.warning("replay.stopped", replayed=replayed, left=len(chosen) - start)
                raise
        return replayed

    async def _replay_row(self, row: dict[str, Any], actor: str) -> int:
        """One delivery pushed again (1), or left as it is with the reason in its history
        when its payload cannot be read (0): one such message does not stop the replay of
        the others, and a history line changes no state, uses no round and keeps the
        dead letter's error (a replay may select delivered and retried deliveries too).

        The ``deliver`` record goes before the ``pending`` state: if it cannot be sent,
        nothing was recorded and the delivery stays as it was (it used to stay ``pending``
        with nothing to deliver). If the ``pending`` cannot be written after it, the replay
        stops with that delivery sent but not counted; running it again before its outcome
        is in the view sends it once more (at least once: the receiver drops the duplicate
        by its idempotency key). A ``pending`` that comes after a state of its round is only
        history (gateway/broker/sqlite_view.py)."""
        try:
            sealed = await self._sealed_envelope(row["message_id"], bytes(row["envelope"]))
        except StorageError as exc:
            if not isinstance(exc, PayloadUnreadable):
                raise
            log.warning("replay.payload_unreadable", message_id=row["message_id"])
            await self._event(
                row["message_id"],
                t="event",
                event="replay_failed",
                detail=f"{row['destination']}: not replayed, its payload cannot be read ({exc})",
                actor=actor or "operator",
            )
            return 0
        deliver = {
            "t": "deliver",
            "message_id": row["message_id"],
            "destination": row["destination"],
            "adapter": row["adapter"],
            "referentienummer": row["referentienummer"],
            "functie": row["functie"] or "",
            "key_id": row["envelope_key"],
            "attempts": 0,
            "round": row["round"],
        }
        await self._send(
            self._deliver_topic(row["adapter"]), rec.frame(deliver, sealed), row["destination"]
        )
        await self._event(
            row["message_id"],
            t="delivery",
            destination=row["destination"],
            state="pending",
            attempts=0,
            round=row["round"],
            event="replayed",
            detail=f"{row['destination']} by {actor or 'operator'}",
            actor=actor or "operator",
        )
        return 1

    async def overdue(self, older_than: float, limit: int) -> list[OverdueMessage]:
        return await self.local.overdue(older_than, limit)

    async def audit_search(
        self,
        *,
        message: str | None = None,
        bsn: str | None = None,
        partner: str | None = None,
        since: float | None = None,
        limit: int = 1000,
    ) -> list[AuditRecord]:
        """The cluster's trail (the view keeps none): read from the topics, as
        ``ggk audit search`` does."""
        found = await kafka_audit.search(
            client_settings(self.config),
            self.config.prefix,
            self.keyring,
            limit=limit,
            message=message,
            bsn=bsn,
            partner=partner,
            since=since,
        )
        return [AuditRecord(**row) for row in found]

    async def figures(self, scope: stats.Scope) -> stats.RawFigures:
        """From this process's view: every process's view holds every message's facts."""
        return await self.local.figures(scope)

    async def audit_event(self, event: audit.AuditEvent, *, refused_by: str | None = None) -> None:
        if not self.audit_enabled:
            return
        value = rec.audit_record(
            self.keyring, event, self.clock(), uuid.uuid4().hex, refused_by=refused_by
        )
        await self._send(self.t_audit, value, "audit")

    async def checkpoint(self) -> SignedCheckpoint | None:
        """Sign and publish the heads of the chains this process owns (the ledger)."""
        if self.ledger is None:
            return None
        try:
            made = await asyncio.wait_for(self.ledger.checkpoint(), CLOSE_STEP_SECONDS)
        except KafkaError as exc:
            raise StorageError(f"kafka: {exc}") from None
        except TimeoutError:
            raise StorageError("kafka: the ledger's checkpoint was not acknowledged") from None
        if not made:
            return None
        return SignedCheckpoint(heads=len(made), records=sum(c.records for c in made))

    async def purge(self, older_than: float) -> int:
        return await self.local.purge(older_than)

    async def counts(self) -> DeliveryCounts:
        return await self.local.counts()

    async def ops_snapshot(self, overdue_before: float) -> OpsSnapshot:
        snapshot = await self.local.ops_snapshot(overdue_before)
        if self.ledger is None:
            return snapshot
        return dataclasses.replace(snapshot, last_checkpoint_at=self.ledger.last_checkpoint_at())


class _RouterListener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, broker: KafkaBroker) -> None:
        self.broker = broker

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self.broker._router_lock:  # the batch under way commits first
            pass

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if assigned:
            await self.broker._catch_up()


class _DeliveryListener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, broker: KafkaBroker) -> None:
        self.broker = broker

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.broker._revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        return None
