"""The ebMS MSH's state on Kafka: one set of records for every gateway process (``<prefix>.ebms``).

A partner's MSH knows one endpoint per CPA, and behind it any process may answer: the one that
received a message may be killed before the resend comes, the one that sent a message is
seldom the one its Acknowledgment reaches. So the three things an MSH remembers are records on
the topic ``<prefix>.ebms``, which every process reads whole into its own copy (the tables of
``ebms.sqlite``, gateway/broker/sqlite_ebms.py) and writes through the cluster:

- ``received`` (key: partner and MessageId): what a partner sent and the signal it was
  answered with, so a resend reaching any process gets the same signal and is not accepted
  again (duplicate elimination);
- ``sent`` (key: MessageId): the first attempt's Timestamp, so whichever process attempts the
  delivery next builds the byte-identical message on the same schedule;
- ``receipt`` (same key): the references a signed Acknowledgment must repeat, so a signed
  receipt is checked fully wherever it arrives;
- ``answer`` (same key): the partner's Acknowledgment or MessageError; the process sending the
  message sees it in its copy and ends its waiting attempt (:attr:`KafkaMshState.on_settled`).

Writing is: produce (``acks=all``, idempotent producer), then wait until this process's own
copy has read the record, then answer from the copy. The copy applies a partition's records
in order, and every apply keeps the first (``INSERT OR IGNORE``; an answer only on a message
without one), so when two processes record the same MessageId at once both find the same
first record, in every process. A sent record's later records share its key, so they follow it
in its partition. A lookup that misses reads to the topic's end first (another process may have
written it a moment ago), so "unknown" means unknown to the cluster.

The topic keeps records by time (``kafka_topics.EBMS_RETENTION_MS``, longer than any resend
window), not by compaction: compaction keeps the *last* record of a key, and the first must
win. A process starting afresh reads the whole topic; records past the resend window are
dropped from the copy by the hourly clean-up, as on the embedded backend.

When the cluster cannot take a record (down, too slow), the record is kept in this process's
copy only and ``ebms.state_unshared`` is logged: the message was accepted already, and the
state is then per process, as it was before it was shared.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from gateway.broker import kafka_records as rec
from gateway.broker import kafka_topics
from gateway.broker.base import StorageError
from gateway.broker.kafka_consumer import new_consumer
from gateway.broker.kafka_core import bounded, client_settings, fetch_batch
from gateway.broker.sqlite_ebms import Change, ReceivedStore, SentStore, StateCopy
from gateway.config import KafkaConfig
from gateway.ebms.received import Received
from gateway.ebms.sent import Sent

log = structlog.get_logger("ggk.ebms")

RECORD_SECONDS = 15.0
"""How long a write (produce and read back) or a read to the topic's end may take."""


