"""What the store keeps of an accepted message beside its routing: the envelope as
accepted, the digests that recognise a re-offer, the BSNs (sealed, pseudonymised) and the
beleidsinformatie facts; and the payload header's routing facts. Computed once per message,
in a thread for large ones (gateway/ingest.py)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from lxml import etree

from gateway import envelope as env
from gateway.figures import Fact, FigureKeys, extract
from gateway.identify import parties
from gateway.standards import Kind, MessageType


@dataclass(frozen=True, slots=True)
class StoredFacts:
    """What is stored of an accepted message beside its routing facts."""

    raw: bytes
    """The envelope as accepted (what is stored, sealed, and delivered)."""
    digest: str
    payload_digest: str
    bsns: tuple[str, ...]
    figures: tuple[Fact, ...]


def stored_facts(
    element: etree._Element,
    envelope: env.Envelope,
    payload_root: etree._Element | None,
    counted: tuple[MessageType, FigureKeys] | None,
) -> StoredFacts:
    raw: bytes = etree.tostring(element, encoding="UTF-8", xml_declaration=True)
    bsns = (
        tuple(sorted({(el.text or "").strip() for el in payload_root.iter("{*}Bsn")}))
        if payload_root is not None
        else ()
    )
    figures = extract(payload_root, *counted) if payload_root is not None and counted else ()
    return StoredFacts(
        raw, content_digest(envelope), hashlib.sha256(envelope.payload).hexdigest(), bsns, figures
    )


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
    answers = message.kind is Kind.RETOUR or message.number == 325
    codes = [c.text or "" for c in root.iter("{*}RetourCode")] if answers else []
    return {
        "sender": found.sender,
        "identificatie": found.identificatie,
        "retourcodes": ",".join(sorted(set(codes))) or None,
    }
