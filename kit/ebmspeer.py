"""The real ebMS peer (ebms-core 2.20.2 in ../shared/tools/ebms-peer) and a gateway linked to it.

Shared by the peer tests and the ebMS benchmark: starting and driving the peer through its REST
API, the CPAs both sides load, and a plain-HTTP loopback gateway setup (the kit speaks HTTP).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import subprocess
import urllib.parse
import urllib.request
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from gateway import envelope as env
from gateway.config import load as load_config
from gateway.ebms.cpastore import CpaStore
from gateway.ebms.signing import Signer
from kit.ebms import GATEWAY, PEER, Side, make_cpa, save_signer
from kit.gateway import Setup, make_setup, with_delivery
from kit.harness import free_port
from routing.partners import PartnerRegistry

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
KIT = Path(__file__).resolve().parent.parent.parent / "shared" / "tools" / "ebms-peer"
ASYNC_CPA, SYNC_CPA = "CPA_TEST_peer_async", "CPA_TEST_peer_sync"
SIGNED_CPA = "CPA_TEST_peer_signed"
SIGNED_ACK_CPA = "CPA_TEST_peer_signed_ack"
"""osb-rm-s whose reliable channels ask signed acknowledgments (ackSignatureRequested)."""


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
        return list(found) if isinstance(found, list) else []


@contextlib.contextmanager
def started_peer(home: Path, seed: Path) -> Iterator[Peer]:
    """The peer on two free loopback ports, its state in ``home``; ``seed`` is where a first CPA
    (with the peer's own endpoint) is written for its start. Stopped on exit."""
    found = Peer("gwtest", home, free_port(), free_port())
    seed.write_bytes(peer_cpa(ASYNC_CPA, found, 1))
    environment = {**os.environ, "EBMS_HOME": str(home)}
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
        env=environment,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    if started.returncode != 0:
        raise RuntimeError(f"the ebMS peer did not start:\n{started.stdout}{started.stderr}")
    try:
        yield found
    finally:
        subprocess.run(
            [str(KIT / "stop.sh"), found.name],
            env=environment,
            capture_output=True,
            timeout=60,
            check=False,
        )


def peer_cpa(
    cpaid: str,
    peer: Peer,
    gateway_port: int,
    *,
    sync: bool = False,
    gateway_cert: bytes | None = None,
    retry_interval: str = "PT1M",
    peer_port: int | None = None,
    ack_signed: bool = False,
) -> bytes:
    """A CPA between the peer and the gateway; with ``gateway_cert`` osb-rm-s, the peer signing
    with ebms-core's built-in test key (its certificate is in the kit); ``peer_port``: the
    peer's endpoint is there (a ``tests.relay.Relay`` in front of it); ``ack_signed``: signed
    acknowledgments asked both ways."""
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
        ack_signed=ack_signed,
        peer=Side(
            PEER.oin,
            PEER.name,
            PEER.role,
            f"http://127.0.0.1:{peer_port or peer.ebms_port}/ebms",
            peer_cert,
        ),
        gateway=Side(
            GATEWAY.oin,
            GATEWAY.name,
            GATEWAY.role,
            f"http://127.0.0.1:{gateway_port}/ebms",
            gateway_cert,
        ),
    )


def trusted_signer(directory: Path) -> Signer:
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


def prepare(
    tmp_path: Path,
    peer: Peer,
    outbound_cpa: str,
    retry_interval: str = "PT1M",
    *,
    peer_port: int | None = None,
    gateway_port: int | None = None,
    peer_copy: Callable[[bytes], bytes] = lambda cpa: cpa,
) -> PlainSetup:
    """A plain-HTTP loopback gateway setup (the peer kit speaks HTTP) with the three CPAs
    imported on both sides; 0150 is the partner behind the peer's OIN (delivered to over ebMS
    under ``outbound_cpa``), 12345678 pulls its inbox. ``peer_copy`` makes the peer's copy of
    each CPA disagree with ours; ``gateway_port`` puts our endpoint in the CPAs elsewhere (a
    relay in front of several processes)."""
    setup = make_setup(tmp_path / "gw", free_port())
    text = (setup.directory / "partners.toml").read_text()
    text = text.replace('kind = "gemeente"\n', f'kind = "gemeente"\noin = "{PEER.oin}"\n', 1)
    text = with_delivery(text, "0150", f'adapter = "ebms"\ncpa = "{outbound_cpa}"\n')
    text = with_delivery(text, "12345678", 'adapter = "inbox"\n')
    (setup.directory / "partners.toml").write_text(text)
    config = setup.config_path.read_text()
    # the [tls] table left out (an unknown table would be refused, as a typo is)
    config = re.sub(r"^\[tls\]\n(?:(?!\[).*\n)*", "", config, flags=re.M).replace(
        f"port = {setup.port}\n", f"port = {setup.port}\nplain_http = true\n"
    )
    config += f'\n[ebms]\noin = "{GATEWAY.oin}"\ncpa_dir = "cpa"\nloopback_http = true\n'
    config += 'signing_key = "keys/ebms-signing.key"\nsigning_cert = "keys/ebms-signing.crt"\n'
    signer = trusted_signer(setup.directory / "keys")
    setup.config_path.write_text(config)
    loaded = load_config(setup.config_path)
    assert loaded.ebms is not None
    store = CpaStore(loaded.ebms, PartnerRegistry.load(loaded.partners_file))
    for cpaid, sync, cert in (
        (ASYNC_CPA, False, None),
        (SYNC_CPA, True, None),
        (SIGNED_CPA, False, signer.certificate),
        (SIGNED_ACK_CPA, False, signer.certificate),
    ):
        cpa = peer_cpa(
            cpaid,
            peer,
            gateway_port or setup.port,
            sync=sync,
            gateway_cert=cert,
            retry_interval=retry_interval,
            peer_port=peer_port,
            ack_signed=cpaid == SIGNED_ACK_CPA,
        )
        store.add(cpa)
        peer.load_cpa(peer_copy(cpa))
    return PlainSetup(setup.directory, setup.port)


def di01() -> bytes:
    """A WMO301 from 0150 to 12345678 with its own Identificatie (TR056 refuses a reused one)."""
    payload = (
        (SAMPLES / "iwmo" / "wmo301.xml").read_text().replace("WMO301A0001", uuid.uuid4().hex[:12])
    )
    return env.build_di01(
        payload.encode(),
        zender="0150",
        zender_applicatie="DOWRsociaal",
        ontvanger="12345678",
        functie="WMO301",
    )
