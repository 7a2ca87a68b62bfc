"""The ebMS 2.0 message: its parts, and reading one off the wire (building one, and the
signals an MSH answers with: :mod:`gateway.ebms.compose`).

Reading is strict where the profile is (namespaces, qualified ``eb:`` attributes, version 2.0,
the header order of the schema) and lenient where ebms-core is (the SOAP part is the first MIME
part whatever ``start`` says; payload Content-IDs without ``@``). Nothing here decides what to
do with a message; :mod:`gateway.ebms.checks` compares it with its CPA and the inbound
endpoint acts (OASIS ebMS 2.0 in Logius' Digikoppeling Koppelvlakstandaard ebMS2).
"""

from __future__ import annotations

import dataclasses
import email.message
import email.parser
import email.policy
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

from lxml import etree

from gateway.xmlsafe import ParseLimits, UnsafeXml, parse_untrusted

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
EB = "http://www.oasis-open.org/committees/ebxml-msg/schema/msg-header-2_0.xsd"
XLINK = "http://www.w3.org/1999/xlink"
MSH_SERVICE = "urn:oasis:names:tc:ebxml-msg:service"
TO_PARTY_MSH = "urn:oasis:names:tc:ebxml-msg:actor:toPartyMSH"
NEXT_ACTOR = "http://schemas.xmlsoap.org/soap/actor/next"
NEXT_MSH = "urn:oasis:names:tc:ebxml-msg:actor:nextMSH"
SOAP_ACTION = '"ebXML"'
ERRORS_CONTEXT = "urn:oasis:names:tc:ebxml-msg:service:errors"
HEADER_LIMITS = ParseLimits(max_bytes=1024 * 1024, max_depth=32)


def eb(name: str) -> str:
    return f"{{{EB}}}{name}"


def soap(name: str) -> str:
    return f"{{{SOAP}}}{name}"


class EbmsParseError(ValueError):
    """The request is not an ebMS message the gateway can read at all (answered with a SOAP
    fault, as ebms-core does, because no MessageError can be addressed)."""


@dataclass(frozen=True, slots=True)
class EbmsError:
    """One eb:Error of a MessageError (OASIS ebMS 2.0 §4.2, Error Handling Module)."""

    code: str
    location: str | None
    description: str


@dataclass(frozen=True, slots=True)
class Part:
    content_id: str
    content_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class PartyRef:
    party_id: str
    party_type: str | None
    role: str | None


@dataclass(frozen=True, slots=True)
class EbmsMessage:
    """An ebMS message as read: its header fields and the MIME parts."""

    envelope: etree._Element
    soap_bytes: bytes
    sender: PartyRef
    receiver: PartyRef
    cpaid: str
    conversation_id: str
    service_type: str | None
    service: str
    action: str
    message_id: str
    timestamp: str
    ref_to_message_id: str | None
    time_to_live: datetime | None
    duplicate_elimination: bool
    ack_requested: etree._Element | None
    sync_reply: etree._Element | None
    acknowledgment: etree._Element | None
    error_list: etree._Element | None
    message_order: bool
    references: tuple[str, ...]
    """``cid:`` hrefs of the Manifest, without the scheme."""
    parts: dict[str, Part] = field(default_factory=dict)
    """Payload parts by Content-ID (without angle brackets)."""
    problems: tuple[EbmsError, ...] = ()
    """Structure the reader refuses to choose from (:func:`structure_problems`): answered with
    a MessageError before anything else is looked at."""

    @property
    def is_signal(self) -> bool:
        return self.service == MSH_SERVICE and self.service_type is None

    @property
    def service_name(self) -> str:
        return f"{self.service_type}:{self.service}" if self.service_type else self.service


def _content_id(value: object) -> str:
    """A part's Content-ID without its angle brackets. Under ``compat32`` a header with bytes
    outside ASCII comes back as an ``email.header.Header``, not a string: ``str()`` turns
    those bytes into U+FFFD, so such an id matches no Manifest reference."""
    return str(value or "").strip().removeprefix("<").removesuffix(">")


