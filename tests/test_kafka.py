"""Against a real Apache Kafka broker: the topic layout, ``ggk kafka init``, and the
producer settings the backend relies on (idempotent, acks=all, per-receiver keys)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord

from gateway.broker import kafka_audit, kafka_ledger, kafka_topics
from gateway.keyring import Keyring
from gateway.portal.session import SESSION_SECONDS
from kit.gateway import eventually

pytestmark = pytest.mark.kafka
GGK = str(Path(sys.executable).parent / "ggk")


def test_plan_has_every_topic_the_backend_needs() -> None:
    names = [t.name for t in kafka_topics.plan("x", partitions=6, replication=3)]
    assert names[0] == "x.accepted" and "x.dlq" in names and "x.events" in names
    assert {f"x.deliver.{a}" for a in kafka_topics.ADAPTERS} <= set(names)
    by_name = {t.name: t for t in kafka_topics.plan("x", partitions=6, replication=3)}
    assert by_name["x.audit"].partitions == 1  # one order for the hash chain
    assert by_name["x.events"].config["retention.ms"] == "-1"  # a new process reads it all
    assert int(by_name["x.deliver.http"].config["max.message.bytes"]) > 25 * 1024 * 1024
    assert by_name["x.accepted"].config["min.insync.replicas"] == "2"
    assert by_name["x.ledger"].partitions == 1  # the chains' signed heads
    assert by_name["x.ledger"].config["cleanup.policy"] == "compact"  # newest per chain kept
    # sign-outs expire a little after the sessions they end, never before
    sessions = by_name["x.sessions"]
    retention = int(sessions.config["retention.ms"])
    assert SESSION_SECONDS * 1000 < retention <= 2 * SESSION_SECONDS * 1000
    assert sessions.config["cleanup.policy"] == "delete" and sessions.partitions == 1
    assert int(sessions.config["segment.ms"]) < retention  # else nothing would be deleted
    # the partner file every process follows: one partition, only the newest version kept
    partners = by_name["x.partners"]
    assert partners.partitions == 1 and partners.config["cleanup.policy"] == "compact"
    # the ebMS state: the first record of a MessageId wins, so kept by time, never compacted,
    # and longer than any resend window (30 days at most)
    state = by_name["x.ebms"]
    assert state.config["cleanup.policy"] == "delete" and state.partitions == 6
    assert int(state.config["retention.ms"]) > 30 * 24 * 3600 * 1000
    with pytest.raises(ValueError):
        kafka_topics.plan(partitions=0)


def test_the_trail_shows_a_record_it_cannot_read() -> None:
    """A foreign record in ``events`` is an audit record of its own kind: never skipped by a
    search or an export (and chained like any other)."""
    garbage = record(7, b"?")
    entry = kafka_audit._entry(garbage, None, {})
    assert entry is not None and entry.event.action == "unreadable_record"
    assert entry.position == "events:2:7" and entry.at == 1_700_000_000.0


def test_a_chain_is_a_function_of_the_log() -> None:
    """Two owners reading the same records compute the same head; an altered, removed,
    reordered or cut-off record gives another one (what ``ggk audit verify`` detects)."""
    key = b"k" * 32

    def head(*records: ConsumerRecord[bytes, bytes]) -> str:
        chain = kafka_ledger.Chain()
        for item in records:
            chain.add(key, item)
        return chain.hash

    a, b = record(0, b"a"), record(1, b"b")
    assert head(a, b) == head(a, b)
    variants = {head(a, b), head(a, record(1, b"B")), head(b), head(b, a), head(a), head()}
    assert len(variants) == 6


def record(offset: int, value: bytes) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        "x.events", 2, offset, 1_700_000_000_000, 0, b"k", value, None, 1, len(value), ()
    )


def test_ggk_kafka_init_creates_topics_once(kafka_bootstrap: str) -> None:
    args = [
        GGK,
        "kafka",
        "init",
        "--bootstrap",
        kafka_bootstrap,
        "--prefix",
        "t1",
        "--partitions",
        "3",
        "--replication",
        "1",
        "--json",
    ]
    first = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert first.returncode == 0, first.stderr
    created = json.loads(first.stdout)["created"]
    assert (
        len(created) == len(kafka_topics.plan("t1")) and json.loads(first.stdout)["existing"] == []
    )
    again = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert json.loads(again.stdout) == {"created": [], "existing": sorted(created)}

    async def partitions() -> dict[str, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            described = await admin.describe_topics(["t1.accepted", "t1.audit"])
            return {d["topic"]: len(d["partitions"]) for d in described}
        finally:
            await admin.close()

    assert asyncio.run(partitions()) == {"t1.accepted": 3, "t1.audit": 1}


def test_unreachable_cluster_is_a_clear_error() -> None:
    result = subprocess.run(
        [GGK, "kafka", "init", "--bootstrap", "127.0.0.1:1", "--replication", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2 and "kafka at 127.0.0.1:1" in result.stderr


async def test_idempotent_producer_keeps_one_receivers_order(kafka_bootstrap: str) -> None:
    topics = kafka_topics.plan("t2", partitions=4, replication=1)
    await kafka_topics.create(kafka_bootstrap, topics)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, enable_idempotence=True, acks="all"
    )
    await producer.start()
    try:
        sends = [
            await producer.send("t2.deliver.http", f"{r}:{i}".encode(), key=r.encode())
            for i in range(30)
            for r in ("0150", "12345678")
        ]
        acked = await asyncio.gather(*sends)  # pipelined: one round trip for many messages
    finally:
        await producer.stop()
    assert len({(m.partition, m.offset) for m in acked}) == 60
    consumer = AIOKafkaConsumer(
        "t2.deliver.http",
        bootstrap_servers=kafka_bootstrap,
        group_id="t2-workers",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen: dict[str, list[int]] = {}
    try:
        while sum(len(v) for v in seen.values()) < 60:
            batch = await consumer.getmany(timeout_ms=2000)
            for records in batch.values():
                for record in records:
                    receiver, n = record.value.decode().split(":")
                    seen.setdefault(receiver, []).append(int(n))
            await consumer.commit()
    finally:
        await consumer.stop()
    assert seen == {"0150": list(range(30)), "12345678": list(range(30))}


def test_serve_with_an_unreachable_cluster_is_a_clear_error(tmp_path: Path) -> None:
    subprocess.run([GGK, "init", str(tmp_path / "gw")], check=True, capture_output=True)
    config = tmp_path / "gw" / "gateway.toml"
    text = config.read_text().replace('broker = "sqlite"', 'broker = "kafka"', 1)
    config.write_text(text + '\n[kafka]\nbootstrap = "127.0.0.1:1"\n')
    result = subprocess.run(
        [GGK, "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "kafka at 127.0.0.1:1" in result.stderr and "Traceback" not in result.stderr


async def test_the_ledger_reader_rests_between_reads_and_finds_new_heads(
    kafka_bootstrap: str,
) -> None:
    """The ledger is read at start and at each assignment only. In between its reader is
    paused (an assigned partition is otherwise fetched twice a second, for nobody), and a
    head published meanwhile, by another process, is found at the next read."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    settings = {"bootstrap_servers": kafka_bootstrap}
    await kafka_topics.create(
        kafka_bootstrap, kafka_topics.plan(prefix, partitions=1, replication=1), settings
    )
    producer = AIOKafkaProducer(**settings, acks="all")
    await producer.start()

    async def send(topic: str, value: bytes, key: str) -> None:
        await producer.send_and_wait(topic, value, key=key.encode())

    keyring = Keyring.generate()
    keeper = kafka_ledger.LedgerKeeper(settings, prefix, [f"{prefix}.events"], keyring, "a", send)
    ledger = TopicPartition(f"{prefix}.ledger", 0)
    source = TopicPartition(f"{prefix}.events", 0)
    try:
        await keeper.start()
        reader = keeper._reader
        assert reader is not None

        def resting() -> bool:  # once the group gave it the source (its second read)
            return source in keeper.chains and reader.paused() == {ledger}

        assert await eventually(resting, timeout=30)
        head = kafka_ledger.Checkpoint.sign(
            keyring, source, kafka_ledger.Chain("ab" * 32, 7, 9), "b"
        )
        await send(ledger.topic, *head.to_record())
        await keeper._read_ledger()
        assert keeper.published[source] == head
        assert reader.paused() == {ledger}
    finally:
        await keeper.close()
        await producer.stop()
