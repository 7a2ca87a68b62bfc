"""The real ebMS peer (ebms-core 2.20.2 in ../shared/tools/ebms-peer) and a gateway linked to it.

Shared by the peer tests and the ebMS benchmark: starting and driving the peer through its REST
API, the CPAs both sides load, and a plain-HTTP loopback gateway setup (the kit speaks HTTP).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import subprocess
import time
import urllib.error
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
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from gateway import envelope as env
from gateway.config import load as load_config
from gateway.devpki import DevCA, Issued
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
    scheme: str = "http"
    """``https`` for a peer with two-way TLS (started with :class:`PeerPki`)."""

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

    def send(
        self, cpaid: str, payload: bytes, action: str = "ggk_Di01", ref_to: str | None = None
    ) -> str:
        """Send through the peer's REST API; ``ref_to``: its RefToMessageId."""
        body: dict[str, Any] = {
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
        if ref_to is not None:
            body["properties"]["refToMessageId"] = ref_to
        try:
            return str(self.call("POST", "/ebms/messages", body))
        except urllib.error.HTTPError as exc:
            # The peer's own REST call failed inside the peer (seen once in a CI run: a 500
            # from its sendMessage just after start, its log naming no cause). Callers wait
            # only for the message ids they got back, so one more try cannot be counted
            # twice; a second 500 is raised.
            if exc.code != 500:
                raise
            time.sleep(1.0)
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
def started_peer(
    home: Path,
    seed: Path,
    *,
    name: str = "gwtest",
    tls: PeerPki | None = None,
    tls_extra: tuple[str, ...] = (),
) -> Iterator[Peer]:
    """The peer on two free loopback ports, its state in ``home``; ``seed`` is where a first CPA
    (with the peer's own endpoint) is written for its start. With ``tls`` its ebMS endpoint is
    HTTPS and requires a client certificate (:class:`PeerPki`; ``tls_extra``: more ebms-core
    properties). Stopped on exit."""
    found = Peer(name, home, free_port(), free_port(), "https" if tls else "http")
    seed.write_bytes(peer_cpa(ASYNC_CPA, found, 1))
    environment = {**os.environ, "EBMS_HOME": str(home)}
    props = []
    if tls is not None:
        props = ["--props", str(tls.properties(home / f"{name}.properties", name, tls_extra))]
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
            *props,
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
    gateway_url: str | None = None,
) -> bytes:
    """A CPA between the peer and the gateway; with ``gateway_cert`` osb-rm-s, the peer signing
    with ebms-core's built-in test key (its certificate is in the kit); ``peer_port``: the
    peer's endpoint is there (a ``tests.relay.Relay`` in front of it); ``ack_signed``: signed
    acknowledgments asked both ways; ``gateway_url``: our endpoint (default: plain HTTP on
    ``gateway_port``). The peer's endpoint has the peer's scheme."""
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
            f"{peer.scheme}://127.0.0.1:{peer_port or peer.ebms_port}/ebms",
            peer_cert,
        ),
        gateway=Side(
            GATEWAY.oin,
            GATEWAY.name,
            GATEWAY.role,
            gateway_url or f"http://127.0.0.1:{gateway_port}/ebms",
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
    setup.config_path.write_text(config)
    _import_cpas(
        setup,
        peer,
        retry_interval,
        peer_port=peer_port,
        gateway_url=f"http://127.0.0.1:{gateway_port or setup.port}/ebms",
        peer_copy=peer_copy,
    )
    return PlainSetup(setup.directory, setup.port)


def _import_cpas(
    setup: Setup,
    peer: Peer,
    retry_interval: str,
    *,
    gateway_url: str,
    peer_port: int | None = None,
    peer_copy: Callable[[bytes], bytes] = lambda cpa: cpa,
) -> None:
    """The four test CPAs imported on both sides (the gateway signing with the key the peer
    trusts, :func:`trusted_signer`)."""
    signer = trusted_signer(setup.directory / "keys")
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
            0,
            sync=sync,
            gateway_cert=cert,
            retry_interval=retry_interval,
            peer_port=peer_port,
            ack_signed=cpaid == SIGNED_ACK_CPA,
            gateway_url=gateway_url,
        )
        store.add(cpa)
        peer.load_cpa(peer_copy(cpa))


PASSWORD = b"password"
"""Of the peer's PKCS12 key and trust stores (test material only)."""


def _keystore(path: Path, issued: Issued, ca: x509.Certificate) -> Path:
    """A PKCS12 key store (key, certificate and CA chain), as ebms-core reads it."""
    key = serialization.load_pem_private_key(issued.key.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    cert = x509.load_pem_x509_certificate(issued.cert.read_bytes())
    path.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"key", key, cert, [ca], serialization.BestAvailableEncryption(PASSWORD)
        )
    )
    return path