def split_mime(content_type: str, body: bytes) -> tuple[bytes, dict[str, Part]]:
    """(SOAP part, payload parts) of an HTTP body: a single ``text/xml`` envelope, or
    ``multipart/related`` whose first part is the envelope."""
    if not content_type.lower().lstrip().startswith("multipart/"):
        return body, {}
    # compat32: headers stay plain strings. The modern policies run every header through the
    # header registry, ten times the cost (3.5 ms against 0.34 ms for an 8 KB message).
    message = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode("latin-1") + body
    )
    if not message.is_multipart():
        raise EbmsParseError("multipart Content-Type without parts")
    parts = [part for part in message.get_payload() if isinstance(part, email.message.Message)]
    if not parts:
        raise EbmsParseError("multipart body without parts")
    envelope = parts[0].get_payload(decode=True)
    if not isinstance(envelope, bytes):
        raise EbmsParseError("the SOAP part is empty")
    payloads: dict[str, Part] = {}
    for part in parts[1:]:
        data = part.get_payload(decode=True)
        cid = _content_id(part.get("Content-ID"))
        if isinstance(data, bytes) and cid:
            payloads[cid] = Part(cid, part.get_content_type(), data)
    return envelope, payloads


def value(el: etree._Element) -> str:
    """An element's whole string value (every text node in it), stripped. Never ``.text``
    alone: that stops at the first child node, and a comment there (outside the C14N the
    signature covers) would change what is read without breaking the signature. The reader
    strips comments and PIs (:func:`read`) and refuses element children in the leaf
    elements (:func:`structure_problems`); this reads the rest whole."""
    return str(el.xpath("string()")).strip()


def _text(el: etree._Element | None, name: str) -> str | None:
    if el is None:
        return None
    found = el.find(eb(name))
    return (value(found) or None) if found is not None else None


def _party(el: etree._Element | None, where: str) -> PartyRef:
    if el is None:
        raise EbmsParseError(f"MessageHeader has no {where}")
    pid = el.find(eb("PartyId"))
    if pid is None or not value(pid):
        raise EbmsParseError(f"MessageHeader/{where} has no PartyId")
    return PartyRef(value(pid), pid.get(eb("type")), _text(el, "Role"))


DATETIME = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?"
    r"(Z|[+-]\d\d:\d\d)?",
    re.ASCII,
)
"""The xsd:dateTime lexical form (XML Schema 1.0 part 2, 3.2.7), nothing else: no bare
date, no compact or week forms, no space for the ``T`` (all of which
``datetime.fromisoformat`` takes). The year has exactly four digits: XML Schema allows more
(and a minus sign), but no such year is a time an MSH sends, a datetime holds none of them,
and an unbounded digit run would reach Python's int() digit limit (a ValueError, not a
refusal) for a year of thousands of digits."""


def parse_time(text: str | None) -> datetime | None:
    """An xsd:dateTime as an aware datetime in UTC; None for none; :class:`EbmsParseError`
    for anything else (another form, a day or hour that does not exist, a year of other than
    four digits or 0000, an instant past year 9999).

    A value without a zone is UTC: ebMS 2.0 says Timestamp and TimeToLive MUST be expressed
    as UTC, 'Z' only RECOMMENDED (3.1.6.2, 6.4.5), so a zone-less value is a UTC time written
    without its 'Z'. A value with an offset names one instant unambiguously and is taken as
    that instant. ``24:00:00`` (allowed by XML Schema) is the next day's midnight."""
    if not text:
        return None
    found = DATETIME.fullmatch(text)
    if found is None:
        raise EbmsParseError(f"not an xsd:dateTime: {text[:40]!r}")
    fraction, zone = found.group(7), found.group(8)
    try:  # every int() inside: whatever the pattern lets through, a refusal, never a 500
        year, month, day, hour, minute, second = (int(g) for g in found.groups()[:6])
        midnight = (hour, minute, second) == (24, 0, 0) and not (fraction or "").strip("0")
        moment = datetime(
            year,
            month,
            day,
            0 if midnight else hour,
            minute,
            second,
            int((fraction or "0")[:6].ljust(6, "0")),
            tzinfo=UTC if zone in (None, "Z") else _offset(zone),
        )
        if midnight:
            moment += timedelta(days=1)
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise EbmsParseError(f"not an xsd:dateTime: {text[:40]!r}") from None


def _offset(zone: str) -> timezone:
    """``±hh:mm`` as a zone; at most 14:00 either way (XML Schema)."""
    hours, minutes = int(zone[1:3]), int(zone[4:6])
    if minutes > 59 or hours * 60 + minutes > 14 * 60:
        raise ValueError(zone)
    sign = -1 if zone[0] == "-" else 1
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