class KafkaMshState:
    """The :class:`~gateway.ebms.state.MshState` of a process on Kafka (module docstring).

    Its :attr:`received` and :attr:`sent` are called from worker threads (``asyncio.to_thread``),
    never in the event loop, which they wait on."""

    shared = True

    def __init__(self, config: KafkaConfig, path: Path, owners: Mapping[str, str]) -> None:
        self.config = config
        self.topic = f"{config.prefix}.ebms"
        self.copy_received = ReceivedStore(path, owners)
        self.copy_sent = SentStore(path)
        self.copy = StateCopy(path)
        self.received = SharedReceived(self)
        self.sent = SharedSent(self)
        self.on_settled: Callable[[str], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._read: dict[TopicPartition, int] = {}
        self._moved = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, and read every record there is before the gateway serves."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        settings = client_settings(self.config)
        try:
            self._producer = AIOKafkaProducer(
                **settings, acks="all", enable_idempotence=True, linger_ms=self.config.linger_ms
            )
            await self._producer.start()
            self._consumer = new_consumer(
                settings,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
            )
            await self._consumer.start()
            found = await kafka_topics.partitions(self._consumer, self.topic)
            if not found:
                raise StorageError(f"topic {self.topic} does not exist: run `ggk kafka init`")
            tps = [TopicPartition(self.topic, p) for p in sorted(found)]
            self._consumer.assign(tps)
            known = await asyncio.to_thread(self.copy.positions, self.topic)
            for tp in tps:
                if tp.partition in known:
                    self._consumer.seek(tp, known[tp.partition])
                    self._read[tp] = known[tp.partition]
                else:
                    await self._consumer.seek_to_beginning(tp)
                    self._read[tp] = 0
        except KafkaError as exc:
            await self.close()
            raise StorageError(f"kafka at {self.config.bootstrap}: {exc}") from None
        except BaseException:
            await self.close()
            raise
        self._task = asyncio.create_task(self._follow(), name="kafka-ebms")
        await self.catch_up()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await bounded("task kafka-ebms", self._task)
            self._task = None
        for name, client in (("ebms consumer", self._consumer), ("ebms producer", self._producer)):
            if client is not None:
                await bounded(name, client.stop())
        self._consumer = self._producer = None
        self.copy_received.close()
        self.copy_sent.close()
        self.copy.close()

    # --- reading ----------------------------------------------------------------------------

    async def _follow(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        while True:
            batch = await fetch_batch(consumer, "ebms", timeout_ms=200, max_records=500)
            if batch:
                records = [r for recs in batch.values() for r in recs]
                moved = {tp: recs[-1].offset + 1 for tp, recs in batch.items()}
            else:  # an empty fetch may still move past records retention removed
                records = []
                moved = {tp: await consumer.position(tp) for tp in self._read}
                moved = {tp: o for tp, o in moved.items() if o > self._read[tp]}
                if not moved:
                    continue
            changes = [c for c in (_change(r) for r in records) if c is not None]
            try:
                settled = await asyncio.to_thread(
                    self.copy.apply,
                    self.topic,
                    changes,
                    {tp.partition: o for tp, o in moved.items()},
                )
            except Exception as exc:  # the file (disk full …): read these records again
                log.error("ebms.state_apply_failed", error=type(exc).__name__)
                for tp, offset in self._read.items():
                    consumer.seek(tp, offset)
                await asyncio.sleep(1)
                continue
            async with self._moved:
                for tp, offset in moved.items():
                    self._read[tp] = max(self._read.get(tp, 0), offset)
                self._moved.notify_all()
            if self.on_settled is not None:
                for ref in settled:
                    self.on_settled(ref)

    async def catch_up(self) -> None:
        """Wait until the copy holds every record the topic has now."""
        assert self._consumer is not None
        ends = await self._consumer.end_offsets(list(self._read))
        async with self._moved:
            await self._moved.wait_for(
                lambda: all(self._read.get(tp, 0) >= end for tp, end in ends.items())
            )

    # --- from the MSH's worker threads -----------------------------------------------------------

    def _wait(self, work: Callable[[], Any], what: str) -> bool:
        """Run ``work()`` (a coroutine) in the event loop and wait for it from this thread;
        False (logged) when the cluster does not answer in time."""
        loop = self._loop
        if loop is None or self._producer is None:
            return False
        if threading.get_ident() == self._loop_thread:
            raise RuntimeError("the ebMS state is used from worker threads only")
        future = asyncio.run_coroutine_threadsafe(work(), loop)
        try:
            future.result(RECORD_SECONDS)
            return True
        except (KafkaError, StorageError, TimeoutError) as exc:
            future.cancel()
            log.warning("ebms.state_unshared", record=what, error=type(exc).__name__)
            return False

    def publish(self, key: str, meta: dict[str, Any]) -> bool:
        """Write a record and wait until this process's copy has it; False when the cluster
        did not take it (the caller keeps it in the copy alone)."""

        async def write() -> None:
            producer = self._producer
            if producer is None:
                raise StorageError("the ebMS state is closed")
            sent = await producer.send_and_wait(self.topic, rec.frame(meta), key=key.encode())
            tp = TopicPartition(sent.topic, sent.partition)
            async with self._moved:
                await self._moved.wait_for(lambda: self._read.get(tp, 0) > sent.offset)

        return self._wait(write, str(meta["t"]))

    def refresh(self) -> bool:
        """Read to the topic's end now (after a miss: another process may just have written)."""
        return self._wait(self.catch_up, "lookup")


def _change(record: ConsumerRecord[bytes, bytes]) -> Change | None:
    """What a record asks of the copy; None (logged) for one that cannot be read."""
    try:
        meta, _ = rec.unframe(record.value)
        kind = meta["t"]
        message_id = _text(meta, "message_id")
        if kind == "received":
            answer = meta["answer"]
            return (
                "received",
                _text(meta, "partner"),
                message_id,
                _text(meta, "cpaid"),
                _text(meta, "digest"),
                base64.b64decode(answer, validate=True) if answer is not None else None,
                float(meta["at"]),
            )
        if kind == "sent":
            return ("sent", message_id, _text(meta, "cpaid"), _text(meta, "timestamp"))
        if kind == "receipt":
            references = [[str(uri), str(digest)] for uri, digest in meta["references"]]
            return ("receipt", message_id, references)
        if kind == "answer":
            return ("answer", message_id, _text(meta, "cpaid"), _text(meta, "outcome"))
        raise rec.RecordError(f"unknown ebMS state record {str(kind)[:40]!r}")
    except (rec.RecordError, KeyError, TypeError, ValueError) as exc:
        log.error(
            "ebms.state_record_skipped",
            partition=record.partition,
            offset=record.offset,
            error=type(exc).__name__,
        )
        return None


def _text(meta: dict[str, Any], name: str) -> str:
    value = meta[name]
    if not isinstance(value, str):
        raise TypeError(f"{name} is no string")
    return value


class SharedReceived:
    """The :class:`~gateway.ebms.received.ReceivedLog` of every process together."""

    def __init__(self, state: KafkaMshState) -> None:
        self.state = state
        self.copy = state.copy_received

    def get(self, partner: str, message_id: str) -> Received | None:
        found = self.copy.get(partner, message_id)
        if found is None and self.state.refresh():
            found = self.copy.get(partner, message_id)
        return found

    def remember(
        self, partner: str, message_id: str, cpaid: str, digest: str, answer: bytes | None
    ) -> Received:
        meta = {
            "t": "received",
            "partner": partner,
            "message_id": message_id,
            "cpaid": cpaid,
            "digest": digest,
            "answer": base64.b64encode(answer).decode() if answer is not None else None,
            "at": time.time(),
        }
        if self.state.publish(f"received/{partner}/{message_id}", meta):
            found = self.copy.get(partner, message_id)
            if found is not None:  # the first record of this MessageId, whoever wrote it
                return found
        return self.copy.remember(partner, message_id, cpaid, digest, answer)

    def forget_before(self, moment: float) -> int:
        """Each process drops old records from its own copy; the topic's retention drops them
        from the cluster."""
        return self.copy.forget_before(moment)

    def close(self) -> None:
        """Closed with the state (:meth:`KafkaMshState.close`)."""


class SharedSent:
    """The :class:`~gateway.ebms.sent.SentLog` of every process together."""

    def __init__(self, state: KafkaMshState) -> None:
        self.state = state
        self.copy = state.copy_sent

    def get(self, message_id: str) -> Sent | None:
        found = self.copy.get(message_id)
        if found is None and self.state.refresh():
            found = self.copy.get(message_id)
        return found

    def first_attempt(self, message_id: str, cpaid: str, timestamp: str) -> Sent:
        found = self.get(message_id)
        if found is not None:  # a later attempt, here or in another process
            return found
        meta = {"t": "sent", "message_id": message_id, "cpaid": cpaid, "timestamp": timestamp}
        if self.state.publish(message_id, meta):
            found = self.copy.get(message_id)
            if found is not None:
                return found
        return self.copy.first_attempt(message_id, cpaid, timestamp)

    def expect_receipt(self, message_id: str, references: list[tuple[str, str]]) -> None:
        found = self.copy.get(message_id)
        if found is not None and found.receipt == references:
            return  # every attempt signs the identical message: written once
        meta = {"t": "receipt", "message_id": message_id, "references": references}
        if not self.state.publish(message_id, meta):
            self.copy.expect_receipt(message_id, references)

    def answer(self, message_id: str, cpaid: str, outcome: str) -> bool:
        found = self.get(message_id)
        if found is None or found.cpaid != cpaid or found.outcome is not None:
            return False  # an unknown message, another CPA's, or a repeated signal
        meta = {"t": "answer", "message_id": message_id, "cpaid": cpaid, "outcome": outcome}
        if not self.state.publish(message_id, meta):
            return self.copy.answer(message_id, cpaid, outcome)
        after = self.copy.get(message_id)
        return after is not None and after.outcome == outcome

    def close(self) -> None:
        """Closed with the state (:meth:`KafkaMshState.close`)."""
