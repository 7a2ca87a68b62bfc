"""Building ebMS 2.0 messages: a business message (``multipart/related``, the envelope and
its payload) and the signals an MSH answers with (Acknowledgment, MessageError, Pong,
StatusResponse), and a SOAP fault. The message read off the wire is :mod:`gateway.ebms.message`.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from lxml import etree

from gateway.ebms.message import (
    EB,
    ERRORS_CONTEXT,
    MSH_SERVICE,
    NEXT_ACTOR,
    SOAP,
    TO_PARTY_MSH,
    XLINK,
    EbmsError,
    EbmsMessage,
    PartyRef,
    eb,
    soap,
    value,
)
from gateway.xmlsafe import parse_own


def new_message_id(host: str) -> str:
    """``UUID@host``, the form Digikoppeling asks for (BP EB013)."""
    return f"{uuid.uuid4()}@{host}"


def now() -> str:
    return stamp(datetime.now(UTC))


def stamp(moment: datetime) -> str:
    """An eb:Timestamp or TimeToLive: UTC with milliseconds and ``Z`` (ebMS 2.0 3.1.6.2).
    Milliseconds on TimeToLive too: it is Timestamp + RetryInterval x (Retries + 1) to the
    millisecond, not cut to a second before what the CPA allows."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _envelope() -> tuple[etree._Element, etree._Element, etree._Element]:
    root = etree.Element(soap("Envelope"), nsmap={"soap": SOAP, "eb": EB, "xlink": XLINK})
    header = etree.SubElement(root, soap("Header"))
    body = etree.SubElement(root, soap("Body"))
    return root, header, body


def _message_header(
    header: etree._Element,
    *,
    sender: PartyRef,
    receiver: PartyRef,
    cpaid: str,
    conversation_id: str,
    service: tuple[str | None, str],
    action: str,
    message_id: str,
    timestamp: str,
    ref_to: str | None = None,
    time_to_live: datetime | None = None,
) -> etree._Element:
    """An eb:MessageHeader in the schema's element order; Roles only where the party has one
    (signals carry none)."""
    mh = etree.SubElement(header, eb("MessageHeader"))
    mh.set(eb("version"), "2.0")
    mh.set(soap("mustUnderstand"), "1")
    for tag, party in (("From", sender), ("To", receiver)):
        el = etree.SubElement(mh, eb(tag))
        pid = etree.SubElement(el, eb("PartyId"))
        if party.party_type:
            pid.set(eb("type"), party.party_type)
        pid.text = party.party_id
        if party.role:
            etree.SubElement(el, eb("Role")).text = party.role
    etree.SubElement(mh, eb("CPAId")).text = cpaid
    etree.SubElement(mh, eb("ConversationId")).text = conversation_id
    service_el = etree.SubElement(mh, eb("Service"))
    if service[0]:
        service_el.set(eb("type"), service[0])
    service_el.text = service[1]
    etree.SubElement(mh, eb("Action")).text = action
    data = etree.SubElement(mh, eb("MessageData"))
    etree.SubElement(data, eb("MessageId")).text = message_id
    etree.SubElement(data, eb("Timestamp")).text = timestamp
    if ref_to is not None:
        etree.SubElement(data, eb("RefToMessageId")).text = ref_to
    if time_to_live is not None:
        etree.SubElement(data, eb("TimeToLive")).text = stamp(time_to_live)
    return mh


def _signal_header(
    header: etree._Element, answered: EbmsMessage, action: str, host: str
) -> etree._Element:
    """The MessageHeader of a signal answering ``answered``: parties swapped, no Role, the
    MSH service, the same CPAId and ConversationId, RefToMessageId = the answered message."""
    return _message_header(
        header,
        sender=PartyRef(answered.receiver.party_id, answered.receiver.party_type, None),
        receiver=PartyRef(answered.sender.party_id, answered.sender.party_type, None),
        cpaid=answered.cpaid,
        conversation_id=answered.conversation_id,
        service=(None, MSH_SERVICE),
        action=action,
        message_id=new_message_id(host),
        timestamp=now(),
        ref_to=answered.message_id,
    )


