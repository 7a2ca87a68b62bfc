"""Reading an offered message: from its envelope to the record the store keeps.

This is the part of accepting a message that needs no partner registry, route table or store:
the envelope's schema and fields, the sender's claim against its credential, the payload's
XSD and rules, the envelope agreeing with the payload, and what is stored beside the routing
(the envelope's bytes, digests, BSNs, beleidsinformatie). It is pure: the same functions run
inline (gateway/ingest.py) and in the reader processes (gateway/readers.py), where they use
the second core. What depends on state that changes while serving (is the ontvanger a
partner? is there a conversation? where does it route?) stays in the gateway process.

Every refusal is a :class:`Refused` value carrying the foutcode for the sender and the one
log line the gateway process writes for it (a reader process does not log: its lines would
bypass the gateway's redaction and level).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from lxml import etree

from gateway import envelope as env
from gateway.figures import Fact, FigureKeys, extract
from gateway.identify import parties
from gateway.report import Problem, Severity
from gateway.standards import MESSAGES, Kind, MessageType, Party, Standard
from gateway.validation import PayloadResult, envelope_matches_payload

# Rule ids of envelope/payload problems → the foutcode a sender gets (docs/errors.md).
ENVELOPE_CODES = {
    "IB009": "IB009",
    "ENV-BESTANDSNAAM": "StUF055",
    "ENV-FUNCTIE": "IB240",
    "ENV-KIND": "StUF040",
    "ENV-ZENDER": "StUF052",
    "ENV-ONTVANGER": "IB210",
    "XML-SIZE": "IB007",
}


@dataclass(frozen=True, slots=True)
class Rejected:
    code: str
    plek: str
    omschrijving: str
    cross_ref: str = ""
    zender: env.Systeem | None = None
    details: str | None = None
    functie: str | None = None


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated partner a message is read for: what it may claim to be."""

    partner_id: str
    party: Party | None
    """The kind of party it is (gemeente, aanbieder): it may send that party's messages
    (None: a partner that sends no iWmo/iJw messages of its own, e.g. CAK)."""
    kind: str = ""
    """Its partner kind as configured (``zorgaanbieder``, ``cak``), named in a refusal."""


@dataclass(frozen=True, slots=True)
class Settings:
    """What reading needs of the gateway's configuration (sent to each reader process)."""

    text_functies: frozenset[str] = frozenset()
    """Functies (not iWmo/iJw messages) whose free payloads are accepted: a closed list."""
    reject_rule_violations: bool = True
    figures_key: bytes | None = None
    """The key of the beleidsinformatie digests (gateway/figures.py); None: none are taken."""


@dataclass(frozen=True, slots=True)
class Refused:
    """A message that is not accepted, and the log line that says so."""

    rejected: Rejected
    fields: dict[str, Any] = field(default_factory=dict)
    """The ``message.rejected`` log line's fields (never the sender's free text)."""
    spoofed: dict[str, Any] | None = None
    """The ``message.spoofed_sender`` warning's fields, when the zender was another's."""
    ontvanger: str | None = None
    """The envelope's ontvanger when the refusal came after the sender's checks: an unknown
    ontvanger is refused first (IB210), as when it is checked before the payload."""


@dataclass(frozen=True, slots=True)
class StoredFacts:
    """What is stored of an accepted message beside its routing facts."""

    raw: bytes
    """The envelope as accepted (what is stored, sealed, and delivered)."""
    digest: str
    payload_digest: str
    bsns: tuple[str, ...]
    figures: tuple[Fact, ...]


@dataclass(frozen=True, slots=True)
class Read:
    """A message read and found acceptable so far: what the gateway process needs to route
    and store it."""

    envelope: env.Envelope
    """Its payload kept only when the message answers another (the pair checks read it)."""
    message: tuple[Standard, int] | None
    facts: StoredFacts
    header: dict[str, Any]

    @property
    def message_type(self) -> MessageType | None:
        return MESSAGES[self.message] if self.message is not None else None


