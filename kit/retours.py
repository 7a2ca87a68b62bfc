"""A gemeente's answers, built with lxml from the heenbericht it received: the retour of a
305, 307, 315 or 317 (306, 308, 316, 318) and the declaratie-antwoord of a 323 (325), each
accepting everything (retourcode 0200; a 325 granting the whole declaratie, 8001).

What a partner's own software does: the retour copies the heenbericht's Header and classes
unchanged (IV028: the gateway compares them with the heenbericht it stored), renamed into the
retour's namespace, adds its IdentificatieRetour, DagtekeningRetour and XsdVersieRetour, and
closes the Header and each class of table 2.3 with RetourCodes. The XSD versions the answer
quotes of itself are the bundled sample's of the same message (samples/), so they follow the
release the samples are of.
"""

from __future__ import annotations

import re
from copy import deepcopy

from lxml import etree

from gateway.pairing import stored_payload
from gateway.portal.compose import RETOUR_AT, add, echo
from gateway.standards import BY_CODE
from kit.messages import SAMPLES

MESSAGE_NS = re.compile(r"(http://www\.istandaarden\.nl/(iwmo|ijw)/3_2/)(wmo|jw)(\d{3})/schema")
"""A 3.2 message namespace: (base, standard, prefix, number)."""

RETOUR_CLASSES: dict[str, frozenset[str]] = {
    "302": RETOUR_AT,
    "306": frozenset({"Client", "StartProduct"}),
    "308": frozenset({"Client", "StopProduct"}),
    "316": frozenset({"Client", "AangevraagdProduct"}),
    "318": frozenset(
        {"Client", "Verzoek", "OngewijzigdProduct", "TeWijzigenProduct", "NieuwProduct"}
    ),
}
"""The classes of each retour that end with their own RetourCodes (table 2.3; the schemas say
the same: tests/test_schemas.py)."""

AKKOORD = "0200"
VOLLEDIG_TOEGEKEND = "8001"


def payload_of(envelope: bytes) -> bytes:
    """The iWmo/iJw message in a Di01 an inbox hands out (``GET /api/v1/inbox/{id}``)."""
    return stored_payload(envelope)


def _names(root: etree._Element) -> tuple[str, str, str, str, str]:
    """(basisschema namespace, standard, prefix, number, the namespaces' common start) of a
    3.2 message: ``jw305`` lives in ``{start}jw305/schema``."""
    found = MESSAGE_NS.fullmatch(etree.QName(root).namespace or "")
    assert found is not None, etree.QName(root).namespace
    start = found.group(1)
    return f"{start}basisschema/schema", found.group(2), found.group(3), found.group(4), start


def _sample_versions(standard: str, code: str) -> etree._Element:
    """The XsdVersie of the bundled sample of ``code`` (``jw306``): what it quotes of itself."""
    root = etree.parse(str(SAMPLES / standard / f"{code}.xml")).getroot()
    versie = root.find("{*}Header/{*}XsdVersieRetour")
    if versie is None:
        versie = root.find("{*}Header/{*}XsdVersie")
    assert versie is not None, code
    return versie


def _codes(parent: etree._Element, ns: str, code: str = AKKOORD) -> None:
    add(etree.SubElement(parent, f"{{{ns}}}RetourCodes"), f"{{{ns}}}RetourCode", code)


def _versions(parent: etree._Element, tag: str, source: etree._Element) -> None:
    """``tag`` under ``parent`` holding ``source``'s (basisschema) version elements."""
    holder = etree.SubElement(parent, tag)
    for child in source:
        if isinstance(child.tag, str):
            holder.append(deepcopy(child))