SINGLETONS: dict[str, tuple[str, ...]] = {
    "Header": (
        eb("MessageHeader"),
        eb("AckRequested"),
        eb("SyncReply"),
        eb("Acknowledgment"),
        eb("ErrorList"),
        eb("MessageOrder"),
        "{http://www.w3.org/2000/09/xmldsig#}Signature",
    ),
    "Body": (eb("Manifest"), eb("StatusRequest"), eb("StatusResponse")),
    "MessageHeader": tuple(
        eb(n)
        for n in (
            "From",
            "To",
            "CPAId",
            "ConversationId",
            "Service",
            "Action",
            "MessageData",
            "DuplicateElimination",
        )
    ),
    "MessageData": tuple(eb(n) for n in ("MessageId", "Timestamp", "RefToMessageId", "TimeToLive")),
    "From": (eb("Role"),),
    "To": (eb("Role"),),
    "Acknowledgment": (eb("Timestamp"), eb("RefToMessageId"), eb("From")),
    "StatusRequest": (eb("RefToMessageId"),),
    "StatusResponse": (eb("RefToMessageId"), eb("Timestamp")),
}
"""Elements the schema allows at most once in their parent (msg-header-2_0.xsd; one
ds:Signature in the Header, OASIS ebMS 2.0 §4.1, Security Module)."""
LEAVES = frozenset(
    eb(n)
    for n in (
        "PartyId",
        "Role",
        "CPAId",
        "ConversationId",
        "Service",
        "Action",
        "MessageId",
        "Timestamp",
        "RefToMessageId",
        "TimeToLive",
        "SequenceNumber",
    )
)
"""eb: elements whose content is text only (msg-header-2_0.xsd): an element inside one is
refused rather than read around (its text would be split, and a reader that took only the
first piece could be handed a different value than the one the sender meant)."""
NEXT_HOP_BLOCKS = (eb("AckRequested"), eb("SyncReply"))
"""The only eb: elements that may name a next-hop actor: header blocks that are checked on
their own (AckRequested nextMSH is NotSupported, SyncReply is for SOAP "next")."""


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _path(el: etree._Element) -> str:
    """``//Header/MessageHeader/…``: an element's place from the SOAP Header or Body down, as
    the locations of ebms-core's errors read."""
    names = []
    node: etree._Element | None = el
    while node is not None and isinstance(node.tag, str) and node.tag != soap("Envelope"):
        names.append(_local(node.tag))
        node = node.getparent()
    return "//" + "/".join(reversed(names))


def structure_problems(envelope: etree._Element) -> tuple[EbmsError, ...]:
    """What makes it ambiguous which element the message means. A second MessageHeader (or
    MessageId, AckRequested, ds:Signature …) is never valid, and an eb: element marked for the
    next hop (``soap:actor`` nextMSH or SOAP "next") is left out of the signature by the
    profile's XPath filter: a reader that took either could be handed unsigned content
    beside a valid signature (signature wrapping). Digikoppeling has no intermediaries, so
    neither has a legitimate use."""
    problems: list[EbmsError] = []
    for el in envelope.iter():
        if not isinstance(el.tag, str):
            continue
        singletons = SINGLETONS.get(_local(el.tag)) if el.tag.startswith(f"{{{EB}}}") else None
        if el.tag in (soap("Header"), soap("Body")):
            singletons = SINGLETONS[_local(el.tag)]
        for tag in singletons or ():
            if len(el.findall(tag)) > 1:
                where = f"{_path(el)}/{_local(tag)}"
                problems.append(EbmsError("Inconsistent", where, f"more than one {_local(tag)}"))
        if el.tag in LEAVES and len(el):
            problems.append(
                EbmsError("Inconsistent", _path(el), f"{_local(el.tag)} contains an element")
            )
        actor = el.get(soap("actor"))
        if (
            actor in (NEXT_MSH, NEXT_ACTOR)
            and el.tag.startswith(f"{{{EB}}}")
            and not (el.tag in NEXT_HOP_BLOCKS and el.getparent() is envelope.find(soap("Header")))
        ):
            problems.append(
                EbmsError(
                    "Inconsistent",
                    _path(el),
                    f"{_local(el.tag)} is marked for the next hop (outside the signature)",
                )
            )
    return tuple(problems[:20])


