"""Kit for the ebMS2 tests: test CPAs, a partner MSH's endpoint, a gateway linked by a CPA.

Test CPAs: two parties, the GGk envelope actions, one Digikoppeling profile.

Written from the facts of OASIS ebXML CPPA 2.0 and Logius' Digikoppeling ebMS2 CPA rules
(element order of cpp-cpa-2_0.xsd, the DK BusinessTransactionCharacteristics, a signal channel
and an action channel per party). Test OINs and test values only; never an official CPA.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import ssl
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree

from gateway import envelope as env
from gateway.config import load as load_config
from gateway.ebms import compose
from gateway.ebms import message as ebms
from gateway.ebms.cpa import CPPA, DS
from gateway.ebms.cpastore import CpaStore
from gateway.ebms.signing import Algorithms, Signer
from kit.gateway import Setup, make_setup, rest, with_delivery
from kit.harness import free_port
from routing.partners import PartnerRegistry

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
XLINK = "http://www.w3.org/1999/xlink"
ACTIONS = ("ggk_Di01", "ggk_Du01", "Fo01")
SERVICE = ("urn:osb:services", "TEST:GgkGateway:1:0")


@dataclass(frozen=True, slots=True)
class Side:
    """One party of a test CPA."""

    oin: str
    name: str
    role: str
    endpoint: str
    signing_der: bytes | None = None


GATEWAY = Side("00000002222222222000", "PythonGateway", "Gemeente", "http://127.0.0.1:18099/ebms")
PEER = Side("00000001111111111000", "EbmsCorePeer", "GGK", "http://127.0.0.1:18888/ebms")


def _e(
    parent: etree._Element | None, local: str, text: str | None = None, /, **attrs: str
) -> etree._Element:
    """A cpp-cpa element with qualified attributes (xlink:type/href on the xlink carriers)."""
    tag = f"{{{CPPA}}}{local}"
    el = etree.Element(tag) if parent is None else etree.SubElement(parent, tag)
    xlinked = local in ("PartyRef", "ProcessSpecification", "Role")
    for key, value in attrs.items():
        ns = XLINK if key in ("type", "href") and xlinked else CPPA
        el.set(f"{{{ns}}}{key}", value)
    if text is not None:
        el.text = text
    return el


def _party(
    root: etree._Element,
    me: Side,
    other_prefix: str,
    prefix: str,
    profile: str,
    sync: bool,
    retries: int = 3,
    retry_interval: str = "PT1M",
    ack_signed: bool = False,
) -> None:
    reliable = profile.startswith("osb-rm")
    signed = profile.endswith("-s")
    info = _e(
        root,
        "PartyInfo",
        partyName=me.name,
        defaultMshChannelId=f"{prefix}_signal",
        defaultMshPackageId="MshSignalPackage",
    )
    _e(info, "PartyId", me.oin, type="urn:osb:oin")
    _e(info, "PartyRef", type="simple", href="http://example.invalid/party")
    role = _e(info, "CollaborationRole")
    _e(
        role,
        "ProcessSpecification",
        name="TEST_GgkGateway",
        version="1.0",
        type="simple",
        href="http://example.invalid/process",
    )
    _e(role, "Role", name=me.role, type="simple", href="http://example.invalid/role")
    binding = _e(role, "ServiceBinding")
    _e(binding, "Service", SERVICE[1], type=SERVICE[0])
    auth = "transient-and-persistent" if signed else "transient"
    for can, mine, theirs in (("CanSend", "S", "R"), ("CanReceive", "R", "S")):
        for action in ACTIONS:
            el = _e(binding, can)
            this = _e(
                el,
                "ThisPartyActionBinding",
                id=f"{prefix}_{mine}_{action}",
                action=action,
                packageId="MessagePackage",
            )
            _e(
                this,
                "BusinessTransactionCharacteristics",
                isAuthenticated=auth,
                isAuthorizationRequired="true",
                isConfidential="transient",
                isIntelligibleCheckRequired="false",
                isNonRepudiationReceiptRequired="false",
                isNonRepudiationRequired="true" if signed else "false",
                isTamperProof=auth,
                timeToPerform="P2D",
            )
            _e(this, "ChannelId", f"{prefix}_action")
            _e(el, "OtherPartyActionBinding", f"{other_prefix}_{theirs}_{action}")
    if signed:
        assert me.signing_der is not None, "a signed profile needs the party's certificate"
        cert = _e(info, "Certificate", certId=f"{prefix}_cert")
        key_info = etree.SubElement(cert, f"{{{DS}}}KeyInfo")
        x509 = etree.SubElement(key_info, f"{{{DS}}}X509Data")
        etree.SubElement(x509, f"{{{DS}}}X509Certificate").text = base64.b64encode(
            me.signing_der
        ).decode()
        security = _e(info, "SecurityDetails", securityId=f"{prefix}_security")
        anchors = _e(security, "TrustAnchors")
        _e(anchors, "AnchorCertificateRef", certId=f"{prefix}_cert")
    for channel, rm in ((f"{prefix}_signal", False), (f"{prefix}_action", reliable)):
        dc = _e(
            info,
            "DeliveryChannel",
            channelId=channel,
            transportId=f"{prefix}_transport",
            docExchangeId=f"{channel}_dx",
        )
        _e(
            dc,
            "MessagingCharacteristics",
            syncReplyMode="mshSignalsOnly" if sync else "none",
            ackRequested="always" if rm else "never",
            ackSignatureRequested="always" if rm and ack_signed else "never",
            duplicateElimination="always" if rm else "never",
            actor="urn:oasis:names:tc:ebxml-msg:actor:toPartyMSH",
        )
    transport = _e(info, "Transport", transportId=f"{prefix}_transport")
    sender = _e(transport, "TransportSender")
    _e(sender, "TransportProtocol", "HTTP", version="1.1")
    receiver = _e(transport, "TransportReceiver")
    _e(receiver, "TransportProtocol", "HTTP", version="1.1")
    _e(receiver, "Endpoint", uri=me.endpoint, type="allPurpose")
    for channel, rm in ((f"{prefix}_signal", False), (f"{prefix}_action", reliable)):
        dx = _e(info, "DocExchange", docExchangeId=f"{channel}_dx")
        for side in ("ebXMLSenderBinding", "ebXMLReceiverBinding"):
            b = _e(dx, side, version="2.0")
            if rm:
                r = _e(b, "ReliableMessaging")
                _e(r, "Retries", str(retries))
                _e(r, "RetryInterval", retry_interval)
                _e(r, "MessageOrderSemantics", "NotGuaranteed")
                _e(b, "PersistDuration", "PT10M")
            if signed and side == "ebXMLSenderBinding":
                nr = _e(b, "SenderNonRepudiation")
                _e(nr, "NonRepudiationProtocol", "http://www.w3.org/2000/09/xmldsig#")
                _e(nr, "HashFunction", "http://www.w3.org/2001/04/xmlenc#sha256")
                _e(nr, "SignatureAlgorithm", "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256")
                _e(nr, "SigningCertificateRef", certId=f"{prefix}_cert")
            elif signed:
                nr = _e(b, "ReceiverNonRepudiation")
                _e(nr, "NonRepudiationProtocol", "http://www.w3.org/2000/09/xmldsig#")
                _e(nr, "HashFunction", "http://www.w3.org/2001/04/xmlenc#sha256")
                _e(nr, "SignatureAlgorithm", "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256")
                _e(nr, "SigningSecurityDetailsRef", securityId=f"{prefix}_security")


def make_cpa(
    profile: str = "osb-rm",
    *,
    cpaid: str = "CPA_TEST_gateway_1",
    peer: Side = PEER,
    gateway: Side = GATEWAY,
    sync: bool = False,
    start: str = "2024-01-01T00:00:00Z",
    end: str = "2099-12-31T00:00:00Z",
    retries: int = 3,
    retry_interval: str = "PT1M",
    ack_signed: bool = False,
) -> bytes:
    """A CPA between ``peer`` (party A) and ``gateway`` (party B); ``ack_signed``: the reliable
    channels ask signed acknowledgments (``ackSignatureRequested="always"``)."""
    root = etree.Element(
        f"{{{CPPA}}}CollaborationProtocolAgreement", nsmap={"tns": CPPA, "ds": DS, "xlink": XLINK}
    )
    root.set(f"{{{CPPA}}}cpaid", cpaid)
    root.set(f"{{{CPPA}}}version", "2_0b")
    _e(root, "Status", value="agreed")
    _e(root, "Start", start)
    _e(root, "End", end)
    _party(root, peer, "B", "A", profile, sync, retries, retry_interval, ack_signed)
    _party(root, gateway, "A", "B", profile, sync, retries, retry_interval, ack_signed)
    for part_id, mime in (("MsgHdr", "text/xml"), ("XMLMsg", "application/xml")):
        _e(root, "SimplePart", id=part_id, mimetype=mime)
    for package, parts in (
        ("MshSignalPackage", ("MsgHdr",)),
        ("MessagePackage", ("MsgHdr", "XMLMsg")),
    ):
        pkg = _e(root, "Packaging", id=package)
        _e(pkg, "ProcessingCapabilities", generate="true", parse="true")
        composite = _e(pkg, "CompositeList")
        comp = _e(
            composite,
            "Composite",
            id=f"{package}_c",
            mimetype="multipart/related",
            mimeparameters="type=text/xml",
        )
        for part in parts:
            _e(comp, "Constituent", idref=part)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


# --- a gateway with an imported CPA and a partner MSH endpoint ------------------------------


@dataclasses.dataclass
class Capture:
    """The partner MSH's endpoint: stores every signal POSTed to it."""

    port: int = dataclasses.field(default_factory=free_port)
    received: list[bytes] = dataclasses.field(default_factory=list)
    content_types: list[str] = dataclasses.field(default_factory=list)
    delay: float = 0.0
    """Seconds each answer takes (a slow partner MSH)."""

    async def handle(self, request: web.Request) -> web.Response:
        assert request.headers["SOAPAction"] == '"ebXML"'
        if self.delay:
            await asyncio.sleep(self.delay)
        self.content_types.append(request.headers.get("Content-Type", ""))
        self.received.append(await request.read())
        return web.Response(status=204)

    def actions(self) -> list[str]:
        return [ebms.read("text/xml", body).action for body in self.received]


