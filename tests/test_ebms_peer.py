"""Against a real, independent MSH: ebms-core 2.20.2 (../shared/tools/ebms-peer), both ways.

The peer loads the same CPAs as the gateway and sends through its REST API; it reports DELIVERED
only when our Acknowledgment reached it (async: POSTed to its endpoint; sync: in our HTTP
response). Skips without the kit or Java 17 outside CI; in CI (.ci/run) both are there.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from gateway import envelope as env
from kit.ebms import GATEWAY, PEER, submit_to_0150
from kit.ebmspeer import (
    ASYNC_CPA,
    KIT,
    SIGNED_ACK_CPA,
    SIGNED_CPA,
    SYNC_CPA,
    Peer,
    PlainSetup,
    di01,
    prepare,
    started_peer,
)
from kit.gateway import Setup, another_process, eventually, rest, running, serve, use_kafka
from tests.conftest import missing_kafka_tools, sample
from tests.relay import Relay

pytestmark = pytest.mark.ebms


def _skip_without_kit() -> None:
    missing = None if (KIT / "start.sh").is_file() else f"the ebMS peer kit ({KIT})"
    missing = missing or missing_kafka_tools()  # Java 17+ (and Maven, as for Kafka)
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"the ebMS peer tests need {missing} (.ci/run provides it)")
        pytest.skip(f"the ebMS peer tests need {missing}")


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    _skip_without_kit()
    home = tmp_path_factory.mktemp("ebms-peer")
    with started_peer(home, tmp_path_factory.mktemp("seed") / "cpa.xml") as found:
        yield found


@contextlib.asynccontextmanager
async def _linked(
    tmp_path: Path, peer: Peer, outbound_cpa: str, **options: Any
) -> AsyncIterator[Setup]:
    """:func:`kit.ebmspeer.prepare`, served in this event loop."""
    plain = prepare(tmp_path, peer, outbound_cpa, **options)
    async with running(plain):
        yield plain


@pytest.fixture
async def linked(tmp_path: Path, peer: Peer) -> AsyncIterator[Setup]:
    async with _linked(tmp_path, peer, ASYNC_CPA) as setup:
        yield setup


async def _delivered(peer: Peer, message_id: str) -> str:
    def outcome() -> str | None:
        for event in peer.events():
            if event.get("messageId") == message_id:
                return event.get("type")
        return None

    return str(await eventually(lambda: asyncio.to_thread(outcome), timeout=60, interval=0.5))


@pytest.mark.parametrize("cpaid", [ASYNC_CPA, SYNC_CPA, SIGNED_CPA, SIGNED_ACK_CPA])
async def test_peer_message_is_accepted_and_acknowledged(
    linked: Setup, peer: Peer, cpaid: str
) -> None:
    started = time.monotonic()
    message_id = await asyncio.to_thread(peer.send, cpaid, di01())
    assert await _delivered(peer, message_id) == "DELIVERED"
    _, listing = await rest(linked, "GET", "/api/v1/inbox", token=linked.token("12345678"))
    assert [m["functie"] for m in listing["messages"]] == ["WMO301"]
    assert time.monotonic() - started < 60


async def test_ping_from_the_peer_gets_our_pong(linked: Setup, peer: Peer) -> None:
    path = f"/ebms/ping/{ASYNC_CPA}/from/urn:osb:oin:{PEER.oin}/to/urn:osb:oin:{GATEWAY.oin}"
    await asyncio.to_thread(peer.call, "POST", path)  # raises unless a Pong came back


def _kit_send(linked: Setup, payload: Path, message_id: str) -> str:
    """The kit's hand-built message (its own code, chunked), as the peer's party, sync reply."""
    done = subprocess.run(
        [
            "python3",
            str(KIT / "send_ebms.py"),
            "--url",
            f"{linked.url}/ebms",
            "--file",
            str(payload),
            "--cpa-id",
            SYNC_CPA,
            "--from-oin",
            PEER.oin,
            "--from-role",
            PEER.role,
            "--to-oin",
            GATEWAY.oin,
            "--to-role",
            GATEWAY.role,
            "--message-id",
            message_id,
            "--sync-reply",
            "--chunked",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


async def test_a_resent_message_gets_the_same_ack_and_is_accepted_once(
    linked: Setup, tmp_path: Path
) -> None:
    payload = tmp_path / "di01.xml"
    payload.write_bytes(di01())
    message_id = f"kit-{time.time_ns()}@peer.test"
    first = await asyncio.to_thread(_kit_send, linked, payload, message_id)
    second = await asyncio.to_thread(_kit_send, linked, payload, message_id)
    assert "HTTP 200" in first and "Acknowledgment" in first
    ack = first[first.index("<") :]
    assert second[second.index("<") :] == ack  # the stored ack, byte for byte
    _, listing = await rest(linked, "GET", "/api/v1/inbox", token=linked.token("12345678"))
    assert len(listing["messages"]) == 1


def _wmo305() -> bytes:
    """The WMO305 sample with its own Identificatie (TR056 refuses a reused one)."""
    return sample("iwmo/wmo305.xml").replace("WMO305A0001", uuid.uuid4().hex[:12]).encode()


async def _submit_wmo305(linked: Setup, payload: bytes | None = None) -> str:
    """A WMO305 from 12345678 to 0150 (delivered over ebMS to the peer), with its own
    Identificatie unless ``payload``; its message id."""
    return await submit_to_0150(linked, payload or _wmo305())


async def _delivery_to_peer(linked: Setup, message_id: str) -> dict[str, Any]:
    """The message's delivery to 0150 as its sender sees it."""
    _, view = await rest(
        linked, "GET", f"/api/v1/messages/{message_id}", token=linked.token("12345678")
    )
    deliveries = view.get("deliveries", []) if isinstance(view, dict) else []  # not yet known
    found: dict[str, Any] = next((d for d in deliveries if d["destination"] == "0150"), {})
    return found


