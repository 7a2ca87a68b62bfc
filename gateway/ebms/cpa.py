"""Collaboration Protocol Agreements: what two parties agreed about their ebMS2 exchange.

A CPA (OASIS CPP/CPA 2.0) configures one link of the chain: the two parties (OIN, role),
which services and actions each may send and receive, and per action the delivery channel:
reliable or best effort (ackRequested/duplicateElimination), sync or async signals
(syncReplyMode), retries and their interval, signing, and the endpoint messages go to. The
MSH follows the CPA for every message it sends and checks every message it receives against
it (OASIS ebXML CPPA 2.0; Logius' Digikoppeling ebMS2 CPA rules).

:func:`parse` reads a CPA and checks it is one the gateway can honour: a Digikoppeling profile
(osb-be, osb-rm, osb-be-s, osb-rm-s; -e is recognised and refused), exactly two parties with
one role each, every reference resolvable, every action paired with the other party's, a
validity period that has not ended. Every problem is reported at once, in words that name
the element, so an operator can correct a CPA from one error message.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import cast

from lxml import etree

from gateway.ebms.signing import Algorithms
from gateway.xmlsafe import ParseLimits, UnsafeXml, parse_untrusted

CPPA = "http://www.oasis-open.org/committees/ebxml-cppa/schema/cpp-cpa-2_0.xsd"
DS = "http://www.w3.org/2000/09/xmldsig#"
OIN_TYPE = "urn:osb:oin"
TO_PARTY_MSH = "urn:oasis:names:tc:ebxml-msg:actor:toPartyMSH"
SYNC_MODES = ("none", "mshSignalsOnly")
CPA_LIMITS = ParseLimits(max_bytes=4 * 1024 * 1024, max_depth=64)
_OIN = re.compile(r"^[0-9]{20}(_[OTA]{1,3})?$")
_CPA_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
_WEAK_DIGESTS = ("#sha1", "#md5")
_DURATION = re.compile(
    r"^P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


class Profile(StrEnum):
    """The Digikoppeling ebMS2 profiles (Logius, Digikoppeling Koppelvlakstandaard ebMS2)."""

    BE = "osb-be"
    RM = "osb-rm"
    BE_SIGNED = "osb-be-s"
    RM_SIGNED = "osb-rm-s"
    BE_ENCRYPTED = "osb-be-e"
    RM_ENCRYPTED = "osb-rm-e"

    @property
    def reliable(self) -> bool:
        return self in (Profile.RM, Profile.RM_SIGNED, Profile.RM_ENCRYPTED)

    @property
    def signed(self) -> bool:
        return self not in (Profile.BE, Profile.RM)


class CpaError(ValueError):
    """A CPA the gateway cannot use; ``problems`` lists every reason, one sentence each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


MAX_RESEND_WINDOW = timedelta(days=30)
"""The longest resend window any channel is taken to have, whatever its Retries and
RetryInterval say (Digikoppeling's default is 8 retries 3 hours apart, 27 hours). It bounds
how old a received Timestamp may be, how long received MessageIds are kept and the
TimeToLive of what we send; unbounded, a CPA with a huge product made the arithmetic
overflow (a bare 500 on every message under that CPA) and stretched all three for ever."""
MAX_RETRIES = 1_000_000
"""Retries counted up to this many in the resend window (so the product stays a float)."""


