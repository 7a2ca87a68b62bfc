"""The Kafka backend's router and delivery loops: deciding accepted messages, and feeding the
delivery workers from the deliver and retry topics (points 2 and 3 of gateway/broker/kafka.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
from collections import deque
from collections.abc import Coroutine
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from gateway.broker import kafka_records as rec
from gateway.broker.base import (
    Job,
    StorageError,
)
from gateway.broker.kafka_core import (
    BUFFER_RECORDS,
    COMMIT_SPACING,
    KafkaCore,
    Pending,
    Routed,
    dedupe_key,
    fetch_batch,
    log,
    reuse_key,
)
from gateway.broker.sqlite_core import envelope_aad
from gateway.keyring import KeyringError


class KafkaRouting(KafkaCore):
    """The :class:`~gateway.broker.base.DeliveryQueue` role on Kafka, and the router behind it."""

    async def _router_loop(self) -> None:
        assert self._router is not None
        while True:
            batch = await fetch_batch(self._router, "router", timeout_ms=500, max_records=500)
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
        decided: dict[str, Routed] = {}
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
        decided: dict[str, Routed],
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
        key = dedupe_key(message.zender, message.referentienummer)
        reused = reuse_key(
            message.kind, message.payload_sender, message.message_code, message.identificatie
        )
        known = decided.get(key) or self._routed.get(key)
        if known is None:
            earlier = await self.local_view.prior_outcome(message)
            if earlier is not None:
                known = Routed(earlier.message_id, "", earlier.status)
        if known is None and reused is not None:
            # the Identificatie of a message this process routed in this batch, or since its
            # view last caught up: the view cannot know it yet (two of them in one batch were
            # both delivered). Checked after the view, as the embedded store checks: a
            # referentienummer seen before decides first
            first = decided.get(reused) or self._routed.get(reused)
            if first is not None:
                known = Routed(first.message_id, first.digest, "tr056")
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
        decided[key] = Routed(message.id, message.digest)
        if reused is not None:
            decided[reused] = decided[key]
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

    async def _fetch_loop(self) -> None:
        assert self._delivery is not None
        while True:
            if self._buffered >= BUFFER_RECORDS:
                self._space.clear()
                await self._space.wait()
                continue
            batch = await fetch_batch(self._delivery, "delivery", timeout_ms=500, max_records=500)
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
        pending = Pending(tp, record.offset, meta, blob)
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
        picked: list[Pending] = []
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

    def _release(self, pending: Pending) -> None:
        """The receiver may have its next message: this one's attempt is over (its outcome is
        still being recorded; the offset waits for that, see :meth:`_settled`)."""
        self._busy.discard(pending.meta["destination"])
        self.wake.set()

    def _settled(self, pending: Pending) -> None:
        """The outcome is in Kafka: the offset may be committed past this record."""
        self._offsets.finished(pending.tp, pending.offset)
        self._buffered -= 1
        self._space.set()

    async def _state(self, pending: Pending, state: str, attempts: int, **fields: Any) -> None:
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

    async def _finish_dead(self, pending: Pending, error: str, attempts: int) -> None:
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

    async def _outcome(self, pending: Pending, record: Coroutine[Any, Any, None]) -> None:
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
        """Commit the delivery offsets that moved, at most every COMMIT_SPACING seconds (one
        commit for the deliveries finished meanwhile); asleep while none moves."""
        while True:
            await self._offsets.moved.wait()
            await asyncio.sleep(COMMIT_SPACING)
            self._offsets.moved.clear()
            try:
                await self._commit()
            except KafkaError as exc:  # e.g. a rebalance is under way: the next round retries
                self._offsets.moved.set()
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
