"""``ggk submit --fresh``: the same message again, with new identities.

A sample sent twice is refused the second time, rightly: its Identificatie was used (TR056)
and, in an envelope, its referentienummer too (StUF016). To try the demo again, or to load a
test system with one sample, the message keeps its content and gets a new Identificatie (for
a retourbericht: a new IdentificatieRetour; its BerichtIdentificatie names the heen message
and stays) and, in an envelope, a new referentienummer.
"""

from __future__ import annotations

import base64
import uuid

from lxml import etree

from gateway import envelope as env
from gateway.xmlsafe import parse_own


def new_identificatie() -> str:
    """12 characters (LDT_IdentificatieBericht allows 1-12)."""
    return "F" + uuid.uuid4().hex[:11].upper()


def fresh_payload(data: bytes) -> bytes:
    """An iWmo/iJw message with a new (retour) Identificatie; anything else unchanged."""
    root = parse_own(data)
    header = root.find("{*}Header")
    if header is None:
        return data
    target = header.find("{*}IdentificatieRetour")
    if target is None:
        target = header.find("{*}BerichtIdentificatie/{*}Identificatie")
    if target is None:
        return data
    target.text = new_identificatie()
    fresh: bytes = etree.tostring(root, encoding="UTF-8", xml_declaration=True)
    return fresh


def fresh_envelope(data: bytes) -> bytes:
    """A ggk_Di01/Du01 with a new referentienummer and a fresh payload inside."""
    root = parse_own(data)
    reference = root.find(f"{{*}}stuurgegevens/{{{env.STUF_NS}}}referentienummer")
    if reference is not None:
        reference.text = env.new_referentienummer()
    for holder in root.iter("{*}xmlBestand", "{*}bericht"):
        if holder.text and holder.text.strip():
            payload = base64.b64decode("".join(holder.text.split()))
            holder.text = base64.b64encode(fresh_payload(payload)).decode("ascii")
    fresh: bytes = etree.tostring(root, encoding="UTF-8", xml_declaration=True)
    return fresh
