"""The Kafka backend against a real Apache Kafka broker: gateways (in-process and ``ggk serve``
subprocesses) accept over TLS, route through Kafka and deliver to a loopback partner."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import sqlite3
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from lxml import etree

from gateway import envelope as env
from gateway import stats
from gateway.broker import kafka as kafka_module
from gateway.broker import kafka_records, kafka_topics, sqlite_figures
from gateway.broker.kafka_ledger import Chain, Checkpoint
from gateway.keyring import Keyring
from gateway.portal.session import SESSION_SECONDS
from kit.gateway import (
    Setup,
    Sink,
    another_process,
    deventer_wmo301,
    eventually,
    fo03_code,
    ggk,
    jw301_payload,
    make_setup,
    portal_session,
    post_soap,
    rest,
    running,
    serve,
    submit_jw301,
    use_kafka,
    with_cookie,
)
from tests.conftest import sample

pytestmark = pytest.mark.kafka


@pytest.fixture
def setup(tmp_path: Path, sink: Sink, kafka_bootstrap: str) -> Setup:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    return use_kafka(make_setup(tmp_path / "gw", sink.port), kafka_bootstrap, prefix)


def jw301_for(ontvanger: str) -> bytes:
    """A JW301 Di01 from gemeente 0175 to zorgaanbieder ``ontvanger``."""
    return env.build_di01(
        jw301_payload(ontvanger),
        zender="0175",
        zender_applicatie="DOWRsociaal",
        ontvanger=ontvanger,
        functie="JW301",
    )


def delivered_once(sink: Sink) -> Counter[str]:
    """What the receiver keeps: one message per Idempotency-Key (what a receiver dedupes on)."""
    return Counter(r["idempotency_key"] for r in sink.received)


async def test_accept_route_deliver_and_status(setup: Setup, sink: Sink) -> None:
    async with running(setup):
        ref = str(uuid.uuid4())
        status, body = await post_soap(setup, deventer_wmo301(ref), partner="0150")
        assert status == 200 and b"Bv03" in body, body
        await eventually(lambda: ref in sink.referenties(), timeout=30)
        admin = setup.token()

        async def delivered() -> bool:
            code, view = await rest(setup, "GET", f"/api/v1/messages/{ref}", token=admin)
            states = {d["destination"]: d["state"] for d in view.get("deliveries", [])}
            return code == 200 and states.get("12345678") == "delivered"

        await eventually(delivered, timeout=30)
        _, view = await rest(setup, "GET", f"/api/v1/messages/{ref}", token=admin)
        events = [e["event"] for e in view["events"]]
        assert events[0] == "accepted" and "delivered" in events
        # the same message again: the same Bv03, not a second delivery
        again, body2 = await post_soap(setup, deventer_wmo301(ref), partner="0150")
        assert again == 200 and b"Bv03" in body2
        # other content under the same referentienummer: StUF016 (conflict)
        wmo301 = sample("iwmo/wmo301.xml").encode()
        other = deventer_wmo301(ref).replace(
            base64.b64encode(wmo301),
            base64.b64encode(wmo301.replace(b"Hendrika Maria", b"Hendrika Johanna")),
        )
        code, fault = await post_soap(setup, other, partner="0150")
        assert code == 500 and fo03_code(fault) == "StUF016", fault
        await asyncio.sleep(1)
        assert sink.referenties().count(ref) == 1
        # beleidsinformatie: the facts travelled sealed in the record and the view counted
        # them once (the re-offer is not a second toewijzing)
        code, figures = await rest(setup, "GET", "/api/v1/stats?gemeente=0150", token=admin)
        assert code == 200 and [r["toewijzingen"] for r in figures["rows"]] == [
            5,
            5,
        ]  # 1 each, rounded
        with contextlib.closing(sqlite3.connect(setup.config().database)) as db:
            db.row_factory = sqlite3.Row
            cells = sqlite_figures.count(db, stats.Scope("0150")).cells
        assert sorted((c.categorie, c.counts["toewijzingen"]) for c in cells) == [
            ("01", 1),
            ("02", 1),
        ]


async def test_one_receivers_messages_arrive_in_order(setup: Setup, sink: Sink) -> None:
    async with running(setup):
        sent = []
        for _ in range(40):
            data = jw301_for("87654321")
            status, body = await post_soap(setup, data, partner="0175")
            assert status == 200, body
            sent.append(env.parse(etree.fromstring(data)).referentienummer)
        await eventually(lambda: len(set(sink.referenties())) >= len(sent), timeout=60)
        order = list(dict.fromkeys(sink.referenties()))
        assert order == sent


async def test_delivered_records_are_committed_while_the_gateway_runs(
    setup: Setup, sink: Sink, kafka_bootstrap: str
) -> None:
    """The delivery group's offsets follow the deliveries soon, not only at a clean stop: a
    process killed later must not take them up again. (The commit loop sleeps while no
    offset moves and wakes when one does: a slow receiver finishes a delivery long after
    its record was taken, and that finish alone must bring a commit.)"""
    sink.delay = 1.0
    prefix = setup.config().kafka.prefix  # type: ignore[union-attr]
    group = f"{prefix}.delivery"
    topics = [f"{prefix}.deliver.{adapter}" for adapter in kafka_topics.pushed()]
    async with running(setup):
        refs = [await submit_jw301(setup) for _ in range(3)]
        await eventually(lambda: set(sink.referenties()) >= set(refs), timeout=60)
        reader = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap)
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await reader.start()
        await admin.start()
        try:
            partitions = [
                TopicPartition(topic, p)
                for topic in topics
                for p in await kafka_topics.partitions(reader, topic)
            ]
            ends = await reader.end_offsets(partitions)
            written = {tp: end for tp, end in ends.items() if end > 0}
            assert written  # the deliveries went through the topic

            async def committed() -> bool:
                offsets = await admin.list_consumer_group_offsets(group)
                # one past the last record: the end lies past the router's last commit
                # marker, which no consumer is given
                return all(
                    tp in offsets and offsets[tp].offset >= end - 1 for tp, end in written.items()
                )

            assert await eventually(committed, timeout=10)
        finally:
            await admin.close()
            await reader.stop()


async def test_partner_down_then_back_is_retried_through_the_retry_topic(
    setup: Setup, sink: Sink
) -> None:
    sink.fail_next, sink.fail_with = 2, "http503"
    async with running(setup):
        data = jw301_for("87654321")
        ref = env.parse(etree.fromstring(data)).referentienummer
        status, _ = await post_soap(setup, data, partner="0175")
        assert status == 200
        await eventually(lambda: ref in sink.referenties(), timeout=30)
        assert sink.requests_seen == 3

        async def history() -> list[str]:
            """The message's events, once the view has applied its delivery (the view
            follows Kafka a fetch behind: up to 20 ms)."""
            _, view = await rest(setup, "GET", f"/api/v1/messages/{ref}", token=setup.token())
            events = [str(e["event"]) for e in view["events"]]
            return events if "delivered" in events else []

        events = await eventually(history, timeout=10)
        assert events.count("retry_scheduled") == 2, events


async def test_dead_letter_and_replay(setup: Setup, sink: Sink) -> None:
    sink.fail_next, sink.fail_with = 1, "fo03-client"  # refused for good: dead at once
    async with running(setup):
        ref = str(uuid.uuid4())
        status, _ = await post_soap(setup, deventer_wmo301(ref), partner="0150")
        assert status == 200
        admin = setup.token()

        async def dead() -> list[dict[str, str]]:
            _, items = await rest(setup, "GET", "/api/v1/admin/dead-letters", token=admin)
            return [i for i in items["dead_letters"] if i["referentienummer"] == ref]

        await eventually(dead, timeout=30)
        assert ref not in sink.referenties()
        code, result = await rest(
            setup, "POST", "/api/v1/admin/replay", token=admin, json={"message_id": ref}
        )
        assert code == 200 and result["replayed"] == 1, result
        await eventually(lambda: ref in sink.referenties(), timeout=30)
        assert not await dead()


async def test_a_replay_of_many_reads_their_payloads_in_chunks(
    setup: Setup, sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three dead letters replayed at once, their payloads read two at a time: every one
    is counted and reaches the receiver (a chunk after the first is not lost)."""
    monkeypatch.setattr(kafka_module, "REPLAY_CHUNK", 2)
    sink.fail_next, sink.fail_with = 3, "fo03-client"  # refused for good: dead at once
    since = time.time() - 1
    async with running(setup):
        refs = [str(uuid.uuid4()) for _ in range(3)]
        for ref in refs:
            own = deventer_wmo301(ref, identificatie=uuid.uuid4().hex[:12])  # not a TR056 reuse
            status, _ = await post_soap(setup, own, partner="0150")
            assert status == 200
        admin = setup.token()

        async def all_dead() -> bool:
            _, items = await rest(setup, "GET", "/api/v1/admin/dead-letters", token=admin)
            dead = {i["referentienummer"] for i in items["dead_letters"]}
            return set(refs) <= dead

        await eventually(all_dead, timeout=30)
        code, result = await rest(
            setup, "POST", "/api/v1/admin/replay", token=admin, json={"since": since}
        )
        assert code == 200 and result["replayed"] == 3, result
        await eventually(lambda: set(refs) <= set(sink.referenties()), timeout=30)