def _bytes(root: etree._Element) -> bytes:
    data: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return data


def acknowledgment(
    answered: EbmsMessage, host: str, references: Sequence[etree._Element] = ()
) -> bytes:
    """The Acknowledgment of a reliably sent message (a single-part ``text/xml`` signal).
    ``references``: the ``ds:Reference`` elements of the answered message's signature, which
    a signed acknowledgment repeats, so the receipt says what was signed (OASIS ebMS
    2.0 §6, Reliable Messaging)."""
    root, header, _ = _envelope()
    _signal_header(header, answered, "Acknowledgment", host)
    ack = etree.SubElement(header, eb("Acknowledgment"))
    ack.set(eb("version"), "2.0")
    ack.set(soap("mustUnderstand"), "1")
    ack.set(soap("actor"), TO_PARTY_MSH)
    etree.SubElement(ack, eb("Timestamp")).text = now()
    etree.SubElement(ack, eb("RefToMessageId")).text = answered.message_id
    sender = etree.SubElement(ack, eb("From"))
    pid = etree.SubElement(sender, eb("PartyId"))
    if answered.receiver.party_type:
        pid.set(eb("type"), answered.receiver.party_type)
    pid.text = answered.receiver.party_id
    for reference in references:
        ack.append(copy.deepcopy(reference))
    return _bytes(root)


