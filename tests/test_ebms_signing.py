"""The signed profiles (osb-rm-s): XML-DSig over the envelope and every payload part.

Verification is checked against a message ebms-core signed (the kit's capture, when
../shared is beside the project) and round trip; the endpoint and the adapter over TLS with a
signing partner. Against the running ebms-core: tests/test_ebms_peer.py.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from gateway.config import load as load_config
from gateway.ebms import checks, compose
from gateway.ebms import message as ebms
from gateway.ebms.cpa import parse
from gateway.ebms.cpastore import CpaStore
from gateway.ebms.signing import (
    Algorithms,
    SignatureProblem,
    Signer,
    check_signed_acknowledgment,
    reference_digests,
    signed_references,
    verify,
)
from kit.ebms import (
    PEER,
    Capture,
    delivery_to_0150,
    di01,
    gateway_certificate,
    gateway_with_cpa,
    outgoing,
    post_ebms,
    signed_by,
    submit_to_0150,
    write_signer,
)
from kit.gateway import another_process, eventually, rest, running, serve, use_kafka
from routing.partners import PartnerRegistry

SHA256 = Algorithms(
    "http://www.w3.org/2001/04/xmlenc#sha256", "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
)
KIT = Path(__file__).resolve().parent.parent.parent / "shared" / "tools" / "ebms-peer"


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Signer:
    return write_signer(tmp_path_factory.mktemp("keys"), "peer")


def _signed(signer: Signer, **changes: object) -> ebms.EbmsMessage:
    content_type, body = compose.business_message(
        outgoing(di01(), **changes), seal=signed_by(signer)
    )
    return ebms.read(content_type, body)


def _parts(message: ebms.EbmsMessage) -> dict[str, bytes]:
    return {cid: part.data for cid, part in message.parts.items()}


def test_a_signature_verifies_with_the_signers_certificate_only(
    signer: Signer, tmp_path: Path
) -> None:
    message = _signed(signer)
    verify(message.envelope, _parts(message), certificate=signer.certificate, algorithms=SHA256)
    other = write_signer(tmp_path, "other")
    with pytest.raises(SignatureProblem, match="does not verify"):
        verify(message.envelope, _parts(message), certificate=other.certificate, algorithms=SHA256)


def test_tampering_with_the_payload_or_the_header_is_found(signer: Signer) -> None:
    message = _signed(signer)
    parts = _parts(message)
    cid = next(iter(parts))
    with pytest.raises(SignatureProblem, match="digest of Reference 'cid:"):
        verify(
            message.envelope,
            {cid: parts[cid] + b" "},
            certificate=signer.certificate,
            algorithms=SHA256,
        )
    action = message.envelope.find(f".//{ebms.eb('Action')}")
    assert action is not None
    action.text = "ggk_Du01"
    with pytest.raises(SignatureProblem, match="digest of Reference ''"):
        verify(message.envelope, parts, certificate=signer.certificate, algorithms=SHA256)


def test_header_blocks_for_the_next_hop_are_outside_the_signature(signer: Signer) -> None:
    """SyncReply (soap:actor next) may change in transit: the XPath filter leaves it out."""
    message = _signed(signer, sync_reply=True)
    sync = message.envelope.find(f".//{ebms.eb('SyncReply')}")
    assert sync is not None
    sync.getparent().remove(sync)  # type: ignore[union-attr]
    verify(message.envelope, _parts(message), certificate=signer.certificate, algorithms=SHA256)


def test_algorithms_other_than_the_cpas_are_refused(signer: Signer) -> None:
    message = _signed(signer)
    sha512 = Algorithms("http://www.w3.org/2001/04/xmlenc#sha512", SHA256.signature)
    with pytest.raises(SignatureProblem, match="DigestMethod differs"):
        verify(message.envelope, _parts(message), certificate=signer.certificate, algorithms=sha512)
    unsigned = ebms.read(*compose.business_message(outgoing(di01())))
    with pytest.raises(SignatureProblem, match="not signed"):
        verify(unsigned.envelope, {}, certificate=signer.certificate, algorithms=SHA256)


@pytest.mark.skipif(not (KIT / "samples").is_dir(), reason="the ebMS peer kit is not beside us")
def test_a_message_signed_by_ebms_core_verifies() -> None:
    raw = (KIT / "samples" / "08-peer-to-sut-message-osb-rm-s-signed-sha256.http").read_bytes()
    head, _, body = raw.partition(b"\r\n\r\n")
    content_type = next(
        line.split(b":", 1)[1].strip().decode()
        for line in head.splitlines()
        if line.lower().startswith(b"content-type")
    )
    message = ebms.read(content_type, body)
    cpa = parse((KIT / "cpa" / "test-osb-rm-s.xml").read_bytes(), loopback_ok=True)
    channel = next(iter(cpa.other("00000002222222222000").sends.values())).channel
    assert channel.signing_certificate is not None
    verify(
        message.envelope,
        _parts(message),
        certificate=channel.signing_certificate,
        algorithms=SHA256,
    )


NEXT_MSH = "urn:oasis:names:tc:ebxml-msg:actor:nextMSH"


def _forged_header(root: etree._Element) -> None:
    """Signature wrapping: a second MessageHeader, marked for the next MSH (so the profile's
    XPath filter leaves it out of the signature), before the signed one, with a new MessageId
    and a fresh TimeToLive."""
    header = root.find(ebms.soap("Header"))
    assert header is not None
    signed = header.find(ebms.eb("MessageHeader"))
    assert signed is not None
    forged = copy.deepcopy(signed)
    forged.set(ebms.soap("actor"), NEXT_MSH)
    forged.find(f".//{ebms.eb('MessageId')}").text = "forged@peer.test"  # type: ignore[union-attr]
    later = datetime.now(UTC) + timedelta(hours=1)
    forged.find(f".//{ebms.eb('TimeToLive')}").text = later.isoformat()  # type: ignore[union-attr]
    header.insert(header.index(signed), forged)


def _forged_message_id(root: etree._Element) -> None:
    """The same inside the signed MessageHeader: a nextMSH-marked MessageId first."""
    data = root.find(f".//{ebms.eb('MessageData')}")
    assert data is not None
    forged = etree.Element(ebms.eb("MessageId"), {ebms.soap("actor"): NEXT_MSH})
    forged.text = "forged@peer.test"
    data.insert(0, forged)


def _forging(signer: Signer, forge: Callable[[etree._Element], None]) -> Any:
    """A seal that signs, then forges (after the signature: the forgery is not signed)."""
    sign = signed_by(signer)

    def seal(root: etree._Element, parts: dict[str, bytes]) -> None:
        sign(root, parts)
        forge(root)

    return seal


@pytest.mark.parametrize("forge", [_forged_header, _forged_message_id])
def test_the_header_is_read_from_what_the_signature_covers(
    signer: Signer, forge: Callable[[etree._Element], None]
) -> None:
    """The forgery leaves the signature valid (the XPath filter drops it); the reader names
    it as a problem, and the message read from what verify covered is the signed one."""
    out = outgoing(di01())
    message = ebms.read(*compose.business_message(out, seal=_forging(signer, forge)))
    assert message.message_id == "forged@peer.test"  # the first found: the forgery
    assert [p.code for p in message.problems][:1] == ["Inconsistent"]
    covered = verify(
        message.envelope, _parts(message), certificate=signer.certificate, algorithms=SHA256
    )
    signed = ebms.as_signed(message, covered)
    assert signed.message_id == out.message_id and signed.problems == ()


@pytest.mark.parametrize("forge", [_forged_header, _forged_message_id])
def test_a_header_read_outside_the_signature_is_a_security_failure(
    tmp_path: Path, capture: Capture, signer: Signer, forge: Callable[[etree._Element], None]
) -> None:
    """Defence in depth: were the reader to miss a forgery (here: its problems dropped), the
    check still compares what it read with what the signature covers."""
    setup = gateway_with_cpa(tmp_path, capture, peer_signer=signer)
    config = load_config(setup.config_path)
    assert config.ebms is not None
    link = CpaStore(config.ebms, PartnerRegistry.load(config.partners_file)).load()[
        "CPA_TEST_gateway_1"
    ]
    out = outgoing(di01())
    message = ebms.read(*compose.business_message(out, seal=_forging(signer, forge)))
    checked = checks.check(dataclasses.replace(message, problems=()), link)
    assert [(e.code, e.description) for e in checked.errors] == [
        ("SecurityFailure", "the header read is not the header signed")
    ]
    honest = checks.check(_signed(signer), link)
    assert honest.errors == [] and honest.message.message_id != "forged@peer.test"


def test_an_ack_requested_of_the_next_msh_stays_not_supported_when_signed(
    tmp_path: Path, capture: Capture, signer: Signer
) -> None:
    """AckRequested for the next MSH is outside the signature by design: the signed reading
    keeps it, and it is answered NotSupported (as ebms-core does), not SecurityFailure."""
    setup = gateway_with_cpa(tmp_path, capture, peer_signer=signer)
    config = load_config(setup.config_path)
    assert config.ebms is not None
    link = CpaStore(config.ebms, PartnerRegistry.load(config.partners_file)).load()[
        "CPA_TEST_gateway_1"
    ]
    sign = signed_by(signer)

    def seal(root: etree._Element, parts: dict[str, bytes]) -> None:
        ack = root.find(f".//{ebms.eb('AckRequested')}")
        assert ack is not None
        ack.set(ebms.soap("actor"), NEXT_MSH)
        sign(root, parts)

    message = ebms.read(*compose.business_message(outgoing(di01()), seal=seal))
    codes = [(e.code, e.location) for e in checks.check(message, link).errors]
    assert codes == [("NotSupported", "//Header/AckRequested")]


def _split_message_id(node: Callable[[], etree._Element]) -> Callable[[etree._Element], None]:
    """A forge that puts ``node()`` inside eb:MessageId after its first 8 characters (the
    rest as its tail): ``ff13701e<!--x-->-dcca…``."""

    def forge(root: etree._Element) -> None:
        message_id = root.find(f".//{ebms.eb('MessageId')}")
        assert message_id is not None and message_id.text
        inside = node()
        inside.tail = message_id.text[8:]
        message_id.text = message_id.text[:8]
        message_id.append(inside)

    return forge


COMMENT = _split_message_id(lambda: etree.Comment("x"))
PI = _split_message_id(lambda: etree.ProcessingInstruction("x"))
ELEMENT = _split_message_id(lambda: etree.Element(ebms.eb("Note")))


def _link(setup: Any) -> Any:
    config = load_config(setup.config_path)
    assert config.ebms is not None
    return CpaStore(config.ebms, PartnerRegistry.load(config.partners_file)).load()[
        "CPA_TEST_gateway_1"
    ]


def test_a_comment_added_to_a_signed_element_changes_nothing_read(
    tmp_path: Path, capture: Capture, signer: Signer
) -> None:
    """C14N (without comments) leaves comments out of the digest, so one added inside the
    signed MessageId keeps the signature valid: the reader drops comments, and reads the
    MessageId whole, as signed (not the piece before the comment)."""
    link = _link(gateway_with_cpa(tmp_path, capture, peer_signer=signer))
    out = outgoing(di01())
    message = ebms.read(*compose.business_message(out, seal=_forging(signer, COMMENT)))
    assert message.message_id == out.message_id
    checked = checks.check(message, link)
    assert checked.errors == [] and checked.message.message_id == out.message_id


@pytest.mark.parametrize(
    ("forge", "expected"),
    [
        (PI, ("SecurityFailure", "//Header/Signature")),
        (ELEMENT, ("Inconsistent", "//Header/MessageHeader/MessageData/MessageId")),
    ],
    ids=["pi", "element"],
)
def test_a_pi_or_an_element_signed_inside_a_leaf_is_refused(
    tmp_path: Path,
    capture: Capture,
    signer: Signer,
    forge: Callable[[etree._Element], None],
    expected: tuple[str, str],
) -> None:
    """A PI or an element inside MessageId, there when it was signed (C14N covers both):
    never read around. The reader drops PIs, so the digest no longer holds
    (SecurityFailure); an element in a text-only eb: element is Inconsistent."""
    link = _link(gateway_with_cpa(tmp_path, capture, peer_signer=signer))
    sign = signed_by(signer)

    def seal(root: etree._Element, parts: dict[str, bytes]) -> None:
        forge(root)
        sign(root, parts)

    message = ebms.read(*compose.business_message(outgoing(di01()), seal=seal))
    errors = checks.check(message, link).errors
    assert [(e.code, e.location) for e in errors] == [expected]


# --- over TLS ----------------------------------------------------------------------------------


async def test_signed_message_is_accepted_and_the_ack_is_signed_by_the_gateway(
    tmp_path: Path, capture: Capture, signer: Signer
) -> None:
    setup = gateway_with_cpa(tmp_path, capture, peer_signer=signer)
    gateway_cert = gateway_certificate(setup)
    async with running(setup):
        out = outgoing(di01())
        signed = compose.business_message(out, seal=signed_by(signer))
        assert (await post_ebms(setup, signed))[0] == 204
        await eventually(lambda: capture.received)
        ack = ebms.read("text/xml", capture.received[0])
        assert ack.action == "Acknowledgment"
        verify(ack.envelope, {}, certificate=gateway_cert, algorithms=SHA256)
        _, listing = await rest(setup, "GET", "/api/v1/inbox", partner_cert="12345678")
        assert len(listing["messages"]) == 1


@pytest.mark.slow
async def test_a_comment_in_the_signed_message_id_is_acknowledged_under_the_whole_id(
    tmp_path: Path, capture: Capture, signer: Signer
) -> None:
    setup = gateway_with_cpa(tmp_path, capture, peer_signer=signer)
    async with running(setup):
        out = outgoing(di01())
        assert (
            await post_ebms(setup, compose.business_message(out, seal=_forging(signer, COMMENT)))
        )[0] == 204
        await eventually(lambda: capture.received)
        ack = ebms.read("text/xml", capture.received[0])
        assert ack.action == "Acknowledgment" and ack.ref_to_message_id == out.message_id


@pytest.mark.slow
@pytest.mark.parametrize("signing", ["unsigned", "another key"])
async def test_a_message_not_signed_by_the_cpas_key_is_a_security_failure(
    tmp_path: Path, capture: Capture, signer: Signer, signing: str
) -> None:
    setup = gateway_with_cpa(tmp_path, capture, peer_signer=signer)
    async with running(setup):
        out = outgoing(di01())
        seal = None if signing == "unsigned" else signed_by(write_signer(tmp_path, "forger"))
        assert (await post_ebms(setup, compose.business_message(out, seal=seal)))[0] == 204
        await eventually(lambda: capture.received)
        root = etree.fromstring(capture.received[0])
        codes = [e.get(ebms.eb("errorCode")) for e in root.iter(ebms.eb("Error"))]
        assert codes == ["SecurityFailure"]
        _, listing = await rest(setup, "GET", "/api/v1/inbox", partner_cert="12345678")
        assert listing["messages"] == []


@pytest.mark.parametrize(
    ("forge", "location"),
    [
        (_forged_header, "//Header/MessageHeader"),
        (_forged_message_id, "//Header/MessageHeader/MessageData/MessageId"),
    ],
)
@pytest.mark.slow
async def test_a_wrapped_signature_is_refused_and_nothing_accepted(
    tmp_path: Path,
    capture: Capture,
    signer: Signer,
    forge: Callable[[etree._Element], None],
    location: str,
) -> None:
    """An expired signed message, given a new MessageId and TimeToLive outside the
    signature: a MessageError Inconsistent naming the duplicate, no Acknowledgment."""
    setup = gateway_with_cpa(tmp_path, capture, peer_signer=signer)
    async with running(setup):
        expired = datetime.now(UTC) - timedelta(minutes=1)
        out = outgoing(di01(), time_to_live=expired)
        wrapped = compose.business_message(out, seal=_forging(signer, forge))
        assert (await post_ebms(setup, wrapped))[0] == 204
        await eventually(lambda: capture.received)
        assert capture.actions() == ["MessageError"]
        root = etree.fromstring(capture.received[0])
        errors = [
            (e.get(ebms.eb("errorCode")), e.get(ebms.eb("location")))
            for e in root.iter(ebms.eb("Error"))
        ]
        assert ("Inconsistent", location) in errors, errors
        _, listing = await rest(setup, "GET", "/api/v1/inbox", partner_cert="12345678")
        assert listing["messages"] == []


@pytest.mark.slow
async def test_the_adapter_signs_what_it_sends(
    tmp_path: Path, capture: Capture, signer: Signer
) -> None:
    setup = gateway_with_cpa(tmp_path, capture, peer_signer=signer, outbound=True)
    gateway_cert = gateway_certificate(setup)
    async with running(setup):
        await submit_to_0150(setup)
        await eventually(lambda: capture.received)
        sent = ebms.read(capture.content_types[0], capture.received[0])
        assert sent.sender.party_id != PEER.oin
        verify(sent.envelope, _parts(sent), certificate=gateway_cert, algorithms=SHA256)


# --- signed acknowledgments (ackSignatureRequested="always") -----------------------------------


async def test_a_signed_receipt_repeats_what_the_partner_signed(
    tmp_path: Path, capture: Capture, signer: Signer
) -> None:
    setup = gateway_with_cpa(tmp_path, capture, peer_signer=signer, ack_signed=True)
    gateway_cert = gateway_certificate(setup)
    async with running(setup):
        sent = compose.business_message(outgoing(di01(), ack_signed=True), seal=signed_by(signer))
        assert (await post_ebms(setup, sent))[0] == 204
        await eventually(lambda: capture.received)
        ack = ebms.read("text/xml", capture.received[0])
        assert ack.action == "Acknowledgment"
        what_was_signed = reference_digests(signed_references(ebms.read(*sent).envelope))
        assert [uri[:4] for uri, _ in what_was_signed] == ["", "cid:"]
        check_signed_acknowledgment(
            ack.envelope, what_was_signed, certificate=gateway_cert, algorithms=SHA256
        )


def _receipt(capture: Capture, signer: Signer | None, *, repeat: bool = True) -> bytes:
    """The partner's Acknowledgment of the first message it received: signed by ``signer``
    (unsigned without one), repeating that message's references unless told otherwise."""
    message = ebms.read(capture.content_types[0], capture.received[0])
    references = signed_references(message.envelope) if repeat else []
    ack = compose.acknowledgment(message, "peer.test", references)
    if signer is None:
        return ack
    root = etree.fromstring(ack)
    signer.sign(root, {}, SHA256)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