async def test_a_replay_goes_on_past_a_payload_it_cannot_read(setup: Setup, sink: Sink) -> None:
    """Three dead letters replayed at once, the view no longer knowing where the first one's
    payload record is (its row removed while the gateway was stopped): the other two are
    sent again and delivered, the first stays the dead letter it was (its error kept) with
    the reason in its history, and the replay counts two. It stopped at the first before
    (the admin API answered 500), and the rest were not replayed."""
    sink.fail_next, sink.fail_with = 3, "fo03-client"  # refused for good: dead at once
    since = time.time() - 1
    refs = [str(uuid.uuid4()) for _ in range(3)]
    admin = setup.token()

    async def dead_letters() -> dict[str, dict[str, Any]]:
        _, items = await rest(setup, "GET", "/api/v1/admin/dead-letters", token=admin)
        return {i["referentienummer"]: i for i in items["dead_letters"]}

    async def dead() -> set[str]:
        return set(await dead_letters())

    async with running(setup):
        for ref in refs:
            own = deventer_wmo301(ref, identificatie=uuid.uuid4().hex[:12])
            status, _ = await post_soap(setup, own, partner="0150")
            assert status == 200

        async def all_dead() -> bool:
            return set(refs) <= await dead()

        await eventually(all_dead, timeout=30)
        before = (await dead_letters())[refs[0]]
    view = sqlite3.connect(setup.config().database)
    with view:
        view.execute(
            "DELETE FROM kafka_payloads WHERE message_id = "
            "(SELECT id FROM messages WHERE referentienummer = ?)",
            (refs[0],),
        )
    view.close()
    async with running(setup):
        code, result = await rest(
            setup, "POST", "/api/v1/admin/replay", token=admin, json={"since": since}
        )
        assert code == 200 and result["replayed"] == 2, result
        await eventually(lambda: set(refs[1:]) <= set(sink.referenties()), timeout=30)
        assert refs[0] not in sink.referenties()
        after = (await dead_letters())[refs[0]]
        assert (after["last_error"], after["attempts"]) == (
            before["last_error"],
            before["attempts"],
        )
        _, seen = await rest(setup, "GET", f"/api/v1/messages/{refs[0]}", token=admin)
        failed = [e for e in seen["events"] if e["event"] == "replay_failed"]
        assert len(failed) == 1 and "cannot be read" in failed[0]["detail"], seen["events"]


