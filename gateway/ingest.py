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
from dataclasses import dataclass

import structlog
from lxml import etree

from gateway import audit, ids, transports
from gateway import envelope as env
from gateway.broker.base import AcceptOutcome, Broker, NewMessage, PlannedDelivery, StorageError
from gateway.figures import FigureKeys
from gateway.offload import LARGE_PAYLOAD_BYTES, PayloadValidator
from gateway.pairing import answered_declaratie, pair_problems
from gateway.readers import ReaderCrashed, ReaderLost, Readers
from gateway.reading import (
    Caller,
    Read,
    Refused,
    Rejected,
    Settings,
    answers_another,
    describe,
    judge_payload,
    log_fields,
    names_a_message,
    read_envelope,
    read_facts,
    refuse,
    spoofed,
    text_payload_refusal,
)
from gateway.soap import SoapFault
from gateway.standards import MessageType
from gateway.validation import PayloadResult, Validator
from gateway.xmlsafe import parse_untrusted
from routing.partners import Partner, PartnerRegistry
from routing.table import Refusal, RoutedMessage, RouteTable

log = structlog.get_logger("ggk.ingest")

NOT_YOUR_CONVERSATION = (
    "crossRefnummer names no message that the ontvanger sent to you through this gateway"
)
"""The one refusal for an unknown reference and for another pair's: no existence oracle."""

ANSWERABLE: dict[env.Kind, tuple[str, ...]] = {
    env.Kind.DU01: ("Di01",),
    env.Kind.FO01: ("Di01", "Du01"),
}
"""What an answer may refer to: a retour answers a heenbericht; a Fo01 either of them."""

