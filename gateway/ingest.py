"""Accepting a message: from an authenticated envelope to a durable record and a Bv03.

The stages run in the order of the design (docs/architecture.md): envelope checks → payload
validation → authorisation (a partner only speaks for itself) → retour correlation → the pair
the gateway carries (an answer against its stored heenbericht: gateway/pairing.py) → routing →
durable accept with duplicate detection. Each stage returns a :class:`Rejected` value with the
StUF/GGk foutcode the sender gets in its Fo03; nothing is stored for a rejected message.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from dataclasses import dataclass

import structlog
from lxml import etree

from gateway import audit, transports
from gateway import envelope as env
from gateway.broker.base import AcceptOutcome, Broker, NewMessage, PlannedDelivery, StorageError
from gateway.figures import FigureKeys
from gateway.offload import PayloadValidator
from gateway.pairing import answered_declaratie, pair_problems
from gateway.report import Problem, Severity
from gateway.standards import MessageType
from gateway.stored_facts import StoredFacts, payload_header, stored_facts
from gateway.validation import PayloadResult, Validator, envelope_matches_payload
from routing.partners import Partner, PartnerRegistry
from routing.table import Refusal, RoutedMessage, RouteTable

log = structlog.get_logger("ggk.ingest")

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

NOT_YOUR_CONVERSATION = (
    "crossRefnummer names no message that the ontvanger sent to you through this gateway"
)
"""The one refusal for an unknown reference and for another pair's: no existence oracle."""

ANSWERABLE: dict[env.Kind, tuple[str, ...]] = {
    env.Kind.DU01: ("Di01",),
    env.Kind.FO01: ("Di01", "Du01"),
}
"""What an answer may refer to: a retour answers a heenbericht; a Fo01 either of them."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is calling: a partner (token or client certificate), or an operator (admin)."""

    partner: Partner | None
    admin: bool = False
    peer: str = ""
    via: str = ""

    @property
    def name(self) -> str:
        return self.partner.id if self.partner else ("admin" if self.admin else "anonymous")


@dataclass(frozen=True, slots=True)
class Accepted:
    message_id: str
    referentienummer: str
    zender: env.Systeem
    bv03_ref: str
    bv03_tijdstip: str
    duplicate: bool
    destinations: tuple[str, ...] = ()


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
class Wrapping:
    """What the gateway itself writes in the Di01/Du01 around a payload it validated (REST,
    portal): the rest of the envelope follows from the payload and the sender's credential."""

    kind: env.Kind
    payload: bytes
    """The payload as submitted: its base64 is what the receiver gets."""
    ontvanger: str
    zender_applicatie: str
    cross_ref: str | None = None
    referentienummer: str | None = None


def _describe(problem: Problem) -> str:
    where = f" at {problem.path}" if problem.path else ""
    code = f" [{problem.retourcode}]" if problem.retourcode else ""
    return f"{problem.rule}{code}{where}: {problem.message}"