@pytest.mark.slow
async def test_our_message_ends_only_on_a_signed_receipt_of_what_we_signed(
    tmp_path: Path, capture: Capture, signer: Signer
) -> None:
    """Unsigned, signed by another key, or not repeating our references: not a receipt, the
    delivery waits (and would be resent). The partner's signed receipt ends it."""
    setup = gateway_with_cpa(tmp_path, capture, peer_signer=signer, outbound=True, ack_signed=True)
    async with running(setup):
        message_id = await submit_to_0150(setup)
        await eventually(lambda: capture.received)
        sent = ebms.read(capture.content_types[0], capture.received[0])
        assert sent.ack_requested is not None
        assert sent.ack_requested.get(ebms.eb("signed")) == "true"
        forger = write_signer(tmp_path, "forger")
        for wrong in (
            _receipt(capture, None),
            _receipt(capture, forger),
            _receipt(capture, signer, repeat=False),
        ):
            assert (await post_ebms(setup, ("text/xml", wrong)))[0] == 204
        await asyncio.sleep(0.5)
        assert (await delivery_to_0150(setup, message_id))["state"] != "delivered"
        assert (await post_ebms(setup, ("text/xml", _receipt(capture, signer))))[0] == 204

        async def delivered() -> bool:
            return bool((await delivery_to_0150(setup, message_id))["state"] == "delivered")

        await eventually(delivered, timeout=20)