def gateway_with_cpa(
    tmp_path: Path,
    capture: Capture,
    *,
    sync: bool = False,
    outbound: bool = False,
    retries: int = 3,
    retry_interval: str = "PT1M",
    peer_signer: Signer | None = None,
    ack_signed: bool = False,
    two_way_tls: bool = False,
) -> Setup:
    """Gateway with 0150 as the partner behind the peer's OIN (delivered to over ebMS when
    ``outbound``), 12345678 pulling its inbox, and the CPA imported. With ``peer_signer`` the
    CPA is osb-rm-s: the gateway gets a signing key of its own (``keys/ebms-signing.*``). With
    ``two_way_tls`` both endpoints are HTTPS: ours on an ``[ebms] listen`` listener that
    requires a client certificate (:func:`ebms_url`), trusting the demo CA and its CRL, with
    the ``ggk init`` ebMS client certificate; the capture is expected on HTTPS."""
    setup = make_setup(tmp_path / "gw", free_port())
    partners = setup.directory / "partners.toml"
    text = partners.read_text().replace(
        'id = "0150"\nname = "Gemeente Deventer"\nkind = "gemeente"\n',
        f'id = "0150"\nname = "Gemeente Deventer"\nkind = "gemeente"\noin = "{PEER.oin}"\n',
    )
    text = with_delivery(text, "12345678", 'adapter = "inbox"\n')
    if outbound:
        text = with_delivery(text, "0150", 'adapter = "ebms"\ncpa = "CPA_TEST_gateway_1"\n')
    partners.write_text(text)
    ebms_table = f'\n[ebms]\noin = "{GATEWAY.oin}"\ncpa_dir = "cpa"\n'
    if two_way_tls:
        ebms_table += (
            f'listen = "127.0.0.1:{free_port()}"\ntrust = "pki/ca.crt"\ncrl = "pki/crl.pem"\n'
            'client_cert = "pki/ebms-client.crt"\nclient_key = "pki/ebms-client.key"\n'
        )
    else:
        ebms_table += "loopback_http = true\n"
    ours: Signer | None = None
    if peer_signer is not None:
        ours = write_signer(setup.directory / "keys", "ebms-signing")
        ebms_table += (
            'signing_key = "keys/ebms-signing.key"\nsigning_cert = "keys/ebms-signing.crt"\n'
        )
    with setup.config_path.open("a") as file:
        file.write(ebms_table)
    peer = Side(
        PEER.oin,
        PEER.name,
        PEER.role,
        f"{'https' if two_way_tls else 'http'}://127.0.0.1:{capture.port}/ebms",
        peer_signer.certificate if peer_signer else None,
    )
    gateway = Side(
        GATEWAY.oin,
        GATEWAY.name,
        GATEWAY.role,
        ebms_url(setup),
        ours.certificate if ours else None,
    )
    config = load_config(setup.config_path)
    assert config.ebms is not None
    store = CpaStore(config.ebms, PartnerRegistry.load(config.partners_file))
    store.add(
        make_cpa(
            "osb-rm-s" if peer_signer else "osb-rm",
            peer=peer,
            gateway=gateway,
            sync=sync,
            retries=retries,
            retry_interval=retry_interval,
            ack_signed=ack_signed,
        )
    )
    return setup


