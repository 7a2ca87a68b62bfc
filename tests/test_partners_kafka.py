"""The partner lifecycle on the Kafka backend: one change through one process's CLI is taken
up by every process, each serving from its own partner file, without a restart."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

from kit.gateway import (
    Setup,
    Sink,
    another_process,
    eventually,
    ggk,
    make_setup,
    rest,
    serve,
    use_kafka,
)

pytestmark = pytest.mark.kafka


async def _status(setup: Setup, token: str) -> int:
    status, _ = await rest(setup, "GET", "/api/v1/inbox", token=token)
    return status


async def test_a_token_revoked_through_one_process_is_refused_by_another(
    tmp_path: Path, sink: Sink, kafka_bootstrap: str
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    setup = use_kafka(make_setup(tmp_path / "gw", sink.port), kafka_bootstrap, prefix)
    other = another_process(setup, "b")
    # process b serves from a partner file of its own (another machine's copy)
    own = setup.directory / "partners-b.toml"
    shutil.copy(setup.directory / "partners.toml", own)
    text = other.config_path.read_text()
    other.config_path.write_text(
        re.sub(r"^partners = .*$", 'partners = "partners-b.toml"', text, count=1, flags=re.M)
    )
    processes: list[asyncio.subprocess.Process] = []
    try:
        processes.append(await serve(setup, tmp_path / "a.log"))
        processes.append(await serve(other, tmp_path / "b.log"))
        code, out = await ggk(setup, "partners", "token", "issue", "0150", "--json")
        assert code == 0, out
        token = json.loads(out)["token"]

        async def b_says(status: int) -> bool:
            return await _status(other, token) == status

        await eventually(lambda: b_says(200), timeout=60, interval=0.3)
        code, out = await ggk(setup, "partners", "token", "revoke", "0150", "t1")
        assert code == 0, out
        await eventually(lambda: b_says(401), timeout=60, interval=0.3)

        async def a_says_401() -> bool:  # a's own watcher looks every 2 s
            return await _status(setup, token) == 401

        await eventually(a_says_401, timeout=30, interval=0.3)
        assert await _status(other, setup.token("0150")) == 200  # the other token holds
        assert own.read_text() == (setup.directory / "partners.toml").read_text()
        # a record on the topic that is not signed by the deployment is refused
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            forged = own.read_bytes() + b"\n# forged\n"  # well-formed, but not signed
            await producer.send_and_wait(f"{prefix}.partners", forged, key=b"partners")
        finally:
            await producer.stop()
        await eventually(
            lambda: "partners.topic_refused" in (tmp_path / "b.log").read_text(), timeout=30
        )
        assert "# forged" not in own.read_text()
    finally:
        for process in processes:
            if process.returncode is None:
                process.terminate()
                await process.wait()


async def test_an_old_signed_partner_file_replayed_on_the_topic_does_not_undo_a_revocation(
    tmp_path: Path, sink: Sink, kafka_bootstrap: str
) -> None:
    """Someone who can write to the topic copies the record that issued a token (signed by
    the deployment, so it passes the signature check) back on after the token was revoked:
    the older file must not be taken up, or the revoked token would work again."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    prefix = f"t{uuid.uuid4().hex[:8]}"
    setup = use_kafka(make_setup(tmp_path / "gw", sink.port), kafka_bootstrap, prefix)
    other = another_process(setup, "b")
    own = setup.directory / "partners-b.toml"
    shutil.copy(setup.directory / "partners.toml", own)
    text = other.config_path.read_text()
    other.config_path.write_text(
        re.sub(r"^partners = .*$", 'partners = "partners-b.toml"', text, count=1, flags=re.M)
    )
    processes: list[asyncio.subprocess.Process] = []
    try:
        processes.append(await serve(setup, tmp_path / "a.log"))
        processes.append(await serve(other, tmp_path / "b.log"))
        code, out = await ggk(setup, "partners", "token", "issue", "0150", "--json")
        assert code == 0, out
        token = json.loads(out)["token"]

        async def b_says(status: int) -> bool:
            return await _status(other, token) == status

        await eventually(lambda: b_says(200), timeout=60, interval=0.3)
        code, out = await ggk(setup, "partners", "token", "revoke", "0150", "t1")
        assert code == 0, out
        await eventually(lambda: b_says(401), timeout=60, interval=0.3)
        revoked = own.read_bytes()
        # the attacker reads the topic and puts the record that issued the token back on
        topic = f"{prefix}.partners"
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            tp = TopicPartition(topic, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            records: list[Any] = []
            while len(records) < 2:
                batch = await consumer.getmany(tp, timeout_ms=2000)
                records.extend(batch.get(tp, []))
        finally:
            await consumer.stop()
        issued = records[-2]  # the one before the revocation
        assert issued.value != records[-1].value
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(
                topic, issued.value, key=b"partners", headers=list(issued.headers)
            )
        finally:
            await producer.stop()
        log_b = tmp_path / "b.log"
        await eventually(
            lambda: (
                "partners.topic_refused" in log_b.read_text()
                or log_b.read_text().count("partners.taken_from_topic") > 2
            ),
            timeout=30,
            interval=0.3,
        )
        assert "partners.topic_refused" in log_b.read_text()
        assert own.read_bytes() == revoked
        assert (setup.directory / "partners.toml").read_bytes() == revoked
        assert await _status(other, token) == 401
    finally:
        for process in processes:
            if process.returncode is None:
                process.terminate()
                await process.wait()