async def test_one_identificatie_sent_three_times_at_once_is_delivered_once(
    setup: Setup, sink: Sink
) -> None:
    """Three toewijzingen with one Identificatie and referentienummers of their own, sent at
    once to one process. Its view knows none of the others when each is accepted, so the
    router must see the reuse itself: it compared referentienummers only, and all three
    reached the receiver when they were routed in one batch. One is delivered. Each of the
    others is refused at once (TR056) or accepted and recorded against it as ``late_tr056``."""
    async with running(setup):
        refs = [str(uuid.uuid4()) for _ in range(3)]
        same = uuid.uuid4().hex[:12]
        answers = await asyncio.gather(
            *(
                post_soap(setup, deventer_wmo301(ref, identificatie=same), partner="0150")
                for ref in refs
            )
        )
        accepted = [
            ref
            for ref, (status, body) in zip(refs, answers, strict=True)
            if status == 200 and b"Fo03" not in body
        ]
        assert accepted, answers
        await eventually(lambda: any(ref in sink.referenties() for ref in refs), timeout=30)
        (winner,) = [ref for ref in refs if ref in sink.referenties()]
        admin = setup.token()

        async def others_recorded() -> bool:
            code, view = await rest(setup, "GET", f"/api/v1/messages/{winner}", token=admin)
            if code != 200:  # delivered before this process's view has it
                return False
            late = [e for e in view["events"] if e["event"] == "late_tr056"]
            return len(late) == len(accepted) - 1

        await eventually(others_recorded, timeout=30)
        assert [ref for ref in refs if ref in sink.referenties()] == [winner]