@dataclass(frozen=True, slots=True)
class Channel:
    """A delivery channel with what its transport and document exchange say."""

    id: str
    endpoint: str
    sync_reply_mode: str
    ack_requested: bool
    ack_signature_requested: bool
    duplicate_elimination: bool
    actor: str | None
    retries: int | None = None
    retry_interval: timedelta | None = None
    persist_duration: timedelta | None = None
    hash_function: str | None = None
    signature_algorithm: str | None = None
    signing_certificate: bytes | None = None
    """DER of the certificate this party signs with (the verifier's key, never the message's)."""
    encrypted: bool = False

    @property
    def resend_window(self) -> timedelta | None:
        """RetryInterval x (Retries + 1), how long a reliable sender resends one message
        (ebms-core's TimeToLive), at most :data:`MAX_RESEND_WINDOW`; None without retries or
        with a zero interval."""
        if self.retries is None or not self.retry_interval:
            return None
        attempts = min(max(self.retries, 0), MAX_RETRIES) + 1
        seconds = self.retry_interval.total_seconds() * attempts
        return timedelta(seconds=min(seconds, MAX_RESEND_WINDOW.total_seconds()))

    @property
    def retention(self) -> timedelta | None:
        """How long a MessageId received on this channel may still come back: the longer of
        the resend window and PersistDuration, at most :data:`MAX_RESEND_WINDOW` (a resend
        older than that is refused by its Timestamp anyway)."""
        longest = max(
            (w for w in (self.resend_window, self.persist_duration) if w is not None),
            default=None,
        )
        return None if longest is None else min(longest, MAX_RESEND_WINDOW)

    @property
    def algorithms(self) -> Algorithms:
        """What this channel signs and verifies with (its HashFunction and
        SignatureAlgorithm; empty on an unsigned channel, which ``Algorithms.check`` refuses)."""
        return Algorithms(self.hash_function or "", self.signature_algorithm or "")

    @property
    def profile(self) -> Profile:
        signed = self.hash_function is not None
        if self.encrypted:
            return Profile.RM_ENCRYPTED if self.ack_requested else Profile.BE_ENCRYPTED
        if signed:
            return Profile.RM_SIGNED if self.ack_requested else Profile.BE_SIGNED
        return Profile.RM if self.ack_requested else Profile.BE


@dataclass(frozen=True, slots=True)
class ActionBinding:
    """One action a party may send or receive, on its channel."""

    id: str
    service_type: str | None
    service: str
    action: str
    channel: Channel


@dataclass(frozen=True, slots=True)
class CpaParty:
    oin: str
    party_id_type: str
    name: str
    role: str
    default_channel: Channel
    sends: dict[tuple[str, str], ActionBinding] = field(default_factory=dict)
    """(service, action) → binding; the service as ``type:value`` when typed."""
    receives: dict[tuple[str, str], ActionBinding] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Cpa:
    cpaid: str
    start: datetime
    end: datetime
    parties: tuple[CpaParty, CpaParty]
    xml: bytes

    def party(self, oin: str) -> CpaParty | None:
        return next((p for p in self.parties if p.oin == oin), None)

    def other(self, oin: str) -> CpaParty:
        """The party that is not ``oin`` (which must be one of the two)."""
        first, second = self.parties
        return second if first.oin == oin else first

    @property
    def profiles(self) -> set[Profile]:
        return {
            b.channel.profile
            for p in self.parties
            for b in (*p.sends.values(), *p.receives.values())
        }


def service_name(service_type: str | None, value: str) -> str:
    """The service as ebMS APIs write it: ``type:value`` when it has a type."""
    return f"{service_type}:{value}" if service_type else value


def duration(text: str) -> timedelta:
    """An xsd:duration without years or months (the units a retry interval uses)."""
    found = _DURATION.match(text.strip())
    if found is None or text.strip() in ("P", "PT"):
        raise ValueError(f"not a duration in days/hours/minutes/seconds: {text!r}")
    parts = {k: float(v) for k, v in found.groupdict().items() if v}
    try:
        return timedelta(
            days=parts.get("d", 0),
            hours=parts.get("h", 0),
            minutes=parts.get("m", 0),
            seconds=parts.get("s", 0),
        )
    except OverflowError:  # more than 999,999,999 days
        raise ValueError(f"duration too long: {text[:40]!r}") from None


def _q(name: str) -> str:
    return f"{{{CPPA}}}{name}"


def _attr(el: etree._Element, name: str) -> str | None:
    value = el.get(_q(name))
    return value.strip() if value is not None else None