async def _finished(linked: Setup, message_id: str, state: str = "delivered") -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        delivery = await _delivery_to_peer(linked, message_id)
        return delivery if delivery.get("state") == state else None

    found: dict[str, Any] = await eventually(reached, timeout=60, interval=0.5)
    return found


@pytest.mark.parametrize("cpaid", [ASYNC_CPA, SYNC_CPA, SIGNED_CPA, SIGNED_ACK_CPA])
async def test_gateway_message_reaches_the_peer_and_is_acknowledged(
    tmp_path: Path, peer: Peer, cpaid: str
) -> None:
    async with _linked(tmp_path, peer, cpaid) as linked:
        before = set(await asyncio.to_thread(peer.inbox))
        payload = _wmo305()
        await _finished(linked, await _submit_wmo305(linked, payload))
        arrived = set(await asyncio.to_thread(peer.inbox)) - before
        assert len(arrived) == 1
        message = await asyncio.to_thread(peer.message, arrived.pop())
        envelope = base64.b64decode(message["dataSources"][0]["content"])
        assert env.parse(etree.fromstring(envelope)).payload == payload
        assert message["properties"]["cpaId"] == cpaid
        assert message["properties"]["action"] == "ggk_Di01"


async def test_a_message_we_refuse_fails_at_the_peer_and_reaches_nobody(
    linked: Setup, peer: Peer
) -> None:
    """XSD-invalid content: our MessageError (DeliveryFailure) reaches the peer, which reports
    the delivery FAILED; nothing is accepted."""
    payload = sample("iwmo/wmo301.xml").replace("WMO301A0001", "X" * 40)  # beyond its length
    invalid = env.build_di01(
        payload.encode(),
        zender="0150",
        zender_applicatie="DOWRsociaal",
        ontvanger="12345678",
        functie="WMO301",
    )
    message_id = await asyncio.to_thread(peer.send, ASYNC_CPA, invalid)
    assert await _delivered(peer, message_id) == "FAILED"
    _, listing = await rest(linked, "GET", "/api/v1/inbox", token=linked.token("12345678"))
    assert listing["messages"] == []


