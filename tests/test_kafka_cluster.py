"""A real three-broker Kafka cluster (KRaft, replication 3, min.insync.replicas 2): one broker
is killed (-9) while a ``ggk serve`` process accepts messages. Nothing accepted is lost, the
service goes on accepting, and every message is delivered (issue 17, goal 3)."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from kit import harness
from kit.gateway import Setup, Sink, eventually, jw301_payload, make_setup, rest, serve
from kit.kafka_cluster import KafkaCluster, kafka_cluster
from tests.conftest import require_kafka_tools

pytestmark = pytest.mark.kafka

MESSAGES = 150
KILL_AFTER = 50
RECEIVERS = ("87654321", "12345678")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    require_kafka_tools()
    with kafka_cluster(tmp_path_factory.mktemp("cluster")) as started:
        yield started


async def submit_until_accepted(
    setup: Setup, ref: str, payload: bytes, deadline: float
) -> tuple[float, int]:
    """What a partner's system does: send, and on anything but 202 send the same message
    again with the same Idempotency-Key. Returns (seconds until accepted, attempts)."""
    started, attempts = time.monotonic(), 0
    while True:
        attempts += 1
        try:
            status, _ = await rest(
                setup,
                "POST",
                "/api/v1/messages",
                token=setup.token("0175"),
                data=payload,
                headers={"Idempotency-Key": ref},
            )
        except (TimeoutError, OSError):
            status = 0
        if status == 202:
            return time.monotonic() - started, attempts
        assert time.monotonic() < deadline, f"{ref} not accepted after {attempts} attempts"
        await asyncio.sleep(0.5)


async def replicas_of(bootstrap: str, topic: str) -> list[int]:
    """How many replicas each partition of ``topic`` has (what the gateway created)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return [len(p["replicas"]) for p in described["partitions"]]


async def test_losing_a_broker_under_load_loses_nothing(
    cluster: KafkaCluster, sink: Sink, tmp_path: Path
) -> None:
    setup = make_setup(tmp_path / "gw", sink.port)
    prefix = f"c{uuid.uuid4().hex[:8]}"
    harness.use_kafka(setup.config_path, cluster.bootstrap, prefix, replication=3)
    log = tmp_path / "gateway.log"
    process = await serve(setup, log)
    sink.delay = 0.02
    refs: list[str] = []
    timings: list[tuple[float, int]] = []
    deadline = time.monotonic() + 240
    try:

        async def one(i: int) -> None:
            ref = str(uuid.uuid4())
            refs.append(f"{ref}:{RECEIVERS[i % 2]}")
            payload = jw301_payload(RECEIVERS[i % 2])
            timings.append(await submit_until_accepted(setup, ref, payload, deadline))

        for batch in range(0, KILL_AFTER, 5):
            await asyncio.gather(*(one(i) for i in range(batch, batch + 5)))
        assert set(await replicas_of(cluster.bootstrap, f"{prefix}.accepted")) == {3}
        victim = 2
        cluster.kill(victim)  # under load: deliveries of the first batches still in flight
        killed_at = len(sink.received)
        for batch in range(KILL_AFTER, MESSAGES, 5):
            await asyncio.gather(*(one(i) for i in range(batch, batch + 5)))

        def delivered() -> set[str]:
            return {r["idempotency_key"] for r in sink.received}

        expected = set(refs)
        await eventually(lambda: delivered() >= expected, timeout=120, interval=0.2)
        await asyncio.sleep(1)
        copies = Counter(r["idempotency_key"] for r in sink.received)
        assert set(copies) == expected  # nothing lost, nothing foreign
        after = timings[KILL_AFTER:]
        print(
            f"\nbroker {victim} killed after {KILL_AFTER} accepted ({killed_at} delivered);"
            f" accepted after the kill: {len(after)};"
            f" attempts > 1: {sum(1 for _, a in timings if a > 1)};"
            f" acceptance s median {statistics.median(t for t, _ in after):.3f},"
            f" max {max(t for t, _ in after):.2f};"
            f" deliveries {sum(copies.values())} for {len(expected)} messages"
            f" ({sum(c - 1 for c in copies.values())} repeated, deduped by Idempotency-Key)"
        )
        admin = setup.token()

        async def last_delivered() -> bool:
            """The view follows Kafka a fetch behind the partner's receipt."""
            path = f"/api/v1/messages/{refs[-1].split(':')[0]}"
            code, view = await rest(setup, "GET", path, token=admin)
            return code == 200 and {d["state"] for d in view["deliveries"]} == {"delivered"}

        await eventually(last_delivered, timeout=10)
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()
        if victim_missing := [n for n in (1, 2, 3) if n not in cluster.processes]:
            for node in victim_missing:  # leave the cluster whole for a later test
                cluster.start(node)
    text = log.read_text()
    assert "Traceback" not in text and "999990019" not in text