def describe(problem: Problem) -> str:
    where = f" at {problem.path}" if problem.path else ""
    code = f" [{problem.retourcode}]" if problem.retourcode else ""
    return f"{problem.rule}{code}{where}: {problem.message}"


def refuse(
    envelope: env.Envelope,
    code: str,
    omschrijving: str,
    *,
    plek: str = "client",
    details: str | None = None,
    checked_sender: bool = True,
) -> Refused:
    """The refusal of a readable envelope, addressed back to its zender."""
    rejected = Rejected(
        code,
        plek,
        omschrijving[:200],
        envelope.referentienummer,
        envelope.zender,
        details,
        envelope.functie,
    )
    return Refused(
        rejected,
        fields=log_fields(rejected),
        ontvanger=envelope.ontvanger.organisatie if checked_sender else None,
    )


def log_fields(rejected: Rejected) -> dict[str, Any]:
    """The ``message.rejected`` line of a refused envelope: bounded, never the sender's text."""
    return {
        "referentienummer": rejected.cross_ref[:40],
        "zender": (rejected.zender.organisatie if rejected.zender else "")[:20],
        "functie": env.functie_label(rejected.functie),
        "code": rejected.code,
    }


def unreadable(element: etree._Element, exc: env.EnvelopeError) -> Refused:
    """The refusal of an envelope that cannot be read: its first problem's foutcode."""
    first = exc.problems[0]
    reference = env.reply_reference(element)
    return Refused(
        Rejected(
            ENVELOPE_CODES.get(first.rule, "StUF055"),
            "client",
            describe(first)[:200],
            cross_ref=reference,
            zender=env.reply_zender(element),
        ),
        fields={"referentienummer": reference, "rule": first.rule},
    )


def read_envelope(
    element: etree._Element, caller: Caller, payload: bytes | None = None
) -> env.Envelope | Refused:
    """The envelope, valid and sent by ``caller`` itself (``payload``: the one the gateway
    wrapped in it, see :func:`gateway.envelope.parse`)."""
    try:
        envelope = env.parse(element, payload)
    except env.EnvelopeError as exc:
        return unreadable(element, exc)
    errors = [p for p in env.check(envelope) if p.severity is Severity.ERROR]
    if errors:
        first = errors[0]
        code = ENVELOPE_CODES.get(first.rule, "StUF055")
        return refuse(envelope, code, describe(first), checked_sender=False)
    if envelope.zender.organisatie != caller.partner_id:
        return spoofed(envelope, caller)
    return envelope


def spoofed(envelope: env.Envelope, caller: Caller) -> Refused:
    """A partner may only speak for itself: a zender other than the credential's."""
    refused = refuse(
        envelope,
        "StUF052",
        f"authenticated as {caller.partner_id}, may not send as {envelope.zender.organisatie}",
        checked_sender=False,
    )
    return replace(
        refused,
        spoofed={"authenticated": caller.partner_id, "claimed": envelope.zender.organisatie},
    )


def text_payload_refusal(envelope: env.Envelope, settings: Settings) -> Refused | None:
    """For a functie that names no iWmo/iJw message: its free payload, if that is allowed."""
    problem = env.check_text_payload(envelope, settings.text_functies)
    return None if problem is None else refuse(envelope, "IB240", describe(problem))


def names_a_message(envelope: env.Envelope) -> bool:
    """Whether the envelope carries an iWmo/iJw message (to validate), not a Fo01 or a
    free payload."""
    return envelope.kind is not env.Kind.FO01 and env.named_message(envelope.functie) is not None


def judge_payload(
    envelope: env.Envelope, caller: Caller, result: PayloadResult, settings: Settings
) -> tuple[MessageType, etree._Element] | Refused:
    """A validated payload against the rules of acceptance: no blocking problem, the
    envelope agreeing with it, and a sender of the kind that sends this message."""
    errors = result.report.errors
    blocking = [p for p in errors if p.level == 1 or settings.reject_rule_violations]
    if blocking:
        first = blocking[0]
        code = "StUF055" if first.level == 1 else "StUF058"
        return refuse(envelope, code, describe(first), details=f"{len(errors)} problem(s)")
    if result.identified is None or result.root is None:
        return refuse(envelope, "StUF055", "payload not identified")
    message, payload_root = result.identified.message, result.root
    mismatch = [
        p
        for p in envelope_matches_payload(envelope, message, payload_root)
        if p.severity is Severity.ERROR
    ]
    if mismatch:
        first = mismatch[0]
        return refuse(envelope, ENVELOPE_CODES.get(first.rule, "StUF055"), describe(first))
    if caller.party is not message.sender:
        return refuse(envelope, "IB234", f"a {caller.kind} may not send {message.code}")
    return message, payload_root