def ebms_url(setup: Setup) -> str:
    """Where the gateway's ``/ebms`` is: its ``[ebms] listen`` listener when it has one."""
    config = load_config(setup.config_path)
    if config.ebms is not None and config.ebms.listen is not None:
        host, port = config.ebms.listen
        return f"https://{host}:{port}/ebms"
    return f"{setup.url}/ebms"


OTHER = Side("00000001999999999000", "OlstWijhe", "GGK", "http://127.0.0.1:18889/ebms")
"""A second partner (0175) with a CPA of its own: :func:`add_second_partner`."""
OTHER_CPA = "CPA_TEST_gateway_2"


def add_second_partner(setup: Setup, capture: Capture) -> None:
    """0175 as a second ebMS partner (:data:`OTHER`'s OIN, CPA :data:`OTHER_CPA`, osb-rm),
    answered at ``capture`` like the first. Before the gateway starts."""
    partners = setup.directory / "partners.toml"
    partners.write_text(
        partners.read_text().replace(
            'id = "0175"\nname = "Gemeente Olst-Wijhe"\nkind = "gemeente"\n',
            f'id = "0175"\nname = "Gemeente Olst-Wijhe"\nkind = "gemeente"\noin = "{OTHER.oin}"\n',
        )
    )
    config = load_config(setup.config_path)
    assert config.ebms is not None
    other = dataclasses.replace(OTHER, endpoint=f"http://127.0.0.1:{capture.port}/ebms")
    gateway = dataclasses.replace(GATEWAY, endpoint=f"{setup.url}/ebms")
    CpaStore(config.ebms, PartnerRegistry.load(config.partners_file)).add(
        make_cpa(cpaid=OTHER_CPA, peer=other, gateway=gateway)
    )