def _children(el: etree._Element, name: str) -> list[etree._Element]:
    return el.findall(_q(name))


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class _Reader:
    """Reads one PartyInfo, collecting problems instead of stopping at the first."""

    def __init__(self, info: etree._Element, problems: list[str], loopback_ok: bool) -> None:
        self.info = info
        self.problems = problems
        self.loopback_ok = loopback_ok
        self.name = _attr(info, "partyName") or "?"
        self.channels = {_attr(c, "channelId"): c for c in _children(info, "DeliveryChannel")}
        self.transports = {_attr(t, "transportId"): t for t in _children(info, "Transport")}
        self.exchanges = {_attr(d, "docExchangeId"): d for d in _children(info, "DocExchange")}
        self.certificates = {_attr(c, "certId"): c for c in _children(info, "Certificate")}
        self._channel_cache: dict[str, Channel | None] = {}

    def problem(self, text: str) -> None:
        self.problems.append(f"PartyInfo {self.name!r}: {text}")

    def party_id(self) -> tuple[str, str] | None:
        ids = _children(self.info, "PartyId")
        typed = [i for i in ids if _attr(i, "type") == OIN_TYPE] or ids
        if not typed:
            self.problem("no PartyId")
            return None
        value, kind = (typed[0].text or "").strip(), _attr(typed[0], "type") or ""
        if kind == OIN_TYPE and not _OIN.match(value):
            self.problem(f"PartyId {value[:40]!r} of type {OIN_TYPE} is not an OIN (20 digits)")
        return value, kind

    def role(self) -> str | None:
        roles = {
            _attr(r, "name") or ""
            for role in self.info.iter(_q("CollaborationRole"))
            for r in _children(role, "Role")
        }
        if len(roles) != 1:
            self.problem(f"a party has exactly one Role in a CPA; found {sorted(roles) or 'none'}")
            return None
        return roles.pop()

    def channel(self, channel_id: str | None) -> Channel | None:
        if channel_id is None:
            return None
        if channel_id not in self._channel_cache:
            self._channel_cache[channel_id] = self._read_channel(channel_id)
        return self._channel_cache[channel_id]

    def _read_channel(self, channel_id: str) -> Channel | None:
        el = self.channels.get(channel_id)
        if el is None:
            self.problem(f"DeliveryChannel {channel_id!r} is referred to but not defined")
            return None
        mc = el.find(_q("MessagingCharacteristics"))

        def get(name: str) -> str | None:
            return _attr(mc, name) if mc is not None else None

        sync = get("syncReplyMode") or "none"
        ack = get("ackRequested") == "always"
        dup = get("duplicateElimination") == "always"
        where = f"DeliveryChannel {channel_id!r}"
        if sync not in SYNC_MODES:
            self.problem(f"{where}: syncReplyMode {sync!r} is not one of {SYNC_MODES}")
        if ack != dup:
            self.problem(
                f"{where}: ackRequested and duplicateElimination must both be 'always' "
                "(osb-rm) or both 'never' (osb-be)"
            )
        actor = get("actor")
        if ack and actor not in (None, TO_PARTY_MSH):
            self.problem(f"{where}: acknowledgements go to toPartyMSH only, not {actor!r}")
        endpoint = self._endpoint(_attr(el, "transportId"), where)
        retries = interval = persist = None
        hash_function = signature = None
        signing: bytes | None = None
        encrypted = False
        exchange = self.exchanges.get(_attr(el, "docExchangeId"))
        if exchange is None:
            self.problem(f"{where}: its DocExchange {_attr(el, 'docExchangeId')!r} is not defined")
        else:
            sender = exchange.find(_q("ebXMLSenderBinding"))
            if sender is not None:
                retries, interval, persist = self._reliability(sender, where)
                hash_function, signature, signing = self._signing(sender, where)
                encrypted = sender.find(_q("SenderDigitalEnvelope")) is not None
        if ack and (retries is None or interval is None):
            self.problem(f"{where}: a reliable channel needs Retries and RetryInterval")
        return Channel(
            id=channel_id,
            endpoint=endpoint or "",
            sync_reply_mode=sync,
            ack_requested=ack,
            ack_signature_requested=get("ackSignatureRequested") == "always",
            duplicate_elimination=dup,
            actor=actor,
            retries=retries,
            retry_interval=interval,
            persist_duration=persist,
            hash_function=hash_function,
            signature_algorithm=signature,
            signing_certificate=signing,
            encrypted=encrypted,
        )

    def _endpoint(self, transport_id: str | None, where: str) -> str | None:
        transport = self.transports.get(transport_id)
        if transport is None:
            self.problem(f"{where}: its Transport {transport_id!r} is not defined")
            return None
        protocols = {
            (p.text or "").strip().upper() for p in transport.iter(_q("TransportProtocol"))
        }
        if protocols - {"HTTP"}:
            self.problem(f"Transport {transport_id!r}: only HTTP is used, not {sorted(protocols)}")
        endpoints = transport.findall(f"{_q('TransportReceiver')}/{_q('Endpoint')}")
        if not endpoints:
            self.problem(f"Transport {transport_id!r} has no TransportReceiver Endpoint")
            return None
        uri = _attr(endpoints[0], "uri") or ""
        loopback = re.match(r"^http://(127\.0\.0\.1|\[::1\]|localhost)(:\d+)?/", uri)
        if not uri.startswith("https://") and not (self.loopback_ok and loopback):
            self.problem(f"Transport {transport_id!r}: Endpoint {uri[:80]!r} is not https://")
        return uri

    def _reliability(
        self, binding: etree._Element, where: str
    ) -> tuple[int | None, timedelta | None, timedelta | None]:
        rm = binding.find(_q("ReliableMessaging"))
        retries = interval = persist = None
        try:
            if rm is not None:
                retries = int((rm.findtext(_q("Retries")) or "").strip())
                interval = duration(rm.findtext(_q("RetryInterval")) or "")
                order = (rm.findtext(_q("MessageOrderSemantics")) or "NotGuaranteed").strip()
                if order != "NotGuaranteed":
                    self.problem(f"{where}: MessageOrderSemantics {order!r} is not supported")
            persisted = binding.findtext(_q("PersistDuration"))
            persist = duration(persisted) if persisted else None
        except ValueError as exc:
            self.problem(f"{where}: {exc}")
        return retries, interval, persist

    def _signing(
        self, binding: etree._Element, where: str
    ) -> tuple[str | None, str | None, bytes | None]:
        nr = binding.find(_q("SenderNonRepudiation"))
        if nr is None:
            return None, None, None
        hash_function = (nr.findtext(_q("HashFunction")) or "").strip()
        signature = (nr.findtext(_q("SignatureAlgorithm")) or "").strip()
        if hash_function.endswith(_WEAK_DIGESTS) or signature.endswith(("rsa-sha1", "dsa-sha1")):
            self.problem(f"{where}: SHA-1 and MD5 are not allowed for signing (SHA-256 or better)")
        ref = nr.find(_q("SigningCertificateRef"))
        cert_id = _attr(ref, "certId") if ref is not None else None
        der = self.certificate(cert_id, where)
        return hash_function, signature, der

    def certificate(self, cert_id: str | None, where: str) -> bytes | None:
        cert = self.certificates.get(cert_id)
        if cert is None:
            self.problem(f"{where}: its signing certificate {cert_id!r} is not in the CPA")
            return None
        text = cert.findtext(f".//{{{DS}}}X509Certificate")
        try:
            return base64.b64decode("".join((text or "").split()), validate=True)
        except ValueError:
            self.problem(f"Certificate {cert_id!r}: X509Certificate is not base64")
            return None

    def bindings(self, direction: str) -> Iterator[tuple[str | None, str, etree._Element]]:
        for service_binding in self.info.iter(_q("ServiceBinding")):
            service = service_binding.find(_q("Service"))
            if service is None:
                continue
            value = (service.text or "").strip()
            if not value or any(c.isspace() for c in value):
                self.problem(f"Service {value[:60]!r} is empty or holds white space")
            for can in _children(service_binding, direction):
                binding = can.find(_q("ThisPartyActionBinding"))
                if binding is not None:
                    yield _attr(service, "type"), value, binding