def retour_for(heen_payload: bytes, identificatie: str, dagtekening: str) -> bytes:
    """The retour accepting ``heen_payload`` (a 301, 305, 307, 315 or 317) in full, with its
    own ``identificatie`` and ``dagtekening`` (IdentificatieRetour, DagtekeningRetour)."""
    root = etree.fromstring(heen_payload, etree.XMLParser(resolve_entities=False))
    base, standard, prefix, number, start = _names(root)
    answer = str(int(number) + 1)
    heen_ns = f"{start}{prefix}{number}/schema"
    ns = f"{start}{prefix}{answer}/schema"
    code = BY_CODE[f"{prefix.upper()}{answer}"].bericht_code
    out = etree.Element(f"{{{ns}}}Bericht", nsmap={standard: base, f"{prefix}{answer}": ns})
    header = etree.SubElement(out, f"{{{ns}}}Header")
    old = root.find(f"{{{heen_ns}}}Header")
    assert old is not None
    echo(old, header, heen_ns, ns, frozenset())
    berichtcode = header.find(f"{{{ns}}}BerichtCode")
    assert berichtcode is not None
    berichtcode.text = code
    add(header, f"{{{ns}}}IdentificatieRetour", identificatie)
    add(header, f"{{{ns}}}DagtekeningRetour", dagtekening)
    _versions(header, f"{{{ns}}}XsdVersieRetour", _sample_versions(standard, f"{prefix}{answer}"))
    _codes(header, ns)
    body = [c for c in root if isinstance(c.tag, str) and etree.QName(c).localname != "Header"]
    holder = etree.Element("holder")
    for child in body:
        holder.append(deepcopy(child))
    echo(holder, out, heen_ns, ns, RETOUR_CLASSES[answer])
    return etree.tostring(out, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def declaratie_antwoord(declaratie: bytes, identificatie: str, dagtekening: str) -> bytes:
    """The 325 granting ``declaratie`` (a 323) in full (8001): it names the declaratie
    (DeclaratieIdentificatie, XsdVersieDeclaratie: TR337, TR371), repeats its number and
    TotaalIngediendBedrag (TR376, IV087) and grants that amount; no prestatie is listed."""
    root = etree.fromstring(declaratie, etree.XMLParser(resolve_entities=False))
    base, standard, prefix, number, start = _names(root)
    assert number == "323", number
    heen_ns = f"{start}{prefix}323/schema"
    ns = f"{start}{prefix}325/schema"

    def heen(path: str) -> etree._Element:
        found = root.find(path.replace("H:", f"{{{heen_ns}}}"))
        assert found is not None, path
        return found

    out = etree.Element(f"{{{ns}}}Bericht", nsmap={standard: base, f"{prefix}325": ns})
    header = etree.SubElement(out, f"{{{ns}}}Header")
    add(header, f"{{{ns}}}BerichtCode", BY_CODE[f"{prefix.upper()}325"].bericht_code)
    for name in ("BerichtVersie", "BerichtSubversie"):
        add(header, f"{{{ns}}}{name}", heen(f"H:Header/H:{name}").text or "")
    add(header, f"{{{ns}}}Afzender", heen("H:Header/H:Ontvanger").text or "")
    add(header, f"{{{ns}}}Ontvanger", heen("H:Header/H:Afzender").text or "")
    ident = etree.SubElement(header, f"{{{ns}}}BerichtIdentificatie")
    add(ident, f"{{{base}}}Identificatie", identificatie)
    add(ident, f"{{{base}}}Dagtekening", dagtekening)
    _versions(header, f"{{{ns}}}XsdVersie", _sample_versions(standard, f"{prefix}325"))
    _versions(header, f"{{{ns}}}DeclaratieIdentificatie", heen("H:Header/H:BerichtIdentificatie"))
    _versions(header, f"{{{ns}}}XsdVersieDeclaratie", heen("H:Header/H:XsdVersie"))
    _codes(header, ns)
    body = etree.SubElement(out, f"{{{ns}}}DeclaratieAntwoord")
    add(body, f"{{{ns}}}DeclaratieNummer", heen("H:Declaratie/H:DeclaratieNummer").text or "")
    ingediend = heen("H:Declaratie/H:TotaalIngediendBedrag")
    _versions(body, f"{{{ns}}}TotaalIngediendBedrag", ingediend)
    _versions(body, f"{{{ns}}}TotaalToegekendBedrag", ingediend)
    _codes(body, ns, VOLLEDIG_TOEGEKEND)
    return etree.tostring(out, xml_declaration=True, encoding="UTF-8", pretty_print=True)