class Ingress:
    """The accept path shared by SOAP, REST and ``ggk submit``."""

    def __init__(
        self,
        *,
        validator: Validator,
        partners: PartnerRegistry,
        routes: RouteTable,
        broker: Broker,
        reject_rule_violations: bool = True,
        payloads: PayloadValidator | None = None,
        text_functies: frozenset[str] = frozenset(),
        figure_keys: FigureKeys | None = None,
        lenient_conversations: bool = False,
    ) -> None:
        self.validator = validator
        self.lenient_conversations = lenient_conversations
        """``[gateway] conversations = "lenient"``: an answer to a reference that is not a
        message between its two parties is routed by its envelope and stored unlinked
        (migrations), instead of refused with StUF043."""
        self.figure_keys = figure_keys
        """Keys of the beleidsinformatie facts (gateway/figures.py); None: none are taken."""
        self.payloads = payloads or PayloadValidator(validator, ())
        """Large payloads to a worker process once started (see gateway.offload)."""
        self.partners = partners
        self.routes = routes
        self.broker = broker
        self.reject_rule_violations = reject_rule_violations
        self.text_functies = text_functies
        """Functies (not iWmo/iJw messages) whose free payloads are accepted: a closed list."""

    async def accept_envelope(
        self, element: etree._Element, identity: Identity, *, offload: bool = False
    ) -> Accepted | Rejected:
        """Accept or refuse; every refusal is audited (nothing else is stored for it).
        ``offload``: a large envelope, read in a thread instead of on the event loop."""
        return await self._audited(await self._accept(element, identity, offload), identity)

    async def accept_payload(
        self,
        validated: PayloadResult,
        wrapping: Wrapping,
        identity: Identity,
        *,
        offload: bool = False,
    ) -> Accepted | Rejected:
        """Accept or refuse a payload the caller validated with :attr:`payloads` (REST, the
        portal), wrapped here in the Di01/Du01 the receiver gets. The same checks, records
        and answers as :meth:`accept_envelope` of that envelope, without encoding, parsing,
        decoding and validating the payload a second time. ``offload``: a large payload."""
        return await self._audited(
            await self._accept_validated(validated, wrapping, identity, offload), identity
        )

    async def _audited(
        self, result: Accepted | Rejected, identity: Identity
    ) -> Accepted | Rejected:
        if isinstance(result, Rejected):
            await self._audit_refusal(
                identity,
                result.code,
                referentienummer=result.cross_ref,
                zender=result.zender.organisatie if result.zender else "",
                functie=result.functie or "",
                omschrijving=result.omschrijving,
            )
        return result

    async def refused_before_envelope(self, identity: Identity, code: str, stage: str) -> None:
        """Audit a request refused before an envelope could be read (no credential, not
        SOAP 1.1, ...): nothing of its content is known, only who and where from."""
        log.info("message.rejected", code=code, peer=identity.peer, stage=stage)
        await self._audit_refusal(identity, code)

    async def _audit_refusal(
        self,
        identity: Identity,
        code: str,
        *,
        referentienummer: str = "",
        zender: str = "",
        functie: str = "",
        omschrijving: str = "",
    ) -> None:
        label = env.functie_label(functie) if functie else ""
        secret = {"omschrijving": omschrijving} if omschrijving else {}
        if label == "other":  # a sender's free text stays out of the clear columns
            secret["functie"] = functie
        event = audit.AuditEvent(
            action="rejected",
            referentienummer=referentienummer[:40],
            zender=zender[:20],
            functie=label,
            actor=f"{identity.name} via {identity.via or '-'}",
            origin=identity.peer,
            outcome=code,
            secret=secret,
        )
        try:
            await self.broker.audit_event(
                event, refused_by=identity.partner.id if identity.partner else None
            )
        except StorageError:
            log.error("audit.write_failed", code=code)

    async def _accept(
        self, element: etree._Element, identity: Identity, offload: bool
    ) -> Accepted | Rejected:
        if identity.partner is None:  # nothing of an unknown caller's message is read
            return Rejected("StUF052", "client", "sender is not authenticated")
        try:
            envelope = (
                await asyncio.to_thread(env.parse, element) if offload else env.parse(element)
            )
        except env.EnvelopeError as exc:
            return _unreadable(element, exc)
        rejected = self._check_envelope(envelope, identity)
        if rejected is not None:
            return rejected

        message: MessageType | None = None
        payload_root: etree._Element | None = None
        if envelope.kind is not env.Kind.FO01:
            if env.named_message(envelope.functie) is None:
                problem = env.check_text_payload(envelope, self.text_functies)
                if problem is not None:
                    return self._reject(envelope, "IB240", "client", _describe(problem))
            else:
                checked = await self._check_payload(envelope, identity)
                if isinstance(checked, Rejected):
                    return checked
                message, payload_root = checked
        return await self._store(element, envelope, identity, message, payload_root, offload)

    async def _accept_validated(
        self, validated: PayloadResult, wrapping: Wrapping, identity: Identity, offload: bool
    ) -> Accepted | Rejected:
        if identity.partner is None:  # nothing of an unknown caller's message is read
            return Rejected("StUF052", "client", "sender is not authenticated")
        if validated.identified is None:
            return Rejected("StUF055", "client", "payload not identified")
        build = functools.partial(
            env.build_tree,
            wrapping.kind,
            wrapping.payload,
            zender=identity.partner.id,
            zender_applicatie=wrapping.zender_applicatie,
            ontvanger=wrapping.ontvanger,
            functie=validated.identified.message.code,
            cross_ref=wrapping.cross_ref,
            referentienummer=wrapping.referentienummer,
        )
        element = await asyncio.to_thread(build) if offload else build()
        try:  # the envelope's schema and chain checks (about 1 ms for 1 MB: no decoding)
            envelope = env.parse(element, wrapping.payload)
        except env.EnvelopeError as exc:
            return _unreadable(element, exc)
        rejected = self._check_envelope(envelope, identity)
        if rejected is not None:
            return rejected
        checked = self._judge_payload(envelope, identity, validated)
        if isinstance(checked, Rejected):
            return checked
        message, payload_root = checked
        return await self._store(element, envelope, identity, message, payload_root, offload)

    async def _store(
        self,
        element: etree._Element,
        envelope: env.Envelope,
        identity: Identity,
        message: MessageType | None,
        payload_root: etree._Element | None,
        offload: bool,
    ) -> Accepted | Rejected:
        # Serialising, hashing and collecting BSNs cost tens of milliseconds for a message of
        # megabytes: done in a thread for a large one, so the loop goes on serving others.
        counted = (message, self.figure_keys) if message and self.figure_keys else None
        facts = (
            await asyncio.to_thread(stored_facts, element, envelope, payload_root, counted)
            if offload
            else stored_facts(element, envelope, payload_root, counted)
        )
        return await self._route_and_store(envelope, facts, identity, message, payload_root)

    async def _check_payload(
        self, envelope: env.Envelope, identity: Identity
    ) -> tuple[MessageType, etree._Element] | Rejected:
        """The payload of a functie that names an iWmo/iJw message: that message, as XML,
        passing XSD, rules, envelope/payload agreement and the sender-kind check, whatever
        the envelope's label (xmlBestand, tekstBestand, contentType) claims."""
        result = await self.payloads.validate_payload(envelope.payload)
        return self._judge_payload(envelope, identity, result)

    def _judge_payload(
        self, envelope: env.Envelope, identity: Identity, result: PayloadResult
    ) -> tuple[MessageType, etree._Element] | Rejected:
        """A validated payload against the rules of acceptance: no blocking problem, the
        envelope agreeing with it, and a sender of the kind that sends this message."""
        errors = result.report.errors
        blocking = [p for p in errors if p.level == 1 or self.reject_rule_violations]
        if blocking:
            first = blocking[0]
            code = "StUF055" if first.level == 1 else "StUF058"
            return self._reject(
                envelope, code, "client", _describe(first), details=f"{len(errors)} problem(s)"
            )
        if result.identified is None or result.root is None:
            return self._reject(envelope, "StUF055", "client", "payload not identified")
        message, payload_root = result.identified.message, result.root
        mismatch = [
            p
            for p in envelope_matches_payload(envelope, message, payload_root)
            if p.severity is Severity.ERROR
        ]
        if mismatch:
            return self._reject(
                envelope,
                ENVELOPE_CODES.get(mismatch[0].rule, "StUF055"),
                "client",
                _describe(mismatch[0]),
            )
        sender = identity.partner
        assert sender is not None
        if sender.kind.party is not message.sender:
            return self._reject(
                envelope, "IB234", "client", f"a {sender.kind.value} may not send {message.code}"
            )
        return message, payload_root

    def _check_envelope(self, envelope: env.Envelope, identity: Identity) -> Rejected | None:
        errors = [p for p in env.check(envelope) if p.severity is Severity.ERROR]
        if errors:
            return self._reject(
                envelope,
                ENVELOPE_CODES.get(errors[0].rule, "StUF055"),
                "client",
                _describe(errors[0]),
            )
        assert identity.partner is not None  # checked before the envelope was read
        if envelope.zender.organisatie != identity.partner.id:
            log.warning(
                "message.spoofed_sender",
                authenticated=identity.partner.id,
                claimed=envelope.zender.organisatie,
                peer=identity.peer,
            )
            return self._reject(
                envelope,
                "StUF052",
                "client",
                f"authenticated as {identity.partner.id}, may not send as "
                f"{envelope.zender.organisatie}",
            )
        if self.partners.get(envelope.ontvanger.organisatie) is None:
            return self._reject(
                envelope,
                "IB210",
                "client",
                f"receiving organisation {envelope.ontvanger.organisatie} "
                "is unknown to the gateway",
            )
        return None

    def _reject(
        self,
        envelope: env.Envelope,
        code: str,
        plek: str,
        omschrijving: str,
        details: str | None = None,
    ) -> Rejected:
        log.info(
            "message.rejected",
            referentienummer=envelope.referentienummer[:40],
            zender=envelope.zender.organisatie[:20],
            functie=env.functie_label(envelope.functie),
            code=code,
        )
        return Rejected(
            code,
            plek,
            omschrijving[:200],
            envelope.referentienummer,
            envelope.zender,
            details,
            envelope.functie,
        )

    async def _route_and_store(
        self,
        envelope: env.Envelope,
        facts: StoredFacts,
        identity: Identity,
        message: MessageType | None,
        payload_root: etree._Element | None,
    ) -> Accepted | Rejected:
        assert identity.partner is not None
        receiver = envelope.ontvanger.organisatie
        heen_id: str | None = None
        if envelope.kind is not env.Kind.DI01:
            heen = await self.broker.find_conversation(
                envelope.cross_ref or "",
                zender=receiver,
                ontvanger=identity.partner.id,
                kinds=ANSWERABLE[envelope.kind],
            )
            if heen is not None:
                heen_id = heen.id
            elif not self.lenient_conversations:
                # A conversation belongs to its two parties: a Du01/Fo01 answers only a
                # message its ontvanger sent to its zender. Another pair's reference gets
                # exactly the answer of one this gateway never saw (same code, same words, the
                # same lookup), so the refusal says nothing about other partners' messages.
                return self._reject(envelope, "StUF043", "client", NOT_YOUR_CONVERSATION)
        elif message is not None and payload_root is not None:
            # a 325 is linked to the 323 it answers, as a retour to its heenbericht
            heen_id = await answered_declaratie(
                self.broker, message, payload_root, zender=identity.partner.id
            )
        if message is not None and payload_root is not None and self.reject_rule_violations:
            # the pairs the gateway carries: an answer against its stored heenbericht
            found = await pair_problems(self.broker, message, payload_root, heen_id=heen_id)
            if found:
                return self._reject(
                    envelope,
                    "StUF058",
                    "client",
                    _describe(found[0]),
                    details=f"{len(found)} problem(s)",
                )
        routed = RoutedMessage(
            functie=envelope.functie or envelope.kind.value,
            standard=message.standard.value if message else None,
            sender=identity.partner.id,
            sender_kind=identity.partner.kind,
            receiver=receiver,
        )
        destinations = self.routes.route(routed)
        if isinstance(destinations, Refusal):
            return self._reject(envelope, destinations.code, "client", destinations.reason)
        planned = []
        for destination in destinations:
            partner = self.partners.get(destination.partner)
            if partner is None:
                return self._reject(
                    envelope,
                    "IB210",
                    "server",
                    f"route {destination.rule!r} names unknown partner {destination.partner}",
                )
            planned.append(
                PlannedDelivery(
                    partner.id,
                    partner.delivery.adapter,
                    destination.copy,
                    transports.holds(partner.delivery.adapter),
                )
            )
        header = payload_header(payload_root, message)
        record = NewMessage(
            id=uuid.uuid4().hex,
            kind=envelope.kind.value,
            zender=envelope.zender.organisatie,
            zender_applicatie=envelope.zender.applicatie,
            ontvanger=receiver,
            referentienummer=envelope.referentienummer,
            cross_ref=envelope.cross_ref,
            functie=envelope.functie,
            message_code=message.code if message else None,
            identificatie=header.get("identificatie"),
            payload_sender=header.get("sender"),
            digest=facts.digest,
            envelope=facts.raw,
            bv03_ref=env.new_referentienummer(),
            bv03_tijdstip=env.tijdstip_now(),
            heen_id=heen_id,
            retourcodes=header.get("retourcodes"),
            deliveries=tuple(planned),
            actor=f"{identity.name} via {identity.via}",
            origin=identity.peer,
            bsns=facts.bsns,
            payload_digest=facts.payload_digest,
            facts=facts.figures,
        )
        try:
            outcome: AcceptOutcome = await self.broker.accept(record)
        except StorageError as exc:
            log.error(
                "message.store_failed", referentienummer=envelope.referentienummer, error=str(exc)
            )
            return self._reject(envelope, "StUF046", "server", "storing the message failed")
        if outcome.status == "conflict":
            return self._reject(
                envelope,
                "StUF016",
                "client",
                "zender and referentienummer were used before for another message",
            )
        if outcome.status == "tr056":
            return self._reject(
                envelope,
                "StUF058",
                "client",
                f"TR056 [9056]: {header.get('sender')} already sent a "
                f"{record.message_code} with Identificatie "
                f"{header.get('identificatie')}",
            )
        log.info(
            "message.accepted",
            message_id=outcome.message_id,
            referentienummer=envelope.referentienummer,
            zender=record.zender,
            ontvanger=receiver,
            functie=env.functie_label(envelope.functie),
            destinations=[p.destination for p in planned],
            duplicate=outcome.status == "duplicate",
            retour_of=heen_id,
        )
        return Accepted(
            outcome.message_id,
            envelope.referentienummer,
            envelope.zender,
            outcome.bv03_ref,
            outcome.bv03_tijdstip,
            outcome.status == "duplicate",
            tuple(p.destination for p in planned),
        )


def _unreadable(element: etree._Element, exc: env.EnvelopeError) -> Rejected:
    """The refusal of an envelope that cannot be read: its first problem's foutcode."""
    first = exc.problems[0]
    log.info("message.rejected", referentienummer=env.reply_reference(element), rule=first.rule)
    return Rejected(
        ENVELOPE_CODES.get(first.rule, "StUF055"),
        "client",
        _describe(first)[:200],
        cross_ref=env.reply_reference(element),
        zender=env.reply_zender(element),
    )