def _party(
    reader: _Reader,
) -> tuple[CpaParty | None, dict[str, tuple[str, etree._Element]]]:
    """The party and its action bindings by id (for the IDREF check)."""
    identified = reader.party_id()
    role = reader.role()
    default = reader.channel(_attr(reader.info, "defaultMshChannelId"))
    by_id: dict[str, tuple[str, etree._Element]] = {}
    sends: dict[tuple[str, str], ActionBinding] = {}
    receives: dict[tuple[str, str], ActionBinding] = {}
    for direction, table in (("CanSend", sends), ("CanReceive", receives)):
        for service_type, service, el in reader.bindings(direction):
            action = _attr(el, "action") or ""
            binding_id = _attr(el, "id") or ""
            channel = reader.channel((el.findtext(_q("ChannelId")) or "").strip() or None)
            if not action or any(c.isspace() for c in action):
                reader.problem(f"action {action[:60]!r} is empty or holds white space")
            key = (service_name(service_type, service), action)
            if key in table:
                reader.problem(f"{direction} {key[1]!r} of service {key[0]!r} appears twice")
            if channel is not None:
                table[key] = ActionBinding(binding_id, service_type, service, action, channel)
            by_id[binding_id] = (direction, el)
    if identified is None or role is None or default is None:
        return None, by_id
    oin, kind = identified
    return CpaParty(oin, kind, reader.name, role, default, sends, receives), by_id