def status_request(asked: str, *, cpaid: str = "CPA_TEST_gateway_1", peer: Side = PEER) -> bytes:
    """A StatusRequest from ``peer`` about the MessageId ``asked`` (a single-part signal)."""
    root = etree.fromstring(
        compose.ping(
            cpaid,
            ebms.PartyRef(peer.oin, "urn:osb:oin", None),
            ebms.PartyRef(GATEWAY.oin, "urn:osb:oin", None),
            "peer.test",
        )
    )
    action = root.find(f".//{ebms.eb('Action')}")
    body = root.find(ebms.soap("Body"))
    assert action is not None and body is not None
    action.text = "StatusRequest"
    request = etree.SubElement(body, ebms.eb("StatusRequest"))
    request.set(ebms.eb("version"), "2.0")
    etree.SubElement(request, ebms.eb("RefToMessageId")).text = asked
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def di01(referentienummer: str | None = None, identificatie: str | None = None) -> bytes:
    """The WMO301 sample from 0150 in a Di01; ``identificatie``: its own Identificatie
    (TR056 refuses a reused one, so a batch of distinct messages needs one each)."""
    payload = (SAMPLES / "iwmo" / "wmo301.xml").read_bytes()
    if identificatie is not None:
        payload = payload.replace(b"WMO301A0001", identificatie.encode())
    return env.build_di01(
        payload,
        zender="0150",
        zender_applicatie="DOWRsociaal",
        ontvanger="12345678",
        functie="WMO301",
        referentienummer=referentienummer,
    )