def answers_another(message: MessageType | None) -> bool:
    """Whether accepting this message compares it with a stored one (gateway/pairing.py):
    a retour, or a declaratie-antwoord (325)."""
    return message is not None and (message.kind is Kind.RETOUR or message.number == 325)


def read_facts(
    element: etree._Element,
    envelope: env.Envelope,
    message: MessageType | None,
    payload_root: etree._Element | None,
    figure_keys: FigureKeys | None,
) -> Read:
    """What is stored of an accepted message beside its routing: serialising, hashing and
    collecting BSNs cost tens of milliseconds for a message of megabytes."""
    raw: bytes = etree.tostring(element, encoding="UTF-8", xml_declaration=True)
    bsns = (
        tuple(sorted({(el.text or "").strip() for el in payload_root.iter("{*}Bsn")}))
        if payload_root is not None
        else ()
    )
    figures = (
        extract(payload_root, message, figure_keys)
        if payload_root is not None and message is not None and figure_keys is not None
        else ()
    )
    facts = StoredFacts(
        raw, content_digest(envelope), hashlib.sha256(envelope.payload).hexdigest(), bsns, figures
    )
    kept = envelope if answers_another(message) else _without_payload(envelope)
    return Read(
        kept,
        (message.standard, message.number) if message is not None else None,
        facts,
        payload_header(payload_root, message),
    )


def _without_payload(envelope: env.Envelope) -> env.Envelope:
    return replace(envelope, payload=b"")


def read_all(
    element: etree._Element,
    caller: Caller,
    settings: Settings,
    validate: Callable[[bytes], PayloadResult],
    figure_keys: FigureKeys | None,
) -> Read | Refused:
    """Every stage of reading, in the order of the design (docs/architecture.md), in one
    go: what a reader process does with a request (the gateway's inline path runs the same
    stages with the large steps off its event loop, gateway/ingest.py)."""
    envelope = read_envelope(element, caller)
    if isinstance(envelope, Refused):
        return envelope
    message: MessageType | None = None
    payload_root: etree._Element | None = None
    if names_a_message(envelope):
        judged = judge_payload(envelope, caller, validate(envelope.payload), settings)
        if isinstance(judged, Refused):
            return judged
        message, payload_root = judged
    elif envelope.kind is not env.Kind.FO01:
        refused = text_payload_refusal(envelope, settings)
        if refused is not None:
            return refused
    return read_facts(element, envelope, message, payload_root, figure_keys)


def content_digest(envelope: env.Envelope) -> str:
    """What makes a re-offer "the same message": routing facts and payload, not the envelope's
    serialisation or tijdstipBericht (StUF 4.2: identical re-offers get the earlier answer)."""
    digest = hashlib.sha256()
    for part in (
        envelope.kind.value,
        envelope.zender.organisatie,
        envelope.ontvanger.organisatie,
        envelope.functie or "",
        envelope.cross_ref or "",
    ):
        digest.update(part.encode() + b"\x00")
    digest.update(envelope.payload)
    return digest.hexdigest()


def payload_header(root: etree._Element | None, message: MessageType | None) -> dict[str, Any]:
    """Routing facts of the payload header; for a retour the sender is Header/Ontvanger."""
    if root is None or message is None:
        return {}
    found = parties(root, message)
    if found is None:
        return {}
    codes = [c.text or "" for c in root.iter("{*}RetourCode")] if answers_another(message) else []
    return {
        "sender": found.sender,
        "identificatie": found.identificatie,
        "retourcodes": ",".join(sorted(set(codes))) or None,
    }