def read(content_type: str, body: bytes) -> EbmsMessage:
    """Read an ebMS message (no CPA yet); :class:`EbmsParseError` when it cannot be read."""
    soap_bytes, parts = split_mime(content_type, body)
    try:
        envelope = parse_untrusted(soap_bytes, HEADER_LIMITS)
    except UnsafeXml as exc:
        raise EbmsParseError(f"the SOAP part is not usable XML: {exc.message}") from None
    without_comments(envelope)
    return from_envelope(envelope, soap_bytes, parts)


def without_comments(envelope: etree._Element) -> None:
    """Take every comment and processing instruction out of ``envelope`` (in place), the text
    around each joined. The signature's C14N (without comments, as the profile has it)
    never covered comments, so digests of a legitimate message do not change; a comment in
    a signed element can then no longer split what is read from it (``<eb:MessageId>a<!--x
    -->b</eb:MessageId>`` is ``ab``, as signed). A PI is covered by C14N: one in a signed
    message makes its digest fail (SecurityFailure), which no MSH has reason to send."""
    etree.strip_tags(envelope, etree.Comment, etree.ProcessingInstruction)


def from_envelope(
    envelope: etree._Element, soap_bytes: bytes, parts: dict[str, Part]
) -> EbmsMessage:
    """The message an envelope carries (the first of each element; :attr:`EbmsMessage.problems`
    says when there was more than one to choose from)."""
    if envelope.tag != soap("Envelope"):
        raise EbmsParseError("the SOAP part is not a SOAP 1.1 Envelope")
    header = envelope.find(soap("Header"))
    body_el = envelope.find(soap("Body"))
    mh = header.find(eb("MessageHeader")) if header is not None else None
    if mh is None or body_el is None:
        raise EbmsParseError("no eb:MessageHeader in the SOAP Header (or no Body)")
    data = mh.find(eb("MessageData"))
    service_el = mh.find(eb("Service"))
    message_id = _text(data, "MessageId")
    cpaid = _text(mh, "CPAId")
    if service_el is None or not message_id or not cpaid or data is None:
        raise EbmsParseError("MessageHeader lacks CPAId, Service or MessageData/MessageId")
    manifest = body_el.find(eb("Manifest"))
    references = tuple(
        (r.get(f"{{{XLINK}}}href") or "").strip()
        for r in (manifest.findall(eb("Reference")) if manifest is not None else [])
    )

    def block(name: str) -> etree._Element | None:
        return header.find(eb(name)) if header is not None else None

    return EbmsMessage(
        envelope=envelope,
        soap_bytes=soap_bytes,
        sender=_party(mh.find(eb("From")), "From"),
        receiver=_party(mh.find(eb("To")), "To"),
        cpaid=cpaid,
        conversation_id=_text(mh, "ConversationId") or "",
        service_type=service_el.get(eb("type")),
        service=value(service_el),
        action=_text(mh, "Action") or "",
        message_id=message_id,
        timestamp=_text(data, "Timestamp") or "",
        ref_to_message_id=_text(data, "RefToMessageId"),
        time_to_live=parse_time(_text(data, "TimeToLive")),
        duplicate_elimination=mh.find(eb("DuplicateElimination")) is not None,
        ack_requested=block("AckRequested"),
        sync_reply=block("SyncReply"),
        acknowledgment=block("Acknowledgment"),
        error_list=block("ErrorList"),
        message_order=block("MessageOrder") is not None,
        references=references,
        parts=parts,
        problems=structure_problems(envelope),
    )


def as_signed(message: EbmsMessage, covered: etree._Element) -> EbmsMessage:
    """``message`` read again from ``covered``, the envelope exactly as its signature was
    verified (the Signature and the next-hop blocks taken out: :func:`signing.verify`), so
    every header field used afterwards is one the signature covers. Kept from the message as
    received: the envelope itself (its Signature, which a signed receipt repeats), the MIME
    parts (their digests were verified), SyncReply and an AckRequested for the next MSH
    (outside the signature by design; the latter is refused as NotSupported anyway)."""
    signed = from_envelope(covered, message.soap_bytes, message.parts)
    ack = message.ack_requested
    next_hop_ack = ack is not None and ack.get(soap("actor")) in (NEXT_MSH, NEXT_ACTOR)
    return dataclasses.replace(
        signed,
        envelope=message.envelope,
        sync_reply=message.sync_reply,
        ack_requested=ack if next_hop_ack else signed.ack_requested,
        problems=(),
    )