@dataclass
class PeerPki:
    """A test CA shared by a TLS peer and the gateways linked to it (the demo CA's code,
    gateway/devpki.py): the peer's server and client certificates in PKCS12 stores, its
    trust store (this CA, and ebms-core's own test certificate, which its XML-signature
    checks need), and certificates for each gateway."""

    ca: DevCA

    @classmethod
    def make(cls, directory: Path) -> PeerPki:
        ca = DevCA(directory)
        ca.write_crl()
        return cls(ca)

    @property
    def directory(self) -> Path:
        return self.ca.directory

    def peer_client(self, name: str) -> Path:
        """The certificate peer ``name`` presents as a client: partner 0150's MSH."""
        return self.directory / f"{name}-client.crt"

    def properties(self, path: Path, name: str, extra: tuple[str, ...] = ()) -> Path:
        """The ebms-core properties of two-way TLS (README, "HTTPS with client
        certificates") for peer ``name``, its stores written beside the CA; ``extra``:
        further property lines (protocols, suites)."""
        ca = self.ca.cert
        server = self.ca.issue(f"{name}-server", "ebms-core peer", server=True)
        client = self.ca.issue(f"{name}-client", "ebms-core peer", oin=PEER.oin)
        stores = {
            "keystore": _keystore(self.directory / f"{name}-server.p12", server, ca),
            "client.keystore": _keystore(self.directory / f"{name}-client.p12", client, ca),
        }
        core = x509.load_pem_x509_certificate(
            (KIT / "certs" / "ebms-core-localhost.pem").read_bytes()
        )
        trust = self.directory / "peer-trust.p12"
        trust.write_bytes(
            pkcs12.serialize_java_truststore(
                [
                    pkcs12.PKCS12Certificate(ca, b"test-ca"),
                    pkcs12.PKCS12Certificate(core, b"localhost"),
                ],
                serialization.BestAvailableEncryption(PASSWORD),
            )
        )
        stores["truststore"] = trust
        lines = ["ebms.ssl=true", "https.requireClientAuthentication=true"]
        for prefix, store in stores.items():
            lines += [
                f"{prefix}.type=PKCS12",
                f"{prefix}.path={store}",
                f"{prefix}.password={PASSWORD.decode()}",
            ]
        lines.append(f"client.keystore.keyPassword={PASSWORD.decode()}")
        lines += extra
        path.write_text("\n".join(lines) + "\n")
        return path

    def gateway(self, stem: str, client: str = "good") -> tuple[Issued, Issued]:
        """A gateway's ebMS server and client certificates; ``client``: ``good``,
        ``expired`` or ``foreign`` (from a CA the peer does not trust)."""
        server = self.ca.issue(f"{stem}-server", "ggk-gateway", server=True)
        if client == "foreign":
            rogue = DevCA(self.directory / f"{stem}-rogue")
            return server, rogue.issue("client", "ggk-gateway", oin=GATEWAY.oin)
        past = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
        issued = self.ca.issue(
            f"{stem}-client",
            "ggk-gateway",
            oin=GATEWAY.oin,
            not_after=past if client == "expired" else None,
        )
        return server, issued


def prepare_tls(
    tmp_path: Path,
    peer: Peer,
    pki: PeerPki,
    outbound_cpa: str,
    retry_interval: str = "PT1M",
    *,
    client: str = "good",
) -> Setup:
    """:func:`prepare` over two-way TLS: the gateway's ``/ebms`` on an ``[ebms] listen``
    listener that requires a client certificate, with certificates of ``pki`` (which the peer
    trusts) and ``pki``'s CA as the partner's anchor (CRL included); 0150 is identified by the
    peer's client certificate only. ``client``: see :meth:`PeerPki.gateway`. Token callers
    keep the ``ggk init`` listener."""
    setup = make_setup(tmp_path / "gw", free_port())
    text = (setup.directory / "partners.toml").read_text()
    fingerprint = hashlib.sha256(
        x509.load_pem_x509_certificate(pki.peer_client(peer.name).read_bytes()).public_bytes(
            serialization.Encoding.DER
        )
    ).hexdigest()
    blocks = text.split("[[partner]]")
    for i, block in enumerate(blocks):
        if 'id = "0150"' in block:
            block = re.sub(r'cert_sha256 = "[0-9a-f]+"', f'cert_sha256 = "{fingerprint}"', block)
            blocks[i] = block.replace(
                'kind = "gemeente"\n', f'kind = "gemeente"\noin = "{PEER.oin}"\n', 1
            )
    text = "[[partner]]".join(blocks)
    text = with_delivery(text, "0150", f'adapter = "ebms"\ncpa = "{outbound_cpa}"\n')
    text = with_delivery(text, "12345678", 'adapter = "inbox"\n')
    (setup.directory / "partners.toml").write_text(text)
    server, ours = pki.gateway(f"gw{setup.port}", client)
    listen = free_port()
    setup.config_path.write_text(
        setup.config_path.read_text()
        + f'\n[ebms]\noin = "{GATEWAY.oin}"\ncpa_dir = "cpa"\n'
        + f'listen = "127.0.0.1:{listen}"\n'
        + f'trust = "{pki.ca.cert_path}"\ncrl = "{pki.directory / "crl.pem"}"\n'
        + f'client_cert = "{ours.cert}"\nclient_key = "{ours.key}"\n'
        + f'server_cert = "{server.cert}"\nserver_key = "{server.key}"\n'
        + 'signing_key = "keys/ebms-signing.key"\nsigning_cert = "keys/ebms-signing.crt"\n'
    )
    trusted_signer(setup.directory / "keys")  # the signing files exist before the load
    _import_cpas(setup, peer, retry_interval, gateway_url=f"https://127.0.0.1:{listen}/ebms")
    return setup


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