@pytest.mark.kafka
@pytest.mark.slow
async def test_on_kafka_a_signed_receipt_is_checked_fully_at_every_process(
    tmp_path: Path, capture: Capture, signer: Signer, kafka_bootstrap: str
) -> None:
    """Two processes on Kafka; one sends our signed message. A receipt signed with the
    partner's key that does not repeat our references is refused at both: the process that
    did not send checks it against the references the sender recorded in the shared state
    (it once checked the signature only, took it, and ended the delivery). The right receipt,
    at either process, ends it."""
    setup = gateway_with_cpa(tmp_path, capture, peer_signer=signer, outbound=True, ack_signed=True)
    use_kafka(setup, kafka_bootstrap, f"t{uuid.uuid4().hex[:8]}")
    other = another_process(setup, "b")
    processes: list[asyncio.subprocess.Process] = []
    try:
        processes.append(await serve(setup, tmp_path / "a.log"))
        processes.append(await serve(other, tmp_path / "b.log"))
        message_id = await submit_to_0150(setup)
        await eventually(lambda: capture.received, timeout=60)
        wrong = _receipt(capture, signer, repeat=False)
        for gateway in (setup, other):
            assert (await post_ebms(gateway, ("text/xml", wrong)))[0] == 204
        await asyncio.sleep(1)
        assert (await delivery_to_0150(setup, message_id))["state"] != "delivered"
        logs = (tmp_path / "a.log").read_text() + (tmp_path / "b.log").read_text()
        assert logs.count('"ebms.receipt_refused"') == 2
        right = _receipt(capture, signer)
        for gateway in (other, setup):
            assert (await post_ebms(gateway, ("text/xml", right)))[0] == 204

        async def delivered() -> bool:
            return bool((await delivery_to_0150(setup, message_id))["state"] == "delivered")

        await eventually(delivered, timeout=30)
    finally:
        for process in processes:
            process.terminate()
            await process.wait()