ALONE_INLINE_BYTES = 32 * 1024
"""A SOAP request up to this size arriving alone is read in the gateway process
(:meth:`Ingress.read_soap`)."""


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
        readers: Readers | None = None,
    ) -> None:
        self.validator = validator
        self.readers = readers
        """Reader processes for SOAP requests (gateway/readers.py); None: read here."""
        self.settings = Settings(text_functies, reject_rule_violations)
        """What reading needs of the configuration (the free-text functies, whether rule
        violations are refused): the same object the readers get, less the figures key."""
        self.lenient_conversations = lenient_conversations
        """``[gateway] conversations = "lenient"``: an answer to a reference that is not a
        message between its two parties is routed by its envelope and stored unlinked
        (migrations), instead of refused with StUF043."""
        self.figure_keys = figure_keys
        """Keys of the beleidsinformatie facts (gateway/figures.py); None: none are taken."""
        self.payloads = payloads or PayloadValidator(validator, readers)
        """Large payloads to a reader process once started (see gateway.offload)."""
        self.partners = partners
        self.routes = routes
        self.broker = broker

    async def accept_envelope(
        self, element: etree._Element, identity: Identity, *, offload: bool = False
    ) -> Accepted | Rejected:
        """Accept or refuse; every refusal is audited (nothing else is stored for it).
        ``offload``: a large envelope, read in a thread instead of on the event loop."""
        return await self._audited(await self._accept(element, identity, offload), identity)

    async def read_soap(
        self, body: bytes, soap_action: str | None, identity: Identity, *, alone: bool = False
    ) -> Read | Refused | None:
        """A SOAP request read by a reader process; None when there is none to read it (or
        it was lost on the way), or when it is small and ``alone`` (no other request is
        being handled): the caller then unwraps it and calls :meth:`accept_envelope`.
        Raises :class:`gateway.soap.SoapFault` as :func:`gateway.soap.unwrap` does.

        Why not always a reader: a reader is worth its hand-over when the event loop has
        other requests to serve meanwhile. A small message arriving alone (the common case
        below a few hundred messages a second) is read sooner and for less CPU right here:
        waking a sleeping process for each one cost 21 % more CPU per message at 100 msg/s
        (docs/benchmarks.md, "Reader processes"). Only a small one (:data:`ALONE_INLINE_BYTES`;
        most iWmo/iJw messages are a few KB): what a partner sends one at a time costs the
        loop no more than a REST message of that size, and a larger one keeps a reader's
        isolation and deadline."""
        if self.readers is None or not self.readers.running or identity.partner is None:
            return None
        if alone and len(body) <= ALONE_INLINE_BYTES:
            return None
        try:
            read: Read | Refused = await self.readers.read_soap(
                body, soap_action, self._caller(identity)
            )
        except ReaderCrashed:
            # two readers ended on this message: it is not read here, where it could take
            # the gateway down with it; the sender may send it again
            log.error("message.unreadable", peer=identity.peer, partner=identity.name)
            raise SoapFault(
                "StUF046", "server", "the message could not be read; send it again later"
            ) from None
        except ReaderLost:
            return None
        return read

    async def accept_read(self, read: Read | Refused, identity: Identity) -> Accepted | Rejected:
        """Accept or refuse a message a reader process read (:meth:`read_soap`)."""
        return await self._audited(await self._settle(read, identity), identity)

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

    def _caller(self, identity: Identity) -> Caller:
        assert identity.partner is not None  # checked before anything is read
        partner = identity.partner
        return Caller(partner.id, partner.kind.party, partner.kind.value)

    async def _accept(
        self, element: etree._Element, identity: Identity, offload: bool
    ) -> Accepted | Rejected:
        """Read the envelope here (gateway/reading.py's stages; the large steps in a thread,
        the payload's validation in a reader when large) and accept it."""
        if identity.partner is None:  # nothing of an unknown caller's message is read
            return Rejected("StUF052", "client", "sender is not authenticated")
        caller = self._caller(identity)
        envelope = (
            await asyncio.to_thread(read_envelope, element, caller)
            if offload
            else read_envelope(element, caller)
        )
        if isinstance(envelope, Refused):
            return self._refused(envelope, identity)
        unknown = self._unknown_receiver(envelope)
        if unknown is not None:
            return unknown
        message: MessageType | None = None
        payload_root: etree._Element | None = None
        if names_a_message(envelope):
            result = await self.payloads.validate_payload(envelope.payload)
            judged = judge_payload(envelope, caller, result, self.settings)
            if isinstance(judged, Refused):
                return self._refused(judged, identity)
            message, payload_root = judged
        elif envelope.kind is not env.Kind.FO01:
            refused = text_payload_refusal(envelope, self.settings)
            if refused is not None:
                return self._refused(refused, identity)
        return await self._settle(
            await self._facts(element, envelope, message, payload_root, offload),
            identity,
            payload_root,
        )

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
        caller = self._caller(identity)
        # the envelope's schema and chain checks (about 1 ms for 1 MB: no decoding)
        envelope = read_envelope(element, caller, wrapping.payload)
        if isinstance(envelope, Refused):
            return self._refused(envelope, identity)
        unknown = self._unknown_receiver(envelope)
        if unknown is not None:
            return unknown
        judged = judge_payload(envelope, caller, validated, self.settings)
        if isinstance(judged, Refused):
            return self._refused(judged, identity)
        message, payload_root = judged
        return await self._settle(
            await self._facts(element, envelope, message, payload_root, offload),
            identity,
            payload_root,
        )

    async def _facts(
        self,
        element: etree._Element,
        envelope: env.Envelope,
        message: MessageType | None,
        payload_root: etree._Element | None,
        offload: bool,
    ) -> Read:
        """What is stored beside the routing; in a thread for a large message, so the loop
        goes on serving others while megabytes are serialised and hashed."""
        args = (element, envelope, message, payload_root, self.figure_keys)
        return await asyncio.to_thread(read_facts, *args) if offload else read_facts(*args)

    async def _settle(
        self,
        read: Read | Refused,
        identity: Identity,
        payload_root: etree._Element | None = None,
    ) -> Accepted | Rejected:
        """A read message (here or by a reader process) through what depends on the gateway's
        state: the ontvanger a partner, the conversation, the pair, the route, the store."""
        if identity.partner is None:
            return Rejected("StUF052", "client", "sender is not authenticated")
        if isinstance(read, Refused):
            return self._refused(read, identity)
        envelope = read.envelope
        if envelope.zender.organisatie != identity.partner.id:  # a reader's word, checked
            return self._refused(spoofed(envelope, self._caller(identity)), identity)
        unknown = self._unknown_receiver(envelope)
        if unknown is not None:
            return unknown
        message = read.message_type
        if payload_root is None and answers_another(message):
            # read by a reader process: linking a 325 and the pair checks need its tree here
            # (a large one parsed in a thread, so the loop goes on serving others)
            args = (envelope.payload, self.validator.limits)
            payload_root = (
                await asyncio.to_thread(parse_untrusted, *args)
                if len(envelope.payload) > LARGE_PAYLOAD_BYTES
                else parse_untrusted(*args)
            )
        return await self._route_and_store(envelope, read, identity, message, payload_root)

    def _unknown_receiver(self, envelope: env.Envelope) -> Rejected | None:
        if self.partners.get(envelope.ontvanger.organisatie) is not None:
            return None
        return self._reject(
            envelope,
            "IB210",
            "client",
            f"receiving organisation {envelope.ontvanger.organisatie} is unknown to the gateway",
        )

    def _refused(self, refused: Refused, identity: Identity) -> Rejected:
        """Log a refusal of the reading stages; an unknown ontvanger comes first (IB210), as
        when it is checked before the payload."""
        if refused.ontvanger is not None and self.partners.get(refused.ontvanger) is None:
            unknown = Rejected(
                "IB210",
                "client",
                f"receiving organisation {refused.ontvanger} is unknown to the gateway"[:200],
                refused.rejected.cross_ref,
                refused.rejected.zender,
                None,
                refused.rejected.functie,
            )
            log.info("message.rejected", **log_fields(unknown))
            return unknown
        if refused.spoofed is not None:
            log.warning("message.spoofed_sender", **refused.spoofed, peer=identity.peer)
        log.info("message.rejected", **refused.fields)
        return refused.rejected

    def _reject(
        self,
        envelope: env.Envelope,
        code: str,
        plek: str,
        omschrijving: str,
        details: str | None = None,
    ) -> Rejected:
        refused = refuse(envelope, code, omschrijving, plek=plek, details=details)
        log.info("message.rejected", **refused.fields)
        return refused.rejected

    async def _route_and_store(
        self,
        envelope: env.Envelope,
        read: Read,
        identity: Identity,
        message: MessageType | None,
        payload_root: etree._Element | None,
    ) -> Accepted | Rejected:
        assert identity.partner is not None
        facts, header = read.facts, read.header
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
        if (
            message is not None
            and payload_root is not None
            and self.settings.reject_rule_violations
        ):
            # the pairs the gateway carries: an answer against its stored heenbericht
            found = await pair_problems(self.broker, message, payload_root, heen_id=heen_id)
            if found:
                return self._reject(
                    envelope,
                    "StUF058",
                    "client",
                    describe(found[0]),
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
        record = NewMessage(
            id=ids.message_id(),
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
            envelope.functie,
        )