async def test_a_message_error_from_the_peer_dead_letters_our_message(
    tmp_path: Path, peer: Peer
) -> None:
    """The peer's copy of the CPA does not know our action: its MessageError (async, to our
    endpoint) ends the delivery as a dead letter naming the code, without resends."""
    unknown = lambda cpa: cpa.replace(b"ggk_Di01", b"ggk_Xx01")  # noqa: E731
    async with _linked(tmp_path, peer, ASYNC_CPA, peer_copy=unknown) as linked:
        delivery = await _finished(linked, await _submit_wmo305(linked), "dead")
        assert "ValueNotRecognized" in delivery["last_error"]
        assert delivery["attempts"] == 1


async def test_the_peer_unreachable_then_back_gets_the_message_once(
    tmp_path: Path, peer: Peer
) -> None:
    """The link is down (connections refused): the gateway resends on the CPA's RetryInterval
    until the peer acknowledges; the peer holds the message once."""
    relay = Relay(peer.ebms_port)
    async with _linked(
        tmp_path, peer, ASYNC_CPA, retry_interval="PT2S", peer_port=relay.port
    ) as linked:
        before = set(await asyncio.to_thread(peer.inbox))
        message_id = await _submit_wmo305(linked)
        await eventually(
            lambda: _attempted(linked, message_id, at_least=2), timeout=60, interval=0.2
        )
        await relay.up()
        try:
            await _finished(linked, message_id)
        finally:
            await relay.down()
        assert len(set(await asyncio.to_thread(peer.inbox)) - before) == 1


async def test_a_lost_acknowledgment_makes_us_resend_and_the_peer_keeps_one(
    tmp_path: Path, peer: Peer
) -> None:
    """Sync CPA: the peer got the message but its Acknowledgment never came back. The gateway
    resends the identical message; the peer eliminates the duplicate and acknowledges again."""
    relay = Relay(peer.ebms_port)
    relay.lose_answers = 1
    await relay.up()
    try:
        async with _linked(
            tmp_path, peer, SYNC_CPA, retry_interval="PT2S", peer_port=relay.port
        ) as linked:
            before = set(await asyncio.to_thread(peer.inbox))
            delivery = await _finished(linked, await _submit_wmo305(linked))
            assert delivery["attempts"] >= 2 and relay.connections >= 2
            assert len(set(await asyncio.to_thread(peer.inbox)) - before) == 1
    finally:
        await relay.down()


async def _attempted(linked: Setup, message_id: str, at_least: int) -> bool:
    delivery = await _delivery_to_peer(linked, message_id)
    return int(delivery.get("attempts", 0)) >= at_least and delivery.get("state") != "delivered"


async def test_kill_9_while_receiving_loses_nothing_and_accepts_each_message_once(
    tmp_path: Path, peer: Peer
) -> None:
    """The gateway is killed (-9) while the peer's messages arrive: some are accepted and not
    yet acknowledged, some not received at all. The peer resends on its CPA schedule; after the
    restart every message is acknowledged and accepted exactly once."""
    setup = prepare(tmp_path, peer, ASYNC_CPA, retry_interval="PT3S")
    log = tmp_path / "gateway.log"
    gateway = await serve(setup, log)
    sent: list[str] = []
    try:
        for _ in range(6):
            sent.append(await asyncio.to_thread(peer.send, ASYNC_CPA, di01()))
        # killed as soon as the first is accepted: the rest are on their way or not yet sent
        await eventually(lambda: b'"ebms.accepted"' in log.read_bytes(), timeout=60, interval=0.01)
    finally:
        os.kill(gateway.pid, signal.SIGKILL)
        await gateway.wait()
    gateway = await serve(setup, log)
    try:
        outcomes = [await _delivered(peer, message_id) for message_id in sent]
        assert outcomes == ["DELIVERED"] * len(sent)
        _, listing = await rest(setup, "GET", "/api/v1/inbox", token=setup.token("12345678"))
        assert len(listing["messages"]) == len(sent)  # none lost, none twice
    finally:
        os.kill(gateway.pid, signal.SIGTERM)
        await gateway.wait()


def _delivered_by(logs: dict[int, Path], message_id: str) -> int | None:
    """The port of the process whose log says it delivered ``message_id``."""
    for port, log in logs.items():
        for line in log.read_text(errors="replace").splitlines():
            if '"delivery.delivered"' not in line:
                continue
            event = json.loads(line)
            if (event["message_id"], event["destination"]) == (message_id, "0150"):
                return port
    return None


