"""Against a real, independent MSH: ebms-core 2.20.2 (../shared/tools/ebms-peer), peer → gateway.

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
import urllib.parse
import urllib.request
import uuid
import zipfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from lxml import etree

from gateway import envelope as env
from gateway.config import load as load_config
from gateway.ebms.cpastore import CpaStore
from gateway.ebms.signing import Signer
from routing.partners import PartnerRegistry
from tests.conftest import missing_kafka_tools, sample
from tests.ebmskit import GATEWAY, PEER, Side, make_cpa, save_signer
from tests.gatewaykit import (
    Setup,
    _delivery,
    eventually,
    free_port,
    make_setup,
    rest,
    running,
    serve,
)

KIT = Path(__file__).resolve().parent.parent.parent / "shared" / "tools" / "ebms-peer"
pytestmark = pytest.mark.ebms
ASYNC_CPA, SYNC_CPA = "CPA_TEST_peer_async", "CPA_TEST_peer_sync"
SIGNED_CPA = "CPA_TEST_peer_signed"


def _skip_without_kit() -> None:
    missing = None if (KIT / "start.sh").is_file() else f"the ebMS peer kit ({KIT})"
    missing = missing or missing_kafka_tools()  # Java 17+ (and Maven, as for Kafka)
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"the ebMS peer tests need {missing} (.ci/run provides it)")
        pytest.skip(f"the ebMS peer tests need {missing}")


@dataclass
class Peer:
    name: str
    home: Path
    web_port: int
    ebms_port: int

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.web_port}/service/rest/v19"

    def call(self, method: str, path: str, body: object = None) -> object:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.api}{path}",
            data=data,
            method=method,
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json, text/plain, */*",
            },
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            raw = response.read()
        return json.loads(raw) if raw.strip().startswith((b"{", b"[")) else raw.decode()

    def load_cpa(self, cpa: bytes) -> None:
        request = urllib.request.Request(
            f"{self.api}/cpas?overwrite=true",
            data=cpa,
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        urllib.request.urlopen(request, timeout=60).read()

    def send(self, cpaid: str, payload: bytes, action: str = "ggk_Di01") -> str:
        body = {
            "properties": {
                "cpaId": cpaid,
                "fromPartyId": f"urn:osb:oin:{PEER.oin}",
                "fromRole": PEER.role,
                "toPartyId": f"urn:osb:oin:{GATEWAY.oin}",
                "toRole": GATEWAY.role,
                "service": "urn:osb:services:TEST:GgkGateway:1:0",
                "action": action,
            },
            "dataSources": [
                {
                    "name": "envelop.xml",
                    "contentType": "application/xml",
                    "content": base64.b64encode(payload).decode(),
                }
            ],
        }
        return str(self.call("POST", "/ebms/messages", body))

    def inbox(self) -> list[str]:
        found = self.call("GET", "/ebms/messages/unprocessed")
        return [str(m) for m in found] if isinstance(found, list) else []

    def message(self, message_id: str) -> dict[str, Any]:
        found = self.call("GET", f"/ebms/messages/{urllib.parse.quote(message_id, safe='')}")
        assert isinstance(found, dict)
        return found

    def events(self) -> list[dict[str, str]]:
        found = self.call("GET", "/ebms/events/unprocessed?eventTypes=DELIVERED&eventTypes=FAILED")
        return list(found) if isinstance(found, list) else []  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    _skip_without_kit()
    home = tmp_path_factory.mktemp("ebms-peer")
    found = Peer("gwtest", home, free_port(), free_port())
    seed = tmp_path_factory.mktemp("seed") / "cpa.xml"
    seed.write_bytes(_cpa(ASYNC_CPA, found, 1))  # any CPA with the peer's own endpoint
    started = subprocess.run(
        [
            str(KIT / "start.sh"),
            "--name",
            found.name,
            "--cpa",
            str(seed),
            "--web-port",
            str(found.web_port),
            "--ebms-port",
            str(found.ebms_port),
        ],
        env={**os.environ, "EBMS_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield found
    finally:
        subprocess.run(
            [str(KIT / "stop.sh"), found.name],
            env={**os.environ, "EBMS_HOME": str(home)},
            capture_output=True,
            timeout=60,
            check=False,
        )


def _cpa(
    cpaid: str,
    peer: Peer,
    gateway_port: int,
    *,
    sync: bool = False,
    gateway_cert: bytes | None = None,
    retry_interval: str = "PT1M",
) -> bytes:
    """A CPA between the peer and the gateway; with ``gateway_cert`` osb-rm-s, the peer signing
    with ebms-core's built-in test key (its certificate is in the kit)."""
    peer_cert = None
    if gateway_cert is not None:
        pem = (KIT / "certs" / "ebms-core-localhost.pem").read_bytes()
        peer_cert = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    return make_cpa(
        "osb-rm-s" if gateway_cert else "osb-rm",
        cpaid=cpaid,
        sync=sync,
        retries=10,
        retry_interval=retry_interval,
        peer=Side(
            PEER.oin, PEER.name, PEER.role, f"http://127.0.0.1:{peer.ebms_port}/ebms", peer_cert
        ),
        gateway=Side(
            GATEWAY.oin,
            GATEWAY.name,
            GATEWAY.role,
            f"http://127.0.0.1:{gateway_port}/ebms",
            gateway_cert,
        ),
    )


