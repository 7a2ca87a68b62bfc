"""The Kafka backend's state and its view loop: what every part of it shares.

The backend as a whole is described in gateway/broker/kafka.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.helpers import create_ssl_context
from aiokafka.structs import ConsumerRecord

from gateway.audit import AuditEvent
from gateway.broker import kafka_records as rec
from gateway.broker import kafka_settle, kafka_topics
from gateway.broker.base import (
    MessageRef,
    StorageError,
)
from gateway.broker.kafka_consumer import new_consumer
from gateway.broker.kafka_ledger import LedgerKeeper
from gateway.broker.kafka_payloads import PayloadReader
from gateway.broker.sqlite import SqliteBroker
from gateway.broker.sqlite_view import LocalView, ViewWrite
from gateway.config import KafkaConfig
from gateway.keyring import KeyringError

log = structlog.get_logger("ggk.kafka")


_SKIPPABLE = (rec.RecordError, KeyringError, KeyError)
"""What makes the view skip a record (logged) instead of stopping."""


CLOSE_STEP_SECONDS = 15.0
MAX_RECORD_BYTES = 32 * 1024 * 1024
"""Above the largest message the gateway accepts (25 MB) plus its sealing and metadata."""


COMMIT_SPACING = 0.2
"""Delivery offsets are committed at most this often: one commit for the deliveries finished
meanwhile (none at all while nothing moves)."""


BUFFER_RECORDS = 2000
"""Delivery records held in memory at most; the fetch loop waits when this many are."""


VIEW_FETCH_WAIT_MS = int(os.environ.get("GGK_KAFKA_VIEW_WAIT_MS", "100"))
"""How long a view fetch waits for 64 KiB before it returns with less. Every process's view
reads every partition on this cadence whatever its share of the traffic, so at a low rate the
fetches, not the records, are what a process more costs (docs/kafka.md, "Partition-scoped
state"): at 20 ms, 50 requests a second per process. The price: a reader of its own write
(an inbox acknowledgement, a duplicate's event, a replay, a sign-out) waits up to this long
for its view. The environment variable is for measurements only."""


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
class Pending:
    """A delivery record taken from Kafka and not yet finished."""

    tp: TopicPartition
    offset: int
    meta: dict[str, Any]
    blob: bytes


@dataclass(frozen=True, slots=True)
class Routed:
    """What the router remembers of a message it routed, until the view has it."""

    message_id: str
    digest: str
    status: str = ""
    """Set when the decision came from the view (duplicate, conflict, tr056), or from the
    router's own memory of an Identificatie (tr056)."""


class Offsets:
    """Per partition: the offsets taken but not finished. The committable offset is the lowest
    unfinished one (or one past the highest taken): nothing before it is still owed."""

    def __init__(self) -> None:
        self.open: dict[TopicPartition, set[int]] = {}
        self.next: dict[TopicPartition, int] = {}
        self.committed: dict[TopicPartition, int] = {}
        self.moved = asyncio.Event()
        """Set when an offset was taken or finished: a commit may be due."""

    def taken(self, tp: TopicPartition, offset: int) -> None:
        self.open.setdefault(tp, set()).add(offset)
        self.next[tp] = max(self.next.get(tp, 0), offset + 1)
        self.moved.set()

    def finished(self, tp: TopicPartition, offset: int) -> None:
        if tp in self.open:
            self.open[tp].discard(offset)
            self.moved.set()

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


class KafkaCore:
    """The state of the Kafka backend, its producers, and the view loop that keeps the
    local view (gateway/broker/sqlite_view.py) following the cluster."""

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
        self.deliver_topics = [f"{p}.deliver.{a}" for a in kafka_topics.pushed()]
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
        self._routed: dict[str, Routed] = {}
        # conversation lookups that miss: one shared catch-up at a time
        self.settle = kafka_settle.CatchUp(
            self._caught_up, bound=SETTLE_SECONDS, spacing=SETTLE_SPACING
        )
        # delivery
        self._offsets = Offsets()
        self._ready: dict[str, deque[Pending]] = {}
        self._waiting: list[tuple[float, int, Pending]] = []
        self._busy: set[str] = set()
        self._inflight: dict[int, Pending] = {}
        self._buffered = 0
        self._space = asyncio.Event()
        self._ids = itertools.count(1)
        # ebMS
        self.ebms_answer_listener: Callable[[str, str, str], None] | None = None
        """Given every ebMS answer published by any process (:meth:`share_ebms_answer`), in the
        view's writer thread: the process that sent the message records it."""

    async def _start_view(self, settings: dict[str, Any]) -> None:
        consumer = new_consumer(
            settings,
            enable_auto_commit=False,
            isolation_level="read_committed",
            max_partition_fetch_bytes=MAX_RECORD_BYTES,
            # a view stalled past what retention deleted (only ``sessions`` expires) goes on
            # from the oldest record there is, never from the newest: sign-outs after the
            # deleted ones are still live and must not be skipped
            auto_offset_reset="earliest",
            # fewer, larger fetches (each process reads every partition): a fetch waits up
            # to VIEW_FETCH_WAIT_MS for 64 KiB instead of returning with the first record
            # (the view follows Kafka by at most that much more; wait_applied callers too)
            fetch_min_bytes=64 * 1024,
            fetch_max_wait_ms=VIEW_FETCH_WAIT_MS,
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
            batch = await fetch_batch(self._view_consumer, "view", timeout_ms=200, max_records=1000)
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

    async def _after_settling(
        self, lookup: Callable[[], Awaitable[MessageRef | None]]
    ) -> MessageRef | None:
        """``lookup`` again once the view holds everything accepted before now. A retour can
        follow its heenbericht's Bv03 before the router (here or in another process) wrote
        that heenbericht to ``events``; refusing it as unknown would be wrong. Every miss takes
        this path, so an unknown reference and another pair's answer alike (no oracle). The
        wait is shared with every concurrent miss (:mod:`gateway.broker.kafka_settle`): a
        flood of misses costs one catch-up at a time, not Kafka requests of its own."""
        if self._router is not None:
            await self.settle.wait()
        return await lookup()

    async def _send(self, topic: str, value: bytes, key: str) -> Any:
        """Produce one record and wait for the broker's acknowledgement (acks=all)."""
        if self._producer is None:
            raise StorageError("kafka backend is not started")
        try:
            future = await self._producer.send(topic, value, key=key.encode())
            return await future
        except KafkaError as exc:
            raise StorageError(f"kafka: {exc}") from None

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
                self._routed.pop(dedupe_key(meta["zender"], meta["referentienummer"]), None)
                reused = reuse_key(
                    meta["kind"],
                    meta["payload_sender"],
                    meta["message_code"],
                    meta["identificatie"],
                )
                if reused is not None:
                    self._routed.pop(reused, None)

    def _deliver_topic(self, adapter: str) -> str:
        topic = f"{self.config.prefix}.deliver.{adapter}"
        # adapters from plug-ins share the http topic: order per receiver still holds
        return topic if topic in self.deliver_topics else f"{self.config.prefix}.deliver.http"


async def fetch_batch(
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


async def _committed(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition]
) -> dict[TopicPartition, int]:
    """The group's committed offsets of ``tps`` in one OffsetFetch request (the public
    ``committed()`` costs one request per partition)."""
    found = await consumer._coordinator.fetch_committed_offsets(tps)
    return {tp: meta.offset for tp, meta in found.items() if meta.offset >= 0}


async def bounded(step: str, work: Awaitable[Any]) -> None:
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


def dedupe_key(zender: str, referentienummer: str) -> str:
    return f"{zender}/{referentienummer}"


def reuse_key(
    kind: str, payload_sender: str | None, message_code: str | None, identificatie: str | None
) -> str | None:
    """The router's key for TR056 (a heenbericht's Identificatie used once per sender and
    message code, as ``prior_outcome`` checks it); None where TR056 does not apply."""
    if kind != "Di01" or not (payload_sender and message_code and identificatie):
        return None
    return f"tr056/{payload_sender}/{message_code}/{identificatie}"


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
