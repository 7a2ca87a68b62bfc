"""The ebMS MSH's state shared by gateway processes on Kafka (gateway/broker/kafka_ebms.py).

Two states on a real Kafka broker, each with its own ``ebms.sqlite`` as two processes have:
what one records (a received message and its answer, a first attempt, the references a signed
receipt must repeat, a partner's answer) the other finds. The whole path, real processes and a
kill -9: tests/test_ebms_peer.py.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from gateway.broker import kafka_topics
from gateway.broker.kafka_ebms import KafkaMshState
from gateway.config import KafkaConfig
from gateway.ebms.sent import ACKNOWLEDGED
from tests.test_kafka_backend import produce

pytestmark = pytest.mark.kafka


@pytest.fixture
async def prefix(kafka_bootstrap: str) -> str:
    name = f"t{uuid.uuid4().hex[:8]}"
    await kafka_topics.create(kafka_bootstrap, kafka_topics.plan(name, partitions=3, replication=1))
    return name


@asynccontextmanager
async def _state(
    bootstrap: str, prefix: str, folder: Path, owners: dict[str, str] | None = None
) -> AsyncIterator[KafkaMshState]:
    state = KafkaMshState(
        KafkaConfig(bootstrap, prefix, partitions=3, replication=1),
        folder / "ebms.sqlite",
        owners or {},
    )
    await state.start()
    try:
        yield state
    finally:
        await state.close()


async def _in_thread(work: Callable[..., Any], *args: Any) -> Any:
    """As the MSH calls its state: from a worker thread."""
    return await asyncio.to_thread(work, *args)


async def test_a_message_received_by_one_process_is_a_duplicate_at_another(
    kafka_bootstrap: str, prefix: str, tmp_path: Path
) -> None:
    async with (
        _state(kafka_bootstrap, prefix, tmp_path / "a") as a,
        _state(kafka_bootstrap, prefix, tmp_path / "b") as b,
    ):
        first = await _in_thread(a.received.remember, "0150", "m1@peer", "CPA_1", "d1", b"<ack/>")
        found = await _in_thread(b.received.get, "0150", "m1@peer")
        assert found is not None and (found.cpaid, found.digest, found.answer) == (
            "CPA_1",
            "d1",
            b"<ack/>",
        )
        assert found.received_at == first.received_at
        assert await _in_thread(b.received.get, "0200", "m1@peer") is None  # per partner
        # both record the same MessageId at once: both answer with the first record's signal
        both = await asyncio.gather(
            _in_thread(a.received.remember, "0150", "m2@peer", "CPA_1", "d2", b"<ack a/>"),
            _in_thread(b.received.remember, "0150", "m2@peer", "CPA_1", "d2", b"<ack b/>"),
        )
        assert both[0].answer == both[1].answer
    # a process starting later reads every record there is
    async with _state(kafka_bootstrap, prefix, tmp_path / "c") as c:
        late = await _in_thread(c.received.get, "0150", "m2@peer")
        assert late is not None and late.answer == both[0].answer


async def test_what_one_process_sent_is_known_and_answered_at_another(
    kafka_bootstrap: str, prefix: str, tmp_path: Path
) -> None:
    settled: list[str] = []
    async with (
        _state(kafka_bootstrap, prefix, tmp_path / "a") as a,
        _state(kafka_bootstrap, prefix, tmp_path / "b") as b,
    ):
        a.on_settled = settled.append
        sent = await _in_thread(a.sent.first_attempt, "x.1@gw", "CPA_1", "2026-12-06T12:00:00.123Z")
        references = [("", "ZGlnZXN0MQ=="), ("cid:part1", "ZGlnZXN0Mg==")]
        await _in_thread(a.sent.expect_receipt, "x.1@gw", references)
        # another process attempting the delivery next builds the identical message
        again = await _in_thread(
            b.sent.first_attempt, "x.1@gw", "CPA_1", "2026-12-06T13:00:00.000Z"
        )
        assert again.timestamp == sent.timestamp == "2026-12-06T12:00:00.123Z"
        # a signed receipt arriving at b is checked against what a signed
        seen = await _in_thread(b.sent.get, "x.1@gw")
        assert seen is not None and seen.receipt == references
        # the partner's answer reaches b: recorded once, for every process; a waits no longer
        assert not await _in_thread(b.sent.answer, "x.1@gw", "CPA_2", ACKNOWLEDGED)
        assert await _in_thread(b.sent.answer, "x.1@gw", "CPA_1", ACKNOWLEDGED)
        assert not await _in_thread(b.sent.answer, "x.1@gw", "CPA_1", ACKNOWLEDGED)

        async def woken() -> bool:
            while "x.1@gw" not in settled:
                await asyncio.sleep(0.01)
            return True

        assert await asyncio.wait_for(woken(), 10)
        mine = await _in_thread(a.sent.get, "x.1@gw")
        assert mine is not None and mine.outcome == ACKNOWLEDGED
        assert await _in_thread(a.sent.get, "unknown@gw") is None


async def test_an_unreadable_record_is_skipped_and_the_copy_reads_on(
    kafka_bootstrap: str, prefix: str, tmp_path: Path
) -> None:
    """Records a process cannot read (corrupt, of a later version, wrong types) are logged and
    passed over; the records after them are applied, and a restart reads on from the stored
    position."""
    for value in (b"garbage", b'{"t":"received","message_id":5}\n', b'{"t":"later"}\n'):
        await produce(kafka_bootstrap, f"{prefix}.ebms", value, "m@peer")
    async with _state(kafka_bootstrap, prefix, tmp_path / "a") as a:
        await _in_thread(a.received.remember, "0150", "m@peer", "CPA_1", "d", None)
    async with _state(kafka_bootstrap, prefix, tmp_path / "a") as again:
        found = await _in_thread(again.received.get, "0150", "m@peer")
        assert found is not None and found.answer is None