async def test_views_keep_no_payloads_an_inbox_download_reads_kafka(setup: Setup) -> None:
    """A process's view holds every message's metadata but no envelope; an inbox download
    (and a replay, above) fetches the message's ``events`` record by its position."""
    async with running(setup):
        status, _ = await rest(
            setup,
            "POST",
            "/api/v1/messages",
            token=setup.token("12345678"),
            data=sample("iwmo/wmo305.xml").encode(),
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        assert status == 202

        async def listed() -> list[dict[str, str]]:
            _, listing = await rest(setup, "GET", "/api/v1/inbox", token=setup.token("0150"))
            return list(listing["messages"])

        (item,) = await eventually(listed, timeout=30)
        status, body = await rest(setup, "GET", f"/api/v1/inbox/{item['id']}", partner_cert="0150")
        assert status == 200 and env.parse(etree.fromstring(body)).functie == "WMO305"
        path = f"/api/v1/inbox/{item['id']}"
        assert (await rest(setup, "GET", path, token=setup.token("0177")))[0] == 404
        # the portal reads it as a document from Kafka too, and its archive lists it
        gemeente, _ = await portal_session(setup, "0150")
        async with gemeente:
            page_url = f"{setup.url}/portal/messages/{item['id']}"
            async with gemeente.get(page_url, ssl=setup.ssl_context()) as page:
                html = await page.text()
            assert page.status == 200 and "<dt>BSN</dt>" in html, html[-2000:]
            assert "999990019" not in html  # masked
            archive = f"{setup.url}/portal/archive"
            async with gemeente.get(archive, ssl=setup.ssl_context()) as page:
                assert f"/portal/messages/{item['id']}" in await page.text()
    with contextlib.closing(sqlite3.connect(setup.config().database)) as db:
        stored = db.execute("SELECT COUNT(*), SUM(length(envelope)) FROM messages").fetchone()
    assert stored == (1, 0)


async def test_two_processes_share_the_work_and_survive_kill_9(
    setup: Setup, sink: Sink, tmp_path: Path
) -> None:
    """Two ``ggk serve`` processes on one cluster; one is killed (-9) while messages are in
    flight. Every message accepted by either is delivered; each Idempotency-Key arrives, and
    the survivor answers status for messages the dead one accepted."""
    sink.delay = 0.05  # slower than the submissions: a backlog is queued when the kill comes
    other = another_process(setup, "b")
    logs = tmp_path / "a.log", tmp_path / "b.log"
    processes: list[asyncio.subprocess.Process] = []
    receivers = ("87654321", "12345678")
    refs: list[str] = []
    try:
        processes.append(await serve(setup, logs[0]))
        processes.append(await serve(other, logs[1]))
        a = processes[0]
        for i in range(120):
            refs.append(await submit_jw301(setup if i % 2 else other, receivers[i % 4 // 2]))
        os.kill(a.pid, signal.SIGKILL)  # with deliveries still queued and in flight
        await a.wait()
        assert len(sink.received) < len(refs), "no backlog at the kill: the test proves nothing"
        for i in range(60):
            refs.append(await submit_jw301(other, receivers[i % 2]))
        expected = {
            f"{ref}:{receivers[n % 4 // 2] if n < 120 else receivers[n % 2]}"
            for n, ref in enumerate(refs)
        }
        await eventually(lambda: set(delivered_once(sink)) >= expected, timeout=90, interval=0.2)
        await asyncio.sleep(1)
        assert set(delivered_once(sink)) == expected
        both = [log.read_text().count("delivery.delivered") for log in logs]
        assert all(both), f"deliveries per process: {both}"  # the work was shared
        _, view = await rest(other, "GET", f"/api/v1/messages/{refs[1]}", token=other.token())
        assert {d["state"] for d in view["deliveries"]} == {"delivered"}, view
    finally:
        for process in processes:
            if process.returncode is None:
                process.terminate()
                await process.wait()
    for log in logs:
        assert "Traceback" not in log.read_text() and "999990019" not in log.read_text()
    # the audit chains moved to the survivor at the kill and continued without a gap
    code, out = await ggk(other, "audit", "verify", "--json")
    verdict = json.loads(out)
    assert code == 0 and verdict["ok"], out
    assert verdict["records"] >= 2 * len(refs)  # each message: accepted and delivered


async def test_a_portal_session_holds_on_every_process_and_its_audit_search_reads_kafka(
    setup: Setup, sink: Sink, tmp_path: Path
) -> None:
    """Portal sessions are signed cookies, not server state: signed in at one process, the
    operator is signed in at the other; the portal's audit search reads the cluster's trail."""
    other = another_process(setup, "b")
    processes: list[asyncio.subprocess.Process] = []
    try:
        processes.append(await serve(setup, tmp_path / "a.log"))
        processes.append(await serve(other, tmp_path / "b.log"))
        ref = await submit_jw301(setup)
        await eventually(lambda: ref in sink.referenties(), timeout=60)
        client, csrf = await portal_session(setup, None)  # signed in at process a
        async with client:
            tls = other.ssl_context()
            async with client.get(f"{other.url}/portal/queues", ssl=tls) as page:
                assert page.status == 200 and "87654321" in await page.text()

            async def found() -> bool:
                async with client.post(
                    f"{other.url}/portal/audit", data={"csrf": csrf, "message": ref}, ssl=tls
                ) as page:
                    text = await page.text()
                    assert page.status == 200, text
                    return "accepted" in text and "delivered" in text

            await eventually(found, timeout=30)

        # a refusal at process a joins 0175's list in every view (from the audit record)
        again = await rest(
            setup,
            "POST",
            "/api/v1/messages",
            token=setup.token("0175"),
            data=jw301_payload("87654321", identificatie="TR056TWICE"),
        )
        assert again[0] == 202, again

        async def seen() -> bool:  # TR056 is checked against the view: once it holds the first
            path = f"/api/v1/messages/{again[1]['id']}"
            return (await rest(setup, "GET", path, token=setup.token()))[0] == 200

        await eventually(seen, timeout=30)
        refused = await rest(
            setup,
            "POST",
            "/api/v1/messages",
            token=setup.token("0175"),
            data=jw301_payload("87654321", identificatie="TR056TWICE"),
        )
        assert refused[0] == 422 and refused[1]["code"] == "StUF058", refused
        gemeente, _ = await portal_session(other, "0175")
        async with gemeente:

            async def listed() -> bool:
                async with gemeente.get(f"{other.url}/portal/sent", ssl=tls) as page:
                    return "StUF058" in await page.text()

            await eventually(listed, timeout=30)
    finally:
        for process in processes:
            process.terminate()
            await process.wait()


async def test_the_cluster_audit_trail_is_kept_once_and_verified(
    setup: Setup, sink: Sink, tmp_path: Path, kafka_bootstrap: str
) -> None:
    """Two processes share the audit chains (group ``<p>.ledger``: each partition chained
    and signed by one owner); ``ggk audit verify`` recomputes every chain from the cluster.
    A checkpoint that contradicts the log, or one signed with another key, is found."""
    other = another_process(setup, "b")
    processes: list[asyncio.subprocess.Process] = []
    try:
        processes.append(await serve(setup, tmp_path / "a.log"))
        processes.append(await serve(other, tmp_path / "b.log"))
        refs = [await submit_jw301(setup if i % 2 else other) for i in range(30)]
        await eventually(lambda: set(sink.referenties()) >= set(refs), timeout=60)
    finally:
        for process in processes:
            process.terminate()  # a clean stop signs the chains' heads
            await process.wait()
    code, out = await ggk(setup, "audit", "verify", "--json")
    verdict = json.loads(out)
    assert code == 0 and verdict["ok"], out
    assert verdict["unsigned_tail"] == 0, verdict
    assert verdict["records"] >= 2 * len(refs) + 2  # accepted, delivered; two starts

    # search and export read the cluster's trail, from either process's configuration
    code, out = await ggk(other, "audit", "search", "--message", refs[3], "--json")
    assert code == 0 and [r["action"] for r in json.loads(out)] == ["accepted", "delivered"], out
    code, out = await ggk(setup, "audit", "search", "--bsn", "999990019", "--json")
    assert code == 0 and len(json.loads(out)) == len(refs), out  # sealed: found by the keyring
    assert "999990019" not in out
    exported = tmp_path / "export.jsonl"
    code, out = await ggk(setup, "audit", "export", "--decrypt", "--out", str(exported))
    lines = [json.loads(line) for line in exported.read_text().splitlines()]
    assert code == 0 and sum(1 for r in lines if r["secret"] and r["secret"].get("bsn")) == 30
    code, out = await ggk(setup, "audit", "search", "--partner", "0175", "--json")
    assert code == 0 and len(json.loads(out)) >= 2 * len(refs), out
    code, out = await ggk(setup, "audit", "search", "--since", "2026-01-01", "--json")
    assert "audit_exported" in [r["action"] for r in json.loads(out)]  # the act is audited
    code, out = await ggk(setup, "keys", "rotate", "--reencrypt")
    assert code == 2 and "sealed in the cluster's topics" in out, out  # nothing to re-encrypt
    signed = tmp_path / "checkpoints.jsonl"
    code, out = await ggk(setup, "audit", "checkpoint", "--export", str(signed))
    assert code == 0 and signed.read_text().count('"checkpoint"') >= 2, out
    code, out = await ggk(setup, "audit", "verify", "--checkpoints", str(signed), "--json")
    assert code == 0 and json.loads(out)["unsigned_tail"] == 1, out  # the export act

    prefix = setup.config().kafka.prefix  # type: ignore[union-attr]
    ledger = await read_topic(kafka_bootstrap, f"{prefix}.ledger")
    checkpoints = [Checkpoint.from_record(value) for value in ledger]
    assert len({c.node for c in checkpoints}) == 2  # the work was shared
    newest = max(checkpoints, key=lambda c: c.records)

    # as if the records before that checkpoint had been altered after it was signed
    keyring = Keyring.load(setup.config().keyring)
    contradicting = Checkpoint(
        newest.topic, newest.partition, newest.offset, newest.records, "f" * 64, 0.0, "x"
    )
    lying = Checkpoint.sign(keyring, contradicting.source, _chain(contradicting), "x")
    await produce(kafka_bootstrap, f"{prefix}.ledger", *lying.to_record())
    code, out = await ggk(setup, "audit", "verify", "--json")
    verdict = json.loads(out)
    assert code == 1 and not verdict["ok"]
    assert "altered, removed or inserted" in verdict["reason"], verdict

    forged = Checkpoint.sign(Keyring.generate(), newest.source, _chain(newest), "mallory")
    await produce(kafka_bootstrap, f"{prefix}.ledger", *forged.to_record())
    code, out = await ggk(setup, "audit", "verify")
    assert code == 1 and "invalid signature" in out, out


def _chain(checkpoint: Checkpoint) -> Chain:
    return Chain(checkpoint.hash, checkpoint.records, checkpoint.offset)


async def read_topic(bootstrap: str, topic: str) -> list[bytes]:
    """Every record value of ``topic`` (one partition) from its start."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        values: list[bytes] = []
        while True:
            batch = await consumer.getmany(timeout_ms=1000)
            if not batch:
                return values
            values += [r.value for records in batch.values() for r in records if r.value]
    finally:
        await consumer.stop()


async def produce(bootstrap: str, topic: str, value: bytes, key: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key.encode())
    finally:
        await producer.stop()


async def test_unreadable_records_go_to_the_dead_letter_topic(
    setup: Setup, sink: Sink, kafka_bootstrap: str
) -> None:
    """A record no version can read (corrupt, foreign) is kept in ``<p>.dlq``, not dropped,
    and the partition behind it keeps moving."""
    prefix = setup.config().kafka.prefix  # type: ignore[union-attr]
    async with running(setup):
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(f"{prefix}.accepted", b"garbage", key=b"87654321")
            await producer.send_and_wait(f"{prefix}.deliver.http", b"{}", key=b"87654321")
        finally:
            await producer.stop()
        data = jw301_for("87654321")
        ref = env.parse(etree.fromstring(data)).referentienummer
        status, _ = await post_soap(setup, data, partner="0175")
        assert status == 200
        await eventually(lambda: ref in sink.referenties(), timeout=30)
        consumer = AIOKafkaConsumer(
            f"{prefix}.dlq", bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            got: list[bytes] = []
            for _ in range(20):
                batch = await consumer.getmany(timeout_ms=500)
                got += [r.value for records in batch.values() for r in records if r.value]
                if len(got) >= 2:
                    break
        finally:
            await consumer.stop()
        assert sorted(got) == [b"garbage", b"{}"]


async def test_a_session_signed_out_at_one_process_is_refused_at_every_other(
    setup: Setup, tmp_path: Path
) -> None:
    """Sign-out revokes the session for the cluster: the revocation travels on ``events``,
    so a copy of the cookie presented at another process is refused there too."""
    other = another_process(setup, "b")
    processes: list[asyncio.subprocess.Process] = []

    try:
        processes.append(await serve(setup, tmp_path / "a.log"))
        processes.append(await serve(other, tmp_path / "b.log"))
        client, csrf = await portal_session(setup, "0175")  # signed in at process a
        async with client:
            copied = next(c.value for c in client.cookie_jar if c.key == "__Host-ggk-session")
            assert await with_cookie(other, copied) == 200
            async with client.post(
                f"{setup.url}/portal/signout",
                data={"csrf": csrf},
                ssl=setup.ssl_context(),
                allow_redirects=False,
            ) as answer:
                assert answer.status == 303
            assert await with_cookie(setup, copied) == 303  # at once where it was signed out

            async def refused_at_b() -> bool:
                return await with_cookie(other, copied) == 303

            await eventually(refused_at_b, timeout=30)
    finally:
        for process in processes:
            process.terminate()
            await process.wait()


async def topic_records(bootstrap: str, topic: str) -> list[tuple[bytes | None, dict[str, Any]]]:
    """Every record of ``topic`` there is now: (key, framed metadata)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        partitions = [
            TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or set()
        ]
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = [
                TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or set()
            ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        found: list[tuple[bytes | None, dict[str, Any]]] = []

        async def behind() -> bool:
            return any([await consumer.position(tp) < end for tp, end in ends.items()])

        while await behind():
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                for record in records:
                    if record.value is not None:
                        meta, _ = kafka_records.unframe(record.value)
                        found.append((record.key, meta))
        return found
    finally:
        await consumer.stop()


async def topic_config(bootstrap: str, topic: str) -> dict[str, str]:
    """The configuration the cluster holds for ``topic``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        answers = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        await admin.close()
    (resource,) = [r for answer in answers for r in answer.resources]
    return {entry[0]: entry[1] for entry in resource[4]}


async def test_sign_outs_are_kept_where_they_expire_and_read_by_a_later_process(
    setup: Setup, tmp_path: Path, kafka_bootstrap: str
) -> None:
    """A sign-out is a record on ``<prefix>.sessions`` (keyed by the session's nonce), a
    topic that keeps it a little over a session's life, not on ``events``, which is kept
    forever (a partner signing out over and over would grow it without bound, and every new
    process would replay all of it); a process started after the sign-out reads that topic
    from its beginning and refuses the copied cookie at once."""
    prefix = setup.config().kafka.prefix  # type: ignore[union-attr]
    processes: list[asyncio.subprocess.Process] = []
    try:
        processes.append(await serve(setup, tmp_path / "a.log"))
        client, csrf = await portal_session(setup, "0175")
        async with client:
            copied = next(c.value for c in client.cookie_jar if c.key == "__Host-ggk-session")
            async with client.post(
                f"{setup.url}/portal/signout",
                data={"csrf": csrf},
                ssl=setup.ssl_context(),
                allow_redirects=False,
            ) as answer:
                assert answer.status == 303
        config = await topic_config(kafka_bootstrap, f"{prefix}.sessions")
        retention = int(config["retention.ms"])
        assert SESSION_SECONDS * 1000 < retention <= 2 * SESSION_SECONDS * 1000, config
        assert config["cleanup.policy"] == "delete"
        assert int(config["segment.ms"]) < retention, config
        revoked = await topic_records(kafka_bootstrap, f"{prefix}.sessions")
        assert [meta["t"] for _, meta in revoked] == ["session_revoked"]
        assert revoked[0][0] == revoked[0][1]["nonce"].encode()
        events = await topic_records(kafka_bootstrap, f"{prefix}.events")
        assert not [m for _, m in events if m.get("t") == "session_revoked"]
        # a process that was not there at the sign-out: its new view reads the sign-outs
        later = another_process(setup, "late")
        processes.append(await serve(later, tmp_path / "late.log"))
        assert await with_cookie(later, copied) == 303
    finally:
        for process in processes:
            process.terminate()
            await process.wait()
