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
import contextlib
import dataclasses
import heapq
import itertools
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.helpers import create_ssl_context
from aiokafka.structs import ConsumerRecord

from gateway import audit, stats
from gateway.audit import AuditEvent
from gateway.broker import kafka_audit, kafka_settle, kafka_topics
from gateway.broker import kafka_records as rec
from gateway.broker.base import (
    AcceptOutcome,
    Job,
    MessageView,
    NewMessage,
    OpsSnapshot,
    StorageError,
)
from gateway.broker.kafka_ledger import LedgerError, LedgerKeeper
from gateway.broker.kafka_payloads import PayloadReader
from gateway.broker.sqlite import SqliteBroker
from gateway.broker.sqlite_core import envelope_aad
from gateway.broker.sqlite_view import LocalView, ViewWrite
from gateway.config import KafkaConfig
from gateway.keyring import KeyringError

log = structlog.get_logger("ggk.kafka")

_SKIPPABLE = (rec.RecordError, KeyringError, KeyError)
"""What makes the view skip a record (logged) instead of stopping."""

MAX_RECORD_BYTES = 32 * 1024 * 1024
"""Above the largest message the gateway accepts (25 MB) plus its sealing and metadata."""
BUFFER_RECORDS = 2000
"""Delivery records held in memory at most; the fetch loop waits when this many are."""
SETTLE_SECONDS = 5.0
"""How long a lookup that found nothing waits for the router and the view to catch up."""
SETTLE_SPACING = 0.05
"""Catch-up rounds for lookups that missed begin at most this often (one at a time, shared)."""


def client_settings(config: KafkaConfig) -> dict[str, Any]:
    """Connection settings shared by producers, consumers and the admin client."""
    settings: dict[str, Any] = {
        "bootstrap_servers": config.bootstrap,
        "security_protocol": config.security_protocol,
    }
    if config.security_protocol in ("SSL", "SASL_SSL"):
        settings["ssl_context"] = create_ssl_context(
            cafile=config.ssl_cafile, certfile=config.ssl_certfile, keyfile=config.ssl_keyfile
        )
    if config.sasl_mechanism:
        settings["sasl_mechanism"] = config.sasl_mechanism
        settings["sasl_plain_username"] = config.sasl_username
        if config.sasl_password_env:
            password = os.environ.get(config.sasl_password_env)
            if password is None:
                raise StorageError(f"${config.sasl_password_env} (the SASL password) is not set")
            settings["sasl_plain_password"] = password
    return settings


@dataclass(slots=True)
class _Pending:
    """A delivery record taken from Kafka and not yet finished."""

    tp: TopicPartition
    offset: int
    meta: dict[str, Any]
    blob: bytes


@dataclass(frozen=True, slots=True)
class _Routed:
    """What the router remembers of a message it routed, until the view has it."""

    message_id: str
    digest: str
    status: str = ""
    """Set when the decision came from the view (duplicate, conflict, tr056)."""


class _Offsets:
    """Per partition: the offsets taken but not finished. The committable offset is the lowest
    unfinished one (or one past the highest taken): nothing before it is still owed."""

    def __init__(self) -> None:
        self.open: dict[TopicPartition, set[int]] = {}
        self.next: dict[TopicPartition, int] = {}
        self.committed: dict[TopicPartition, int] = {}

    def taken(self, tp: TopicPartition, offset: int) -> None:
        self.open.setdefault(tp, set()).add(offset)
        self.next[tp] = max(self.next.get(tp, 0), offset + 1)

    def finished(self, tp: TopicPartition, offset: int) -> None:
        if tp in self.open:
            self.open[tp].discard(offset)

    def due(self) -> dict[TopicPartition, int]:
        """Offsets to commit now (those that moved since the last commit)."""
        out = {}
        for tp, nxt in self.next.items():
            pending = self.open.get(tp)
            offset = min(pending) if pending else nxt
            if self.committed.get(tp) != offset:
                out[tp] = offset
        return out

    def forget(self, tps: Iterable[TopicPartition]) -> None:
        for tp in tps:
            self.open.pop(tp, None)
            self.next.pop(tp, None)
            self.committed.pop(tp, None)