def _trusted_signer(directory: Path) -> Signer:
    """The key ebms-core's default truststore trusts (its built-in test keystore, from the
    kit's jar at run time): the peer verifies signatures only with certificates it trusts."""
    with zipfile.ZipFile(KIT / "ebms-admin-2.20.2.jar") as jar:
        key, cert, _ = pkcs12.load_key_and_certificates(
            jar.read("nl/clockwork/ebms/keystore.p12"), b"password"
        )
    assert isinstance(key, rsa.RSAPrivateKey) and cert is not None
    return save_signer(directory, "ebms-signing", key, cert)


class PlainSetup(Setup):
    """The same gateway setup served over plain HTTP on loopback."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _prepare(
    tmp_path: Path, peer: Peer, outbound_cpa: str, retry_interval: str = "PT1M"
) -> PlainSetup:
    """A plain-HTTP loopback gateway setup (the peer kit speaks HTTP) with the three CPAs
    imported on both sides; 0150 is the partner behind the peer's OIN (delivered to over ebMS
    under ``outbound_cpa``), 12345678 pulls its inbox."""
    setup = make_setup(tmp_path / "gw", free_port())
    text = (setup.directory / "partners.toml").read_text()
    text = text.replace('kind = "gemeente"\n', f'kind = "gemeente"\noin = "{PEER.oin}"\n', 1)
    text = _delivery(text, "0150", f'adapter = "ebms"\ncpa = "{outbound_cpa}"\n')
    text = _delivery(text, "12345678", 'adapter = "inbox"\n')
    (setup.directory / "partners.toml").write_text(text)
    config = setup.config_path.read_text()
    config = config.replace("[tls]", "[unused_tls]").replace(
        f"port = {setup.port}\n", f"port = {setup.port}\nplain_http = true\n"
    )
    config += f'\n[ebms]\noin = "{GATEWAY.oin}"\ncpa_dir = "cpa"\nloopback_http = true\n'
    config += 'signing_key = "keys/ebms-signing.key"\nsigning_cert = "keys/ebms-signing.crt"\n'
    signer = _trusted_signer(setup.directory / "keys")
    setup.config_path.write_text(config)
    loaded = load_config(setup.config_path)
    assert loaded.ebms is not None
    store = CpaStore(loaded.ebms, PartnerRegistry.load(loaded.partners_file))
    for cpaid, sync, cert in (
        (ASYNC_CPA, False, None),
        (SYNC_CPA, True, None),
        (SIGNED_CPA, False, signer.certificate),
    ):
        cpa = _cpa(
            cpaid, peer, setup.port, sync=sync, gateway_cert=cert, retry_interval=retry_interval
        )
        store.add(cpa)
        peer.load_cpa(cpa)
    return PlainSetup(setup.directory, setup.port)


@contextlib.asynccontextmanager
async def _linked(tmp_path: Path, peer: Peer, outbound_cpa: str) -> AsyncIterator[Setup]:
    """:func:`_prepare`, served in this event loop."""
    plain = _prepare(tmp_path, peer, outbound_cpa)
    async with running(plain):
        yield plain


@pytest.fixture
async def linked(tmp_path: Path, peer: Peer) -> AsyncIterator[Setup]:
    async with _linked(tmp_path, peer, ASYNC_CPA) as setup:
        yield setup


def _di01() -> bytes:
    """A WMO301 from 0150 to 12345678 with its own Identificatie (TR056 refuses a reused one)."""
    payload = sample("iwmo/wmo301.xml").replace("WMO301A0001", uuid.uuid4().hex[:12])
    return env.build_di01(
        payload.encode(),
        zender="0150",
        zender_applicatie="DOWRsociaal",
        ontvanger="12345678",
        functie="WMO301",
    )


async def _delivered(peer: Peer, message_id: str) -> str:
    def outcome() -> str | None:
        for event in peer.events():
            if event.get("messageId") == message_id:
                return event.get("type")
        return None

    return str(await eventually(lambda: asyncio.to_thread(outcome), timeout=60, interval=0.5))


@pytest.mark.parametrize("cpaid", [ASYNC_CPA, SYNC_CPA, SIGNED_CPA])
async def test_peer_message_is_accepted_and_acknowledged(
    linked: Setup, peer: Peer, cpaid: str
) -> None:
    started = time.monotonic()
    message_id = await asyncio.to_thread(peer.send, cpaid, _di01())
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
    payload.write_bytes(_di01())
    message_id = f"kit-{time.time_ns()}@peer.test"
    first = await asyncio.to_thread(_kit_send, linked, payload, message_id)
    second = await asyncio.to_thread(_kit_send, linked, payload, message_id)
    assert "HTTP 200" in first and "Acknowledgment" in first
    ack = first[first.index("<") :]
    assert second[second.index("<") :] == ack  # the stored ack, byte for byte
    _, listing = await rest(linked, "GET", "/api/v1/inbox", token=linked.token("12345678"))
    assert len(listing["messages"]) == 1


@pytest.mark.parametrize("cpaid", [ASYNC_CPA, SYNC_CPA, SIGNED_CPA])
async def test_gateway_message_reaches_the_peer_and_is_acknowledged(
    tmp_path: Path, peer: Peer, cpaid: str
) -> None:
    async with _linked(tmp_path, peer, cpaid) as linked:
        before = set(await asyncio.to_thread(peer.inbox))
        status, accepted = await rest(
            linked,
            "POST",
            "/api/v1/messages",
            token=linked.token("12345678"),
            data=sample("iwmo/wmo305.xml").encode(),
            headers={"Content-Type": "application/xml"},
        )
        assert status == 202, accepted

        async def delivered() -> bool:
            _, view = await rest(
                linked,
                "GET",
                f"/api/v1/messages/{accepted['id']}",
                token=linked.token("12345678"),
            )
            return any(
                d["destination"] == "0150" and d["state"] == "delivered" for d in view["deliveries"]
            )

        await eventually(delivered, timeout=60, interval=0.5)
        arrived = set(await asyncio.to_thread(peer.inbox)) - before
        assert len(arrived) == 1
        message = await asyncio.to_thread(peer.message, arrived.pop())
        envelope = base64.b64decode(message["dataSources"][0]["content"])
        assert env.parse(etree.fromstring(envelope)).payload == sample("iwmo/wmo305.xml").encode()
        assert message["properties"]["cpaId"] == cpaid
        assert message["properties"]["action"] == "ggk_Di01"


async def test_kill_9_while_receiving_loses_nothing_and_accepts_each_message_once(
    tmp_path: Path, peer: Peer
) -> None:
    """The gateway is killed (-9) while the peer's messages arrive: some are accepted and not
    yet acknowledged, some not received at all. The peer resends on its CPA schedule; after the
    restart every message is acknowledged and accepted exactly once."""
    setup = _prepare(tmp_path, peer, ASYNC_CPA, retry_interval="PT3S")
    log = tmp_path / "gateway.log"
    gateway = await serve(setup, log)
    sent: list[str] = []
    try:
        for _ in range(6):
            sent.append(await asyncio.to_thread(peer.send, ASYNC_CPA, _di01()))
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
