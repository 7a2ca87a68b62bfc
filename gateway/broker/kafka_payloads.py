"""Reading one message's sealed envelope back from ``<prefix>.events``.

A process's view keeps every message's metadata (so any process answers status, inbox
listings, dead letters) but not its envelope: that stays in the ``events`` record the view
was built from, and the view keeps where (partition, offset). Copying every envelope into
every process's SQLite file would make each process store the whole cluster's payloads —
the N-fold work issue 17 removes. The few reads that need a payload (an inbox download, a
replay) fetch that one record.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from gateway.broker.base import PayloadUnreadable, StorageError
from gateway.broker.kafka_consumer import new_consumer

FETCH_BYTES = 1024 * 1024
"""Per fetch; Kafka returns a larger record whole (its batch), so 25 MB messages still come."""
READ_TIMEOUT = 30.0


class PayloadReader:
    """Fetches single records of one topic by (partition, offset), one at a time."""

    def __init__(self, settings: dict[str, Any], topic: str) -> None:
        self.settings = settings
        self.topic = topic
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self._consumer = new_consumer(
            self.settings,
            enable_auto_commit=False,
            isolation_level="read_committed",
            max_partition_fetch_bytes=FETCH_BYTES,
        )
        await self._consumer.start()

    async def close(self) -> None:
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.stop()
            self._consumer = None

    async def read(self, partition: int, offset: int) -> bytes:
        """The value of the record at ``offset``; StorageError when Kafka no longer has it
        (deleted by an operator) or cannot be reached within READ_TIMEOUT."""
        consumer = self._consumer
        if consumer is None:
            raise StorageError("kafka backend is not started")
        tp = TopicPartition(self.topic, partition)
        async with self._lock:
            consumer.assign([tp])
            consumer.seek(tp, offset)
            try:
                async with asyncio.timeout(READ_TIMEOUT):
                    while True:
                        batch = await consumer.getmany(tp, timeout_ms=1000, max_records=1)
                        for record in batch.get(tp, []):
                            if record.offset != offset or record.value is None:
                                raise PayloadUnreadable(
                                    f"{self.topic} has no record at {partition}:{offset}"
                                )
                            value: bytes = record.value
                            return value
            except TimeoutError:
                raise StorageError(f"kafka: no answer for {self.topic} in time") from None
            except KafkaError as exc:
                raise StorageError(f"kafka: {exc}") from None
            finally:
                consumer.unsubscribe()  # no fetching ahead in the background
