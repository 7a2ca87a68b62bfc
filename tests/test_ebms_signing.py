"""The signed profiles (osb-rm-s): XML-DSig over the envelope and every payload part.

Verification is checked against a message ebms-core signed (the kit's capture, when
../shared is beside the project) and round trip; the endpoint and the adapter over TLS with a
signing partner. Against the running ebms-core: tests/test_ebms_peer.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from lxml import etree

from gateway.ebms import message as ebms
from gateway.ebms.cpa import parse
from gateway.ebms.signing import (
    Algorithms,
    SignatureProblem,
    Signer,
    check_signed_acknowledgment,
    reference_digests,
    signed_references,
    verify,
)
from tests.ebmskit import (
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
from tests.gatewaykit import eventually, rest, running

SHA256 = Algorithms(
    "http://www.w3.org/2001/04/xmlenc#sha256", "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
)
KIT = Path(__file__).resolve().parent.parent.parent / "shared" / "tools" / "ebms-peer"


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Signer:
    return write_signer(tmp_path_factory.mktemp("keys"), "peer")


def _signed(signer: Signer, **changes: object) -> ebms.EbmsMessage:
    content_type, body = ebms.business_message(outgoing(di01(), **changes), seal=signed_by(signer))
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
    unsigned = ebms.read(*ebms.business_message(outgoing(di01())))
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


# --- over TLS ----------------------------------------------------------------------------------


async def test_signed_message_is_accepted_and_the_ack_is_signed_by_the_gateway(
    tmp_path: Path, capture: Capture, signer: Signer
) -> None:
    setup = gateway_with_cpa(tmp_path, capture, peer_signer=signer)
    gateway_cert = gateway_certificate(setup)
    async with running(setup):
        out = outgoing(di01())
        signed = ebms.business_message(out, seal=signed_by(signer))
        assert (await post_ebms(setup, signed))[0] == 204
        await eventually(lambda: capture.received)
        ack = ebms.read("text/xml", capture.received[0])
        assert ack.action == "Acknowledgment"
        verify(ack.envelope, {}, certificate=gateway_cert, algorithms=SHA256)
        _, listing = await rest(setup, "GET", "/api/v1/inbox", partner_cert="12345678")
        assert len(listing["messages"]) == 1


@pytest.mark.parametrize("signing", ["unsigned", "another key"])
async def test_a_message_not_signed_by_the_cpas_key_is_a_security_failure(
    tmp_path: Path, capture: Capture, signer: Signer, signing: str
) -> None:
    setup = gateway_with_cpa(tmp_path, capture, peer_signer=signer)
    async with running(setup):
        out = outgoing(di01())
        seal = None if signing == "unsigned" else signed_by(write_signer(tmp_path, "forger"))
        assert (await post_ebms(setup, ebms.business_message(out, seal=seal)))[0] == 204
        await eventually(lambda: capture.received)
        root = etree.fromstring(capture.received[0])
        codes = [e.get(ebms.eb("errorCode")) for e in root.iter(ebms.eb("Error"))]
        assert codes == ["SecurityFailure"]
        _, listing = await rest(setup, "GET", "/api/v1/inbox", partner_cert="12345678")
        assert listing["messages"] == []


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
        sent = ebms.business_message(outgoing(di01(), ack_signed=True), seal=signed_by(signer))
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
    ack = ebms.acknowledgment(message, "peer.test", references)
    if signer is None:
        return ack
    root = etree.fromstring(ack)
    signer.sign(root, {}, SHA256)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


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
            return (await delivery_to_0150(setup, message_id))["state"] == "delivered"

        await eventually(delivered, timeout=20)