@pytest.mark.kafka
async def test_on_kafka_an_answer_reaching_another_process_ends_the_delivery(
    tmp_path: Path, peer: Peer, kafka_bootstrap: str
) -> None:
    """Two processes on Kafka. The peer answers the CPA's one endpoint, a relay we point at the
    process that does not send: its Acknowledgment crosses the cluster and ends the delivery at
    the first attempt (without it, the next attempt would follow a minute later)."""
    relay = Relay(0)
    setup = prepare(tmp_path, peer, ASYNC_CPA, gateway_port=relay.port)
    use_kafka(setup, kafka_bootstrap, f"t{uuid.uuid4().hex[:8]}")
    second = another_process(setup, "b")
    other = PlainSetup(second.directory, second.port, second.config_name)
    logs = {setup.port: tmp_path / "a.log", other.port: tmp_path / "b.log"}
    processes: list[asyncio.subprocess.Process] = []
    crossed = 0
    try:
        # started inside the try: when the second cannot start, the first is still stopped
        processes.append(await serve(setup, logs[setup.port]))
        processes.append(await serve(other, logs[other.port]))
        await relay.up()
        await relay.retarget(setup.port)
        for _ in range(4):  # the first rounds may see partitions move while the group settles
            shared_before = logs[relay.target].read_text().count('"ebms.answer_shared"')
            message_id = await _submit_wmo305(setup)
            delivery = await _finished(setup, message_id)
            sender = await eventually(partial(_delivered_by, logs, message_id), timeout=30)
            if sender != relay.target:  # the answer went to the other process
                assert delivery["attempts"] == 1, delivery
                shared = logs[relay.target].read_text().count('"ebms.answer_shared"')
                assert shared == shared_before + 1
                crossed += 1
                if crossed == 2:
                    break
            await relay.retarget(other.port if sender == setup.port else setup.port)
        assert crossed == 2
    finally:
        await relay.down()
        for process in processes:
            process.terminate()
            await process.wait()


@pytest.mark.kafka
@pytest.mark.slow
async def test_on_kafka_a_resend_after_kill_9_gets_the_same_ack_from_another_process(
    tmp_path: Path, peer: Peer, kafka_bootstrap: str
) -> None:
    """The drill of issue 32: two processes on Kafka. One receives a message and acknowledges
    it, and is killed (-9); the partner's MSH, without that acknowledgment, resends the
    identical message to the other. It is a duplicate there too: answered with the same
    Acknowledgment, byte for byte, and still one message delivered. (The kit's ebMS client
    plays the partner's MSH: it resends when we say, ebms-core only on its schedule.)"""
    setup = prepare(tmp_path, peer, ASYNC_CPA)
    use_kafka(setup, kafka_bootstrap, f"t{uuid.uuid4().hex[:8]}")
    second = another_process(setup, "b")
    other = PlainSetup(second.directory, second.port, second.config_name)
    payload = tmp_path / "di01.xml"
    payload.write_bytes(di01())
    message_id = f"kit-{time.time_ns()}@peer.test"
    processes: list[asyncio.subprocess.Process] = []
    try:
        processes.append(await serve(setup, tmp_path / "a.log"))
        processes.append(await serve(other, tmp_path / "b.log"))
        first = await asyncio.to_thread(_kit_send, setup, payload, message_id)
        assert "HTTP 200" in first and "Acknowledgment" in first
        os.kill(processes[0].pid, signal.SIGKILL)
        await processes[0].wait()
        again = await asyncio.to_thread(_kit_send, other, payload, message_id)
        assert again[again.index("<") :] == first[first.index("<") :]  # the stored ack
        assert '"ebms.duplicate"' in (tmp_path / "b.log").read_text()

        async def inbox() -> list[dict[str, Any]] | None:
            _, listing = await rest(other, "GET", "/api/v1/inbox", token=other.token("12345678"))
            return listing["messages"] or None  # routed by the partition's next owner

        assert len(await eventually(inbox, timeout=60, interval=0.5)) == 1
    finally:
        for process in processes:
            if process.returncode is None:
                process.terminate()
                await process.wait()