def _pairing(
    infos: list[etree._Element],
    ids: list[dict[str, tuple[str, etree._Element]]],
    problems: list[str],
) -> None:
    """Every CanSend of one party names a CanReceive of the other with the same action."""
    opposite = {"CanSend": "CanReceive", "CanReceive": "CanSend"}
    for me, other in ((0, 1), (1, 0)):
        for binding_id, (direction, el) in ids[me].items():
            can = el.getparent()
            assert can is not None
            ref = (can.findtext(_q("OtherPartyActionBinding")) or "").strip()
            target = ids[other].get(ref)
            name = _attr(infos[me], "partyName")
            if target is None:
                problems.append(
                    f"PartyInfo {name!r}: {direction} {binding_id!r} names OtherPartyActionBinding "
                    f"{ref!r}, which the other party does not define"
                )
            elif target[0] != opposite[direction] or _attr(target[1], "action") != _attr(
                el, "action"
            ):
                problems.append(
                    f"PartyInfo {name!r}: {direction} {binding_id!r} is paired with {ref!r}, "
                    "which is not the other party's opposite binding for the same action"
                )


def parse(
    data: bytes,
    *,
    schema: etree.XMLSchema | None = None,
    now: datetime | None = None,
    loopback_ok: bool = False,
) -> Cpa:
    """Read and check a CPA; :class:`CpaError` lists every problem found.

    ``schema``: the OASIS cpp-cpa-2_0 schema, checked first when given. ``loopback_ok``: accept
    ``http://`` endpoints on the loopback address (tests against a local peer only).
    """
    try:
        root = parse_untrusted(data, CPA_LIMITS)
    except UnsafeXml as exc:
        raise CpaError([f"not a usable XML document: {exc.message}"]) from None
    if root.tag != _q("CollaborationProtocolAgreement"):
        raise CpaError(["the root element is not a CPP/CPA 2.0 CollaborationProtocolAgreement"])
    if schema is not None and not schema.validate(root):
        raise CpaError(
            [
                f"line {e.line}: {e.message}"
                for e in cast(Iterable[etree._LogEntry], schema.error_log)
            ][:10]
            or ["invalid against the CPP/CPA 2.0 schema"]
        )
    problems: list[str] = []
    cpaid = _attr(root, "cpaid") or ""
    if not _CPA_ID.match(cpaid):
        problems.append(
            f"cpaid {cpaid[:80]!r}: use letters, digits, '_' and '-' only (it names files; "
            "Digikoppeling advises no dots or other characters)"
        )
    status = root.find(_q("Status"))
    if status is None or _attr(status, "value") != "agreed":
        problems.append("Status is not 'agreed'")
    try:
        start, end = _time(root.findtext(_q("Start"))), _time(root.findtext(_q("End")))
    except ValueError as exc:
        problems.append(f"Start/End: {exc}")
        start = end = None
    moment = now or datetime.now(UTC)
    if start is None or end is None or start >= end:
        problems.append("Start and End must give a period (Start before End)")
    elif end <= moment:
        problems.append(f"the CPA ended on {end.isoformat()}")
    infos = _children(root, "PartyInfo")
    if len(infos) != 2:
        raise CpaError([*problems, f"a CPA has two PartyInfo elements, not {len(infos)}"])
    read = [_party(_Reader(info, problems, loopback_ok)) for info in infos]
    _pairing(infos, [ids for _, ids in read], problems)
    first, second = read[0][0], read[1][0]
    if first is not None and second is not None and first.oin == second.oin:
        problems.append(f"both parties have PartyId {first.oin}")
    if problems or first is None or second is None or start is None or end is None:
        raise CpaError(problems or ["incomplete PartyInfo"])
    cpa = Cpa(cpaid, start, end, (first, second), data)
    encrypted = {p for p in cpa.profiles if p in (Profile.BE_ENCRYPTED, Profile.RM_ENCRYPTED)}
    if encrypted:
        raise CpaError(
            [f"profiles {sorted(encrypted)} (XML Encryption) are not supported by this gateway"]
        )
    return cpa


def load_schema(directory: Path) -> etree.XMLSchema:
    """The OASIS CPP/CPA 2.0 schema (``cpp-cpa-2_0.xsd`` and its imports) from a folder."""
    return etree.XMLSchema(etree.parse(str(directory / "cpp-cpa-2_0.xsd")))