class KafkaBroker:
    """The Kafka backend (see module docstring); the same interface as the embedded broker."""

    def __init__(
        self,
        config: KafkaConfig,
        local: SqliteBroker,
        *,
        node: str | None = None,
        clock: Callable[[], float] = time.time,
        audit_enabled: bool = True,
    ) -> None:
        """``local``: this process's view; it must not keep an audit chain of its own
        (``audit_enabled=False``): the ledger is the cluster's. ``audit_enabled`` here turns
        the cluster's audit records and ledger on (off only for measurements)."""
        self.config = config
        self.local = local
        self.local_view = LocalView(local)
        """The door to ``local`` as a view: applying records, the view's own lookups."""
        self.audit_enabled = audit_enabled
        self.keyring = local.keyring
        self.clock = clock
        self.node = config.node or node or socket.gethostname()
        self.wake = asyncio.Event()
        p = config.prefix
        self.t_accepted = f"{p}.accepted"
        self.t_events = f"{p}.events"
        self.t_audit = f"{p}.audit"
        self.t_dlq = f"{p}.dlq"
        self.t_sessions = f"{p}.sessions"
        self.deliver_topics = [f"{p}.deliver.{a}" for a in kafka_topics.ADAPTERS if a != "inbox"]
        self.retry_topics = {s: f"{p}.retry.{s}s" for s in kafka_topics.RETRY_DELAYS}
        self._producer: AIOKafkaProducer | None = None
        self._router_producer: AIOKafkaProducer | None = None
        self._view_consumer: AIOKafkaConsumer | None = None
        self._router: AIOKafkaConsumer | None = None
        self._delivery: AIOKafkaConsumer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.ledger: LedgerKeeper | None = None
        self._payloads: PayloadReader | None = None
        # view
        self._positions: dict[TopicPartition, int] = {}
        self._view_moved = asyncio.Condition()
        # router
        self._router_lock = asyncio.Lock()
        self._routed: dict[str, _Routed] = {}
        # conversation lookups that miss: one shared catch-up at a time
        self.settle = kafka_settle.CatchUp(
            self._caught_up, bound=SETTLE_SECONDS, spacing=SETTLE_SPACING
        )
        # delivery
        self._offsets = _Offsets()
        self._ready: dict[str, deque[_Pending]] = {}
        self._waiting: list[tuple[float, int, _Pending]] = []
        self._busy: set[str] = set()
        self._inflight: dict[int, _Pending] = {}
        self._buffered = 0
        self._space = asyncio.Event()
        self._ids = itertools.count(1)
        # ebMS
        self.ebms_answer_listener: Callable[[str, str, str], None] | None = None
        """Given every ebMS answer published by any process (:meth:`share_ebms_answer`), in the
        view's writer thread: the process that sent the message records it."""

    # --- lifecycle ---------------------------------------------------------------------------

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
        consumer = AIOKafkaConsumer(
            **settings,
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
            await _bounded("task " + task.get_name(), task)
        self._tasks = []
        if self.ledger is not None:
            await _bounded("ledger", self.ledger.close())
            self.ledger = None
        if self._payloads is not None:
            await _bounded("payload reader", self._payloads.close())
            self._payloads = None
        if self._delivery is not None:
            await _bounded("delivery offsets", self._commit())
        clients = {
            "delivery consumer": self._delivery,
            "router consumer": self._router,
            "view consumer": self._view_consumer,
            "router producer": self._router_producer,
            "producer": self._producer,
        }
        for name, client in clients.items():
            if client is not None:
                await _bounded(name, client.stop())
        self._delivery = self._router = self._view_consumer = None
        self._producer = self._router_producer = None
        await self.local.close()

    async def _send(self, topic: str, value: bytes, key: str) -> Any:
        """Produce one record and wait for the broker's acknowledgement (acks=all)."""
        if self._producer is None:
            raise StorageError("kafka backend is not started")
        try:
            future = await self._producer.send(topic, value, key=key.encode())
            return await future
        except KafkaError as exc:
            raise StorageError(f"kafka: {exc}") from None

    # --- the view ----------------------------------------------------------------------------

    async def _start_view(self, settings: dict[str, Any]) -> None:
        consumer = AIOKafkaConsumer(
            **settings,
            enable_auto_commit=False,
            isolation_level="read_committed",
            max_partition_fetch_bytes=MAX_RECORD_BYTES,
            # a view stalled past what retention deleted (only ``sessions`` expires) goes on
            # from the oldest record there is, never from the newest: sign-outs after the
            # deleted ones are still live and must not be skipped
            auto_offset_reset="earliest",
            # fewer, larger fetches under load (each process reads every partition): a
            # fetch waits up to 20 ms for 64 KiB instead of returning with the first record
            # (the view follows Kafka by at most that much more; wait_applied callers too)
            fetch_min_bytes=64 * 1024,
            fetch_max_wait_ms=20,
        )
        await consumer.start()
        self._view_consumer = consumer
        tps = []
        for topic in (self.t_events, self.t_audit, self.t_sessions):
            partitions = await kafka_topics.partitions(consumer, topic)
            if not partitions:
                raise StorageError(f"topic {topic} does not exist: run `ggk kafka init` first")
            tps += [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        known = {
            TopicPartition(t, p): o for (t, p), o in (await self.local_view.positions()).items()
        }
        for tp in tps:
            # sign-outs are read whole at every start (their topic holds only the live ones):
            # a stored position may lie before what retention deleted, and nothing is lost by
            # applying one twice
            if tp in known and tp.topic != self.t_sessions:
                consumer.seek(tp, known[tp])
                self._positions[tp] = known[tp]
            else:
                await consumer.seek_to_beginning(tp)
                self._positions[tp] = 0

    async def _catch_up(self) -> None:
        """Wait until the view has applied every committed event there is now."""
        assert self._view_consumer is not None
        ends = await self._view_consumer.end_offsets(list(self._positions))
        behind = sum(max(0, o - self._positions.get(tp, 0)) for tp, o in ends.items())
        if behind:
            log.info("kafka.view_catching_up", records=behind)
        await self.wait_applied(ends)

    async def wait_applied(self, offsets: dict[TopicPartition, int]) -> None:
        async with self._view_moved:
            await self._view_moved.wait_for(
                lambda: all(self._positions.get(tp, 0) >= o for tp, o in offsets.items())
            )

    async def _view_loop(self) -> None:
        assert self._view_consumer is not None
        while True:
            batch = await _fetch(self._view_consumer, "view", timeout_ms=200, max_records=1000)
            if not batch:
                # an empty fetch still moves the position past transaction markers
                moved = {tp: await self._view_consumer.position(tp) for tp in self._positions}
                if any(moved[tp] > self._positions[tp] for tp in moved):
                    await self.local_view.store_positions(_listed(moved))
                    await self._moved(moved)
                continue
            records = [r for recs in batch.values() for r in recs]
            positions = {tp: recs[-1].offset + 1 for tp, recs in batch.items()}
            await self.apply_records(records, positions)
            self._forget_routed(records)
            await self._moved(positions)
            self.wake.set()

    async def _moved(self, positions: dict[TopicPartition, int]) -> None:
        async with self._view_moved:
            for tp, offset in positions.items():
                self._positions[tp] = max(self._positions.get(tp, 0), offset)
            self._view_moved.notify_all()

    async def apply_records(
        self, records: list[ConsumerRecord[bytes, bytes]], positions: dict[TopicPartition, int]
    ) -> None:
        """Apply ``records`` to the view with the partitions' new ``positions`` (one
        transaction; a record that cannot be applied is logged and skipped)."""
        await self.local_view.apply(
            records, self._apply_one, _listed(positions), _SKIPPABLE, _skipped
        )

    def _apply_one(self, view: ViewWrite, record: ConsumerRecord[bytes, bytes]) -> None:
        meta, blob = rec.unframe(record.value)
        kind = meta["t"]
        if kind == "message":
            # BSNs and payload digest stay sealed: the view keeps no audit, queries don't need them
            message, (key_id, _), received_at = rec.read_message(
                self.keyring, meta, blob, open_secret=False, open_facts=True
            )
            # the envelope stays in Kafka; the view keeps where (kafka_payloads.py)
            view.message(message, received_at, key_id, record.partition, record.offset)
        elif kind == "delivery":
            view.delivery(meta)
        elif kind == "event":
            view.history(meta)
        elif kind == "ebms_answer":
            if self.ebms_answer_listener is not None:
                self.ebms_answer_listener(meta["ref"], meta["cpaid"], meta["outcome"])
        elif kind == "session_revoked":
            nonce, expires, now = meta["nonce"], meta["expires"], self.clock()
            if not isinstance(nonce, str) or not isinstance(expires, int | float):
                raise rec.RecordError("a session revocation without nonce or expiry")
            view.session_revoked(nonce, float(expires), now)
        elif kind == "audit":
            # the record itself is the audit trail (the ledger chains it); a refusal also
            # joins its sender's list
            if meta.get("refused_by"):
                event = AuditEvent(**meta["event"])
                view.refusal(float(meta["at"]), str(meta["refused_by"]), event)
        else:
            raise rec.RecordError(f"unknown record type {kind!r}")

    async def _event(self, message_id: str, *, wait_view: bool = True, **fields: Any) -> None:
        """A history record for ``message_id``, acknowledged by the cluster; with ``wait_view``
        also applied to the local view (so this process reads its own writes)."""
        meta = {"message_id": message_id, "at": self.clock(), **fields}
        sent = await self._send(self.t_events, rec.frame(meta), message_id)
        if wait_view:
            await self.wait_applied({TopicPartition(sent.topic, sent.partition): sent.offset + 1})

    async def share_ebms_answer(self, ref: str, cpaid: str, outcome: str) -> None:
        """An Acknowledgment or MessageError that reached this process for a message it did not
        send: the partner's MSH answers the CPA's one endpoint, while the sender is whichever
        process owns that partner's deliveries. Published on ``events`` (keyed by the
        MessageId), every process's view applies it, the sender's records it."""
        meta = {"t": "ebms_answer", "ref": ref, "cpaid": cpaid, "outcome": outcome}
        await self._send(self.t_events, rec.frame(meta), ref)

    async def revoke_session(self, nonce: str, expires: float) -> None:
        """A signed-out portal session, for every process: on ``sessions`` (keyed by the
        nonce), which every process's view applies (its table and its memory); returns once
        this process's own view has it. Not on ``events``, which is kept forever: a sign-out
        matters only until its session expires, and ``sessions`` forgets it soon after
        (kafka_topics.SESSIONS_RETENTION_MS). (A ``session_revoked`` record an earlier
        version wrote to ``events`` is still applied.)"""
        meta = {"t": "session_revoked", "nonce": nonce, "expires": expires}
        sent = await self._send(self.t_sessions, rec.frame(meta), nonce)
        await self.wait_applied({TopicPartition(sent.topic, sent.partition): sent.offset + 1})

    def session_revoked(self, nonce: str) -> bool:
        return self.local.session_revoked(nonce)

    def signins_paused(self) -> float:
        return self.local.signins_paused()

    # --- accepting ---------------------------------------------------------------------------

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

    # --- routing -----------------------------------------------------------------------------

    async def _router_loop(self) -> None:
        assert self._router is not None
        while True:
            batch = await _fetch(self._router, "router", timeout_ms=500, max_records=500)
            if not batch:
                continue
            async with self._router_lock:
                try:
                    await self._route(batch)
                except (KafkaError, KeyringError) as exc:
                    # nothing of the transaction holds: read the same records again
                    log.error("kafka.route_failed", error=str(exc))
                    for tp, records in batch.items():
                        self._router.seek(tp, records[0].offset)
                    await asyncio.sleep(1)

    async def _route(self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        producer = self._router_producer
        assert producer is not None
        decided: dict[str, _Routed] = {}
        async with producer.transaction():
            sends = []
            for records in batch.values():
                for record in records:
                    sends += await self._route_one(producer, record, decided)
            await asyncio.gather(*sends)
            await producer.send_offsets_to_transaction(
                {tp: records[-1].offset + 1 for tp, records in batch.items()},
                f"{self.config.prefix}.router",
            )
        self._routed.update(decided)

    async def _route_one(
        self,
        producer: AIOKafkaProducer,
        record: ConsumerRecord[bytes, bytes],
        decided: dict[str, _Routed],
    ) -> list[asyncio.Future[Any]]:
        try:
            meta, blob = rec.unframe(record.value)
            message, _, _ = rec.read_message(self.keyring, meta, blob, open_secret=False)
        except rec.RecordError as exc:
            # cannot ever be read: kept as it is in the dead-letter topic, not dropped
            log.error("kafka.accepted_unreadable", offset=record.offset, error=str(exc)[:200])
            return [await producer.send(self.t_dlq, record.value or b"", key=b"unreadable")]
        # a KeyringError (this process lacks the key it was sealed with) propagates: the
        # batch is not committed and is retried, loudly, until the keyring is fixed
        key = _dedupe_key(message.zender, message.referentienummer)
        known = decided.get(key) or self._routed.get(key)
        if known is None:
            earlier = await self.local_view.prior_outcome(message)
            if earlier is not None:
                known = _Routed(earlier.message_id, "", earlier.status)
        if known is not None:
            if known.message_id == message.id:
                return []  # the same record again (a producer retry): already routed
            # Another process accepted the same zender+referentienummer (or Identificatie) at
            # the same moment, before its view knew: the first one routed wins; this one is
            # recorded against it and not delivered.
            status = known.status or ("duplicate" if known.digest == message.digest else "conflict")
            late = {
                "t": "event",
                "message_id": known.message_id,
                "at": self.clock(),
                "event": f"late_{status}",
                "detail": f"{message.id} from {message.actor}: not delivered",
                "actor": message.actor,
                "origin": message.origin,
                "outcome": status,
            }
            log.warning("kafka.late_duplicate", message_id=message.id, outcome=status)
            return [
                await producer.send(self.t_events, rec.frame(late), key=known.message_id.encode())
            ]
        decided[key] = _Routed(message.id, message.digest)
        sends = [await producer.send(self.t_events, record.value, key=message.id.encode())]
        for planned in message.deliveries:
            if planned.held:
                continue
            deliver = {
                "t": "deliver",
                "message_id": message.id,
                "destination": planned.destination,
                "adapter": planned.adapter,
                "referentienummer": message.referentienummer,
                "functie": message.functie or "",
                "key_id": meta["key_id"],
                "attempts": 0,
                "round": 0,
            }
            sends.append(
                await producer.send(
                    self._deliver_topic(planned.adapter),
                    rec.frame(deliver, blob),
                    key=planned.destination.encode(),
                )
            )
        return sends

    def _deliver_topic(self, adapter: str) -> str:
        topic = f"{self.config.prefix}.deliver.{adapter}"
        # adapters from plug-ins share the http topic: order per receiver still holds
        return topic if topic in self.deliver_topics else f"{self.config.prefix}.deliver.http"

    def _forget_routed(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        """The view now knows these messages: the router's own memory of them can go."""
        if not self._routed:
            return
        for record in records:
            if record.topic != self.t_events or record.value is None:
                continue
            head = record.value.partition(b"\n")[0]
            if b'"t":"message"' not in head:
                continue
            with contextlib.suppress(rec.RecordError, KeyError):
                meta, _ = rec.unframe(record.value)
                self._routed.pop(_dedupe_key(meta["zender"], meta["referentienummer"]), None)

    # --- delivering --------------------------------------------------------------------------

    async def _fetch_loop(self) -> None:
        assert self._delivery is not None
        while True:
            if self._buffered >= BUFFER_RECORDS:
                self._space.clear()
                await self._space.wait()
                continue
            batch = await _fetch(self._delivery, "delivery", timeout_ms=500, max_records=500)
            for tp, records in batch.items():
                for record in records:
                    await self._take(tp, record)
            if batch:
                self.wake.set()

    async def _take(self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> None:
        try:
            meta, blob = rec.unframe(record.value)
        except rec.RecordError as exc:
            # cannot ever be read: kept as it is in the dead-letter topic before the offset
            # moves past it (if even that fails, the offset stays and it is read again)
            log.error(
                "kafka.deliver_unreadable", topic=tp.topic, offset=record.offset, error=str(exc)
            )
            self._offsets.taken(tp, record.offset)
            with contextlib.suppress(StorageError):
                await self._send(self.t_dlq, record.value or b"", "unreadable")
                self._offsets.finished(tp, record.offset)
            return
        self._offsets.taken(tp, record.offset)
        pending = _Pending(tp, record.offset, meta, blob)
        self._buffered += 1
        not_before = float(meta.get("not_before") or 0)
        if not_before > self.clock():
            heapq.heappush(self._waiting, (not_before, next(self._ids), pending))
        else:
            self._ready.setdefault(meta["destination"], deque()).append(pending)

    async def claim(
        self, limit: int, lease_seconds: float, per_destination: int | None = None
    ) -> list[Job]:
        """Ready deliveries, at most one in flight per receiver (partition order), so
        ``per_destination`` is met whatever its value."""
        now = self.clock()
        while self._waiting and self._waiting[0][0] <= now:
            _, _, pending = heapq.heappop(self._waiting)
            self._ready.setdefault(pending.meta["destination"], deque()).append(pending)
        picked: list[_Pending] = []
        for destination, queue in list(self._ready.items()):
            if len(picked) >= limit:
                break
            if destination in self._busy or not queue:
                continue
            picked.append(queue.popleft())
            self._busy.add(destination)
            if not queue:
                del self._ready[destination]
        if not picked:
            return []
        done = await self.local_view.finished_rounds(
            [(p.meta["message_id"], p.meta["destination"]) for p in picked]
        )
        jobs = []
        for pending in picked:
            meta = pending.meta
            if done.get((meta["message_id"], meta["destination"]), -1) >= meta["round"]:
                log.info("kafka.already_delivered", message_id=meta["message_id"])
                self._release(pending)
                self._settled(pending)
                continue
            try:
                envelope = self.keyring.decrypt(
                    meta["key_id"], pending.blob, envelope_aad(meta["message_id"])
                )
            except KeyringError as exc:
                await self._finish_dead(pending, f"unreadable: {exc}", int(meta["attempts"]))
                continue
            delivery_id = next(self._ids)
            self._inflight[delivery_id] = pending
            jobs.append(
                Job(
                    delivery_id,
                    meta["message_id"],
                    meta["destination"],
                    meta["adapter"],
                    int(meta["attempts"]) + 1,
                    meta["referentienummer"],
                    meta["functie"],
                    envelope,
                )
            )
        return jobs

    def _release(self, pending: _Pending) -> None:
        """The receiver may have its next message: this one's attempt is over (its outcome is
        still being recorded; the offset waits for that, see :meth:`_settled`)."""
        self._busy.discard(pending.meta["destination"])
        self.wake.set()

    def _settled(self, pending: _Pending) -> None:
        """The outcome is in Kafka: the offset may be committed past this record."""
        self._offsets.finished(pending.tp, pending.offset)
        self._buffered -= 1
        self._space.set()

    async def _state(self, pending: _Pending, state: str, attempts: int, **fields: Any) -> None:
        await self._event(
            pending.meta["message_id"],
            wait_view=False,
            t="delivery",
            destination=pending.meta["destination"],
            state=state,
            attempts=attempts,
            round=pending.meta["round"],
            **fields,
        )

    async def delivered(self, job: Job) -> None:
        pending = self._inflight.pop(job.delivery_id)
        await self._outcome(
            pending,
            self._state(
                pending,
                "delivered",
                job.attempts,
                event="delivered",
                detail=f"{job.destination} attempt {job.attempts}",
            ),
        )

    async def retry(self, job: Job, error: str, at: float) -> None:
        pending = self._inflight.pop(job.delivery_id)
        wait = at - self.clock()
        delay = next((s for s in sorted(self.retry_topics) if s >= wait), max(self.retry_topics))
        meta = {**pending.meta, "attempts": job.attempts, "not_before": at}

        async def record() -> None:
            # the state first: the retried attempt's own outcome must come after it
            await self._state(
                pending,
                "retry",
                job.attempts,
                error=error[:300],
                next_at=at,
                event="retry_scheduled",
                detail=f"{job.destination} attempt {job.attempts}: {error}",
            )
            await self._send(
                self.retry_topics[delay], rec.frame(meta, pending.blob), job.destination
            )

        await self._outcome(pending, record())

    async def dead(self, job: Job, error: str) -> None:
        pending = self._inflight.pop(job.delivery_id)
        await self._finish_dead(pending, error, job.attempts)

    async def _finish_dead(self, pending: _Pending, error: str, attempts: int) -> None:
        meta = {**pending.meta, "attempts": attempts, "error": error[:300]}
        meta.pop("not_before", None)

        async def record() -> None:
            await self._send(self.t_dlq, rec.frame(meta, pending.blob), meta["destination"])
            await self._state(
                pending,
                "dead",
                attempts,
                error=error[:300],
                event="dead_lettered",
                detail=f"{meta['destination']} attempt {attempts}: {error}",
            )

        await self._outcome(pending, record())

    async def _outcome(self, pending: _Pending, record: Coroutine[Any, Any, None]) -> None:
        """Record an attempt's outcome in Kafka, then let the offset move past it. If Kafka
        cannot take it, the record is queued again: attempted once more (same Idempotency-Key)
        rather than lost."""
        self._release(pending)
        try:
            await record
        except StorageError as exc:
            log.error(
                "kafka.outcome_not_recorded", message_id=pending.meta["message_id"], error=str(exc)
            )
            self._ready.setdefault(pending.meta["destination"], deque()).appendleft(pending)
            return
        self._settled(pending)

    async def next_due(self) -> float | None:
        return self._waiting[0][0] if self._waiting else None

    async def _commit_loop(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            try:
                await self._commit()
            except KafkaError as exc:  # e.g. a rebalance is under way: the next round retries
                log.info("kafka.commit_deferred", error=str(exc))

    async def _commit(self) -> None:
        if self._delivery is None:
            return
        assigned = self._delivery.assignment()
        offsets = {tp: o for tp, o in self._offsets.due().items() if tp in assigned}
        if offsets:
            await self._delivery.commit(offsets)
            self._offsets.committed.update(offsets)

    async def _revoked(self, revoked: set[TopicPartition]) -> None:
        """Partitions move to another process: finish what is in flight (briefly), commit,
        and drop what was buffered; the new owner reads it from the committed offset."""
        deadline = self.clock() + 10
        while self.clock() < deadline and any(p.tp in revoked for p in self._inflight.values()):
            await asyncio.sleep(0.05)
        with contextlib.suppress(KafkaError):
            await self._commit()
        for destination, queue in list(self._ready.items()):
            kept = deque(p for p in queue if p.tp not in revoked)
            self._buffered -= len(queue) - len(kept)
            if kept:
                self._ready[destination] = kept
            else:
                del self._ready[destination]
        kept_waiting = [w for w in self._waiting if w[2].tp not in revoked]
        self._buffered -= len(self._waiting) - len(kept_waiting)
        self._waiting = kept_waiting
        heapq.heapify(self._waiting)
        self._offsets.forget(revoked)
        self._space.set()

    # --- queries: the local view answers them --------------------------------------------------

    async def find_conversation(
        self,
        referentienummer: str,
        *,
        zender: str,
        ontvanger: str,
        kinds: tuple[str, ...] = ("Di01", "Du01"),
    ) -> dict[str, Any] | None:
        def lookup() -> Awaitable[dict[str, Any] | None]:
            return self.local.find_conversation(
                referentienummer, zender=zender, ontvanger=ontvanger, kinds=kinds
            )

        return await lookup() or await self._after_settling(lookup)

    async def find_heen(
        self, payload_sender: str, message_code: str, identificatie: str, *, ontvanger: str
    ) -> dict[str, Any] | None:
        def lookup() -> Awaitable[dict[str, Any] | None]:
            return self.local.find_heen(
                payload_sender, message_code, identificatie, ontvanger=ontvanger
            )

        return await lookup() or await self._after_settling(lookup)

    async def _after_settling(
        self, lookup: Callable[[], Awaitable[dict[str, Any] | None]]
    ) -> dict[str, Any] | None:
        """``lookup`` again once the view holds everything accepted before now. A retour can
        follow its heenbericht's Bv03 before the router (here or in another process) wrote
        that heenbericht to ``events``; refusing it as unknown would be wrong. Every miss takes
        this path, so an unknown reference and another pair's answer alike (no oracle). The
        wait is shared with every concurrent miss (:mod:`gateway.broker.kafka_settle`): a
        flood of misses costs one catch-up at a time, not Kafka requests of its own."""
        if self._router is not None:
            await self.settle.wait()
        return await lookup()

    async def _caught_up(self) -> None:
        """One round of :attr:`settle`: the router has routed every ``accepted`` record there
        was when it began, and the view has applied what that wrote to ``events``."""
        await self._routed_until_now()
        assert self._view_consumer is not None
        events = [tp for tp in self._positions if tp.topic == self.t_events]
        await self.wait_applied(await self._view_consumer.end_offsets(events))

    async def _routed_until_now(self) -> None:
        """Wait until the router group has committed every ``accepted`` record there is now
        (its offsets commit in the transaction that writes the records to ``events``): one
        request for the end offsets, then one per poll for the committed offsets of every
        partition still behind (every 50 ms; the owners may be other processes)."""
        router = self._router
        if router is None:
            return
        partitions = router.partitions_for_topic(self.t_accepted) or set()
        ends = await router.end_offsets([TopicPartition(self.t_accepted, p) for p in partitions])
        ends = {tp: end for tp, end in ends.items() if end > 0}
        while ends:
            committed = await _committed(router, list(ends))
            ends = {tp: end for tp, end in ends.items() if end > committed.get(tp, 0)}
            if ends:
                await asyncio.sleep(0.05)

    async def view(self, message_id: str, viewer: str | None = None) -> MessageView | None:
        return await self.local.view(message_id, viewer)

    async def inbox(self, partner: str, limit: int, after: int = 0) -> list[dict[str, Any]]:
        return await self.local.inbox(partner, limit, after)

    async def refusals(self, partner: str, limit: int) -> list[dict[str, Any]]:
        return await self.local.refusals(partner, limit)

    async def delivery_health(self, destinations: list[str]) -> dict[str, dict[str, Any]]:
        return await self.local.delivery_health(destinations)

    async def sent(self, partner: str, limit: int) -> list[dict[str, Any]]:
        return await self.local.sent(partner, limit)

    async def inbox_envelope(self, partner: str, message_id: str) -> bytes | None:
        sealed = await self.local.inbox_sealed(partner, message_id)
        if sealed is None:
            return None
        key_id, stored = sealed
        if key_id is not None:
            stored = await self._sealed_envelope(message_id, stored)
        return self.local.open_envelope(message_id, key_id, stored)

    async def _sealed_envelope(self, message_id: str, stored: bytes) -> bytes:
        """A message's sealed envelope: from the ``events`` record the view points at (a view
        made before views kept no envelopes still has it: ``stored``)."""
        if stored:
            return stored
        where = await self.local_view.payload_position(message_id)
        if where is None or self._payloads is None:
            raise StorageError(f"the view does not know where the payload of {message_id} is")
        value = await self._payloads.read(*where)
        try:
            return rec.unframe(value)[1]
        except rec.RecordError as exc:
            raise StorageError(f"the events record of {message_id}: {exc}") from None

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
    ) -> list[dict[str, Any]]:
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
        view's copy of the dead letter) and a ``pending`` state for the view."""

        rows = await self.local_view.replay_rows(message_id, dead_only, since, partner)
        for row in rows:
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
            # the payload before anything is recorded: a replay that cannot read it changes
            # nothing; then the state: a fast delivery must not be overtaken by its 'pending'
            sealed = await self._sealed_envelope(row["message_id"], bytes(row["envelope"]))
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
            await self._send(
                self._deliver_topic(row["adapter"]), rec.frame(deliver, sealed), row["destination"]
            )
        return len(rows)

    async def overdue(self, older_than: float, limit: int) -> list[dict[str, Any]]:
        return await self.local.overdue(older_than, limit)

    async def audit_search(
        self,
        *,
        message: str | None = None,
        bsn: str | None = None,
        partner: str | None = None,
        since: float | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """The cluster's trail (the view keeps none): read from the topics, as
        ``ggk audit search`` does."""
        return await kafka_audit.search(
            client_settings(self.config),
            self.config.prefix,
            self.keyring,
            limit=limit,
            message=message,
            bsn=bsn,
            partner=partner,
            since=since,
        )

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

    async def checkpoint(self) -> dict[str, Any] | None:
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
        return {"checkpoints": len(made), "records": sum(c.records for c in made)}

    async def purge(self, older_than: float) -> int:
        return await self.local.purge(older_than)

    async def counts(self) -> dict[str, int]:
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


async def _fetch(
    consumer: AIOKafkaConsumer, loop_name: str, **options: int
) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
    """One fetch; a cluster that cannot be reached is logged and waited for, not fatal."""
    try:
        batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = await consumer.getmany(
            **options
        )
        return batch
    except KafkaError as exc:
        log.warning("kafka.fetch_failed", loop=loop_name, error=str(exc))
        await asyncio.sleep(1)
        return {}


CLOSE_STEP_SECONDS = 15.0


async def _committed(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition]
) -> dict[TopicPartition, int]:
    """The group's committed offsets of ``tps`` in one OffsetFetch request (the public
    ``committed()`` costs one request per partition)."""
    found = await consumer._coordinator.fetch_committed_offsets(tps)
    return {tp: meta.offset for tp, meta in found.items() if meta.offset >= 0}


async def _bounded(step: str, work: Awaitable[Any]) -> None:
    """One step of a stop: its errors and a hang beyond CLOSE_STEP_SECONDS are logged and
    passed over (the next owner of the work picks it up from Kafka)."""
    try:
        await asyncio.wait_for(work, CLOSE_STEP_SECONDS)
    except asyncio.CancelledError:
        pass  # a cancelled loop task ending as asked
    except TimeoutError:
        log.error("kafka.close_step_timeout", step=step, seconds=CLOSE_STEP_SECONDS)
    except Exception as exc:  # a stop goes on whatever one client does
        log.warning("kafka.close_step_failed", step=step, error=str(exc)[:200])


def _dedupe_key(zender: str, referentienummer: str) -> str:
    return f"{zender}/{referentienummer}"


def _listed(positions: dict[TopicPartition, int]) -> list[tuple[str, int, int]]:
    return [(tp.topic, tp.partition, offset) for tp, offset in positions.items()]


def _skipped(record: ConsumerRecord[bytes, bytes], exc: Exception) -> None:
    log.error(
        "kafka.view_record_skipped",
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        error=str(exc)[:200],
    )