def outgoing(payload: bytes, **changes: object) -> compose.Outgoing:
    out = compose.Outgoing(
        cpaid="CPA_TEST_gateway_1",
        sender=ebms.PartyRef(PEER.oin, "urn:osb:oin", PEER.role),
        receiver=ebms.PartyRef(GATEWAY.oin, "urn:osb:oin", GATEWAY.role),
        service_type=SERVICE[0],
        service=SERVICE[1],
        action="ggk_Di01",
        conversation_id=str(uuid.uuid4()),
        message_id=f"{uuid.uuid4()}@peer.test",
        payload=payload,
        time_to_live=datetime.now(UTC) + timedelta(minutes=5),
    )
    return dataclasses.replace(out, **changes)  # type: ignore[arg-type]


async def post_ebms(
    setup: Setup,
    out: compose.Outgoing | tuple[str, bytes],
    *,
    partner: str | None = "0150",
    soap_action: str = '"ebXML"',
    token: str | None = None,
) -> tuple[int, bytes]:
    """POST to ``/ebms`` with ``partner``'s client certificate (none: ``None``) and, when
    given, ``token`` as a bearer token."""
    content_type, body = out if isinstance(out, tuple) else compose.business_message(out)
    connector = aiohttp.TCPConnector(ssl=setup.ssl_context(partner))
    headers = {"Content-Type": content_type, "SOAPAction": soap_action}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(ebms_url(setup), data=body, headers=headers) as response,
    ):
        return response.status, await response.read()


@contextlib.asynccontextmanager
async def capturing(
    cap: Capture | None = None, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[Capture]:
    """A :class:`Capture` (a new one unless ``cap``) listening on loopback for the
    duration; over TLS with ``ssl_context`` (a partner MSH's HTTPS endpoint)."""
    cap = cap or Capture()
    app = web.Application()
    app.router.add_post("/ebms", cap.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", cap.port, ssl_context=ssl_context).start()
    try:
        yield cap
    finally:
        await runner.cleanup()


def fresh_key(name: str) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """A new RSA key and a self-signed certificate for it (30 days), for signing tests."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return key, cert


def fresh_signer(name: str) -> Signer:
    """:func:`fresh_key` as a Signer, in memory."""
    key, cert = fresh_key(name)
    return Signer(key, cert.public_bytes(serialization.Encoding.DER))


def write_signer(directory: Path, name: str) -> Signer:
    """:func:`fresh_key` as ``name.key``/``name.crt`` (PEM)."""
    return save_signer(directory, name, *fresh_key(name))


def save_signer(
    directory: Path, name: str, key: rsa.RSAPrivateKey, cert: x509.Certificate
) -> Signer:
    """``key`` and ``cert`` as ``name.key``/``name.crt`` (PEM), loaded back as a Signer."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (directory / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Signer.load(directory / f"{name}.key", directory / f"{name}.crt")


def signed_by(signer: Signer, profile_hash: str = "http://www.w3.org/2001/04/xmlenc#sha256") -> Any:
    """A ``seal`` for :func:`gateway.ebms.compose.business_message`: signs as osb-rm-s."""
    algorithms = Algorithms(profile_hash, "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256")

    def seal(root: etree._Element, parts: dict[str, bytes]) -> None:
        signer.sign(root, parts, algorithms)

    return seal


async def submit_to_0150(setup: Setup, payload: bytes | None = None) -> str:
    """A WMO305 (the sample unless ``payload``) from 12345678 to 0150 over REST, delivered
    under the CPA; its message id."""
    status, accepted = await rest(
        setup,
        "POST",
        "/api/v1/messages",
        token=setup.token("12345678"),
        data=payload or (SAMPLES / "iwmo" / "wmo305.xml").read_bytes(),
        headers={"Content-Type": "application/xml"},
    )
    assert status == 202, accepted
    return str(accepted["id"])


async def delivery_to_0150(setup: Setup, message_id: str) -> dict[str, Any]:
    """The message's delivery to 0150 as its sender, 12345678, sees it."""
    _, view = await rest(
        setup, "GET", f"/api/v1/messages/{message_id}", token=setup.token("12345678")
    )
    found: dict[str, Any] = next(d for d in view["deliveries"] if d["destination"] == "0150")
    return found


def gateway_certificate(setup: Setup) -> bytes:
    """DER of the signing certificate ``gateway_with_cpa`` gave the gateway."""
    keys = setup.directory / "keys"
    return Signer.load(keys / "ebms-signing.key", keys / "ebms-signing.crt").certificate