def message_error(answered: EbmsMessage, errors: list[EbmsError], host: str) -> bytes:
    """A MessageError signal naming what was wrong with ``answered``."""
    root, header, _ = _envelope()
    _signal_header(header, answered, "MessageError", host)
    error_list = etree.SubElement(header, eb("ErrorList"))
    error_list.set(eb("version"), "2.0")
    error_list.set(soap("mustUnderstand"), "1")
    error_list.set(eb("highestSeverity"), "Error")
    for error in errors:
        el = etree.SubElement(error_list, eb("Error"))
        el.set(eb("codeContext"), ERRORS_CONTEXT)
        el.set(eb("errorCode"), error.code)
        el.set(eb("severity"), "Error")
        if error.location:
            el.set(eb("location"), error.location)
        description = etree.SubElement(el, eb("Description"))
        description.set("{http://www.w3.org/XML/1998/namespace}lang", "en-US")
        description.text = error.description[:500]
    return _bytes(root)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A business message to send: what the CPA and the application decide."""

    cpaid: str
    sender: PartyRef
    receiver: PartyRef
    service_type: str | None
    service: str
    action: str
    conversation_id: str
    message_id: str
    payload: bytes
    payload_type: str = "application/xml"
    ack_requested: bool = True
    ack_signed: bool = False
    duplicate_elimination: bool = True
    sync_reply: bool = False
    time_to_live: datetime | None = None
    timestamp: str = field(default_factory=now)
    ref_to_message_id: str | None = None
    """A message exchanged earlier under the same CPA that this one refers to."""


def business_message(
    out: Outgoing, *, seal: Callable[[etree._Element, dict[str, bytes]], None] | None = None
) -> tuple[str, bytes]:
    """(Content-Type, body) of a ``multipart/related`` ebMS message: the SOAP envelope first
    (Content-ID = the MessageId, as ebms-core does), then the payload referenced by the
    Manifest. Deterministic apart from nothing: a resend of the same ``Outgoing`` is
    byte-identical."""
    root, header, body = _envelope()
    mh = _message_header(
        header,
        sender=out.sender,
        receiver=out.receiver,
        cpaid=out.cpaid,
        conversation_id=out.conversation_id,
        service=(out.service_type, out.service),
        action=out.action,
        message_id=out.message_id,
        timestamp=out.timestamp,
        ref_to=out.ref_to_message_id,
        time_to_live=out.time_to_live,
    )
    if out.duplicate_elimination:
        etree.SubElement(mh, eb("DuplicateElimination"))
    if out.ack_requested:
        ack = etree.SubElement(header, eb("AckRequested"))
        ack.set(eb("version"), "2.0")
        ack.set(soap("mustUnderstand"), "1")
        ack.set(soap("actor"), TO_PARTY_MSH)
        ack.set(eb("signed"), "true" if out.ack_signed else "false")
    if out.sync_reply:
        sync = etree.SubElement(header, eb("SyncReply"))
        sync.set(eb("version"), "2.0")
        sync.set(soap("mustUnderstand"), "1")
        sync.set(soap("actor"), NEXT_ACTOR)
    payload_id = f"{out.message_id.split('@')[0]}-payload"
    manifest = etree.SubElement(body, eb("Manifest"))
    manifest.set(eb("version"), "2.0")
    reference = etree.SubElement(manifest, eb("Reference"))
    reference.set(f"{{{XLINK}}}href", f"cid:{payload_id}")
    reference.set(f"{{{XLINK}}}type", "simple")
    if seal is not None:  # the signed profiles: over the envelope and the payload part
        seal(root, {payload_id: out.payload})
    boundary = f"=_ggk_{out.message_id.split('@')[0]}"
    parts = [
        ("text/xml; charset=UTF-8", f"<{out.message_id}>", _bytes(root)),
        (out.payload_type, f"<{payload_id}>", out.payload),
    ]
    chunks = []
    for content_type, content_id, data_bytes in parts:
        head = f"--{boundary}\r\nContent-Type: {content_type}\r\nContent-ID: {content_id}\r\n"
        chunks.append(head.encode() + b"\r\n" + data_bytes + b"\r\n")
    body_bytes = b"".join(chunks) + f"--{boundary}--\r\n".encode()
    content_type = (
        f'multipart/related; boundary="{boundary}"; type="text/xml"; '
        f'start="<{out.message_id}>"; start-info="text/xml"'
    )
    return content_type, body_bytes


def ping(cpaid: str, sender: PartyRef, receiver: PartyRef, host: str) -> bytes:
    """An ebMS Ping to the other party of a CPA (answered by a Pong)."""
    root, header, _ = _envelope()
    message_id = new_message_id(host)
    _message_header(
        header,
        sender=PartyRef(sender.party_id, sender.party_type, None),
        receiver=PartyRef(receiver.party_id, receiver.party_type, None),
        cpaid=cpaid,
        conversation_id=message_id.split("@")[0],
        service=(None, MSH_SERVICE),
        action="Ping",
        message_id=message_id,
        timestamp=now(),
    )
    return _bytes(root)


def pong(answered: EbmsMessage, host: str) -> bytes:
    root, header, _ = _envelope()
    _signal_header(header, answered, "Pong", host)
    return _bytes(root)


def status_response(answered: EbmsMessage, status: str, received: str | None, host: str) -> bytes:
    """The StatusResponse to a StatusRequest: ``Received`` (with when) or ``NotRecognized``."""
    root, header, body = _envelope()
    _signal_header(header, answered, "StatusResponse", host)
    asked = answered.envelope.find(f"{soap('Body')}/{eb('StatusRequest')}/{eb('RefToMessageId')}")
    response = etree.SubElement(body, eb("StatusResponse"))
    response.set(eb("version"), "2.0")
    response.set(eb("messageStatus"), status)
    etree.SubElement(response, eb("RefToMessageId")).text = (
        value(asked) if asked is not None else ""
    )
    if received is not None:
        etree.SubElement(response, eb("Timestamp")).text = received
    return _bytes(root)


def soap_fault(text: str) -> bytes:
    """A SOAP 1.1 client fault for requests no MessageError can answer."""
    root = etree.Element(soap("Envelope"), nsmap={"soap": SOAP})
    fault = etree.SubElement(etree.SubElement(root, soap("Body")), soap("Fault"))
    etree.SubElement(fault, "faultcode").text = "soap:Client"
    etree.SubElement(fault, "faultstring").text = text[:200]
    return _bytes(root)


def reparse(data: bytes) -> etree._Element:
    """A signal we built, read back (our own bytes)."""
    return parse_own(data)
