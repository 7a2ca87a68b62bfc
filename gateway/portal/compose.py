"""Messages a clerk composes in the portal, built from their source message with lxml.

A care provider without software answers a toewijzing (301) in the browser: the portal reads
the toewijzing it received (parsed by the hardened parser, gateway/xmlsafe.py) and builds the
answer as an element tree in the official 3.2 structure, the header filled from the source
(the gemeente, the aanbieder, the heenbericht's BerichtIdentificatie, which is how the gateway
links a retour to its heenbericht). What the clerk typed goes in as element text only, after
its shape and length were checked here (:func:`checked_identificatie`, :func:`checked_datum`):
nothing is ever concatenated into XML. The result then takes the API's path (validation,
rules, accept), so the portal can build nothing the API would not take.
"""

from __future__ import annotations

import datetime
import re
from copy import deepcopy
from dataclasses import dataclass

from lxml import etree

from gateway.portal.explain import N_
from gateway.schemas import SchemaRegistry
from gateway.xmlsafe import ParseLimits, UnsafeXml, parse_untrusted

TOEWIJZING_NS = re.compile(r"http://www\.istandaarden\.nl/(iwmo|ijw)/3_2/(wmo|jw)301/schema")
"""The namespace of a 3.2 toewijzing (WMO301 or JW301), matched whole."""

LIMITS = ParseLimits(max_bytes=1024 * 1024)
"""A toewijzing is small; one larger than this is not composed from (it is downloaded)."""

IDENTIFICATIE = re.compile(r"[A-Za-z0-9._-]{1,12}")
"""LDT_IdentificatieBericht is 1 to 12 characters; the portal takes letters, digits and
``._-`` only (no spaces, no control characters, nothing a reader could mistake)."""

RETOUR_AT = frozenset({"Client", "Relatie", "Contact", "ToegewezenProduct"})
"""The 302's elements that carry their own RetourCodes (schemas/*/3_2/*302.xsd): last child."""

AKKOORD = "0200"
"""Retourcode 0200: the message (or element) was accepted."""


@dataclass(frozen=True, slots=True)
class Product:
    """One toegewezen product as the form shows it."""

    nummer: str
    categorie: str
    code: str
    ingangsdatum: str
    einddatum: str
    volume: str
    eenheid: str
    frequentie: str
    budget: str


@dataclass(frozen=True, slots=True)
class Toewijzing:
    """A received 301, read for composing its answers."""

    root: etree._Element
    standard: str
    """``iwmo`` or ``ijw``."""
    prefix: str
    """``wmo`` or ``jw``: the message namespaces' prefix."""
    gemeente: str
    aanbieder: str
    identificatie: str
    dagtekening: str
    client: str
    """The client's name as written (voorletters and achternaam), never the BSN."""
    products: tuple[Product, ...]
    bsn: str = ""
    """Only for the messages composed from it (the 323's Client); never shown on a page."""

    def namespace(self, number: str) -> str:
        return f"http://www.istandaarden.nl/{self.standard}/3_2/{self.prefix}{number}/schema"

    @property
    def base(self) -> str:
        return f"http://www.istandaarden.nl/{self.standard}/3_2/basisschema/schema"

    @property
    def code(self) -> str:
        """The message type of the answer: ``JW302`` or ``WMO302``."""
        return f"{self.prefix.upper()}302"


def _text(element: etree._Element | None, path: str) -> str:
    found = element.find(path) if element is not None else None
    return (found.text or "").strip() if found is not None else ""


def read_toewijzing(payload: bytes) -> Toewijzing | None:
    """The toewijzing in ``payload``, or None when it is not a readable 3.2 WMO301/JW301."""
    try:
        root = parse_untrusted(payload, LIMITS)
    except UnsafeXml:
        return None
    matched = TOEWIJZING_NS.fullmatch(etree.QName(root).namespace or "")
    if matched is None or etree.QName(root).localname != "Bericht":
        return None
    header = root.find("{*}Header")
    client = root.find("{*}Client")
    if header is None or client is None:
        return None
    products = tuple(
        Product(
            nummer=_text(p, "{*}ToewijzingNummer"),
            categorie=_text(p, "{*}Product/{*}Categorie"),
            code=_text(p, "{*}Product/{*}Code"),
            ingangsdatum=_text(p, "{*}Ingangsdatum"),
            einddatum=_text(p, "{*}Einddatum"),
            volume=_text(p, "{*}Omvang/{*}Volume"),
            eenheid=_text(p, "{*}Omvang/{*}Eenheid"),
            frequentie=_text(p, "{*}Omvang/{*}Frequentie"),
            budget=_text(p, "{*}Budget"),
        )
        for p in client.iterfind("{*}ToegewezenProducten/{*}ToegewezenProduct")
    )
    naam = client.find("{*}Naam")
    name = " ".join(
        part
        for part in (
            _text(naam, "{*}Voorletters"),
            _text(naam, "{*}Geslachtsnaam/{*}Voorvoegsel"),
            _text(naam, "{*}Geslachtsnaam/{*}Achternaam"),
        )
        if part
    )
    return Toewijzing(
        root=root,
        standard=matched.group(1),
        prefix=matched.group(2),
        gemeente=_text(header, "{*}Afzender"),
        aanbieder=_text(header, "{*}Ontvanger"),
        identificatie=_text(header, "{*}BerichtIdentificatie/{*}Identificatie"),
        dagtekening=_text(header, "{*}BerichtIdentificatie/{*}Dagtekening"),
        client=name,
        products=products,
        bsn=_text(client, "{*}Bsn"),
    )


def checked_identificatie(value: str) -> str | None:
    """Why ``value`` cannot be a message's Identificatie (a Dutch msgid), or None."""
    if not IDENTIFICATIE.fullmatch(value):
        return N_("Geef 1 tot 12 letters, cijfers of de tekens . _ - (geen spaties).")
    return None


def checked_datum(value: str) -> str | None:
    """Why ``value`` is not a date (JJJJ-MM-DD) in this century (a Dutch msgid), or None."""
    try:
        day = datetime.date.fromisoformat(value) if len(value) == 10 else None
    except ValueError:
        day = None
    if day is None or not 2000 <= day.year <= 2099:
        return N_("Geef een datum als JJJJ-MM-DD, bijvoorbeeld 2026-10-05.")
    return None


def versions(registry: SchemaRegistry, namespace: str) -> tuple[str, str]:
    """(BasisschemaXsdVersie, BerichtXsdVersie) a message of ``namespace`` quotes (IV034)."""
    described = registry.file_for(namespace)
    if described is None:
        return "1.0.0", "1.0.0"
    return (
        described.basisschema_xsd_versie or "1.0.0",
        described.bericht_xsd_versie or "1.0.0",
    )


def berichtcode(registry: SchemaRegistry, namespace: str) -> str:
    """The BerichtCode a message of ``namespace`` carries: the pattern its XSD fixes."""
    described = registry.file_for(namespace)
    if described is not None:
        schema = etree.parse(str(described.path), etree.XMLParser(resolve_entities=False))
        xs = "{http://www.w3.org/2001/XMLSchema}"
        for pattern in schema.iterfind(
            f"{xs}complexType[@name='Header']/{xs}sequence/{xs}element[@name='BerichtCode']"
            f"//{xs}pattern"
        ):
            return pattern.get("value", "")
    return ""


def add(parent: etree._Element, tag: str, text: str) -> etree._Element:
    element = etree.SubElement(parent, tag)
    element.text = text
    return element


def _retourcodes(parent: etree._Element, namespace: str) -> None:
    codes = etree.SubElement(parent, f"{{{namespace}}}RetourCodes")
    add(codes, f"{{{namespace}}}RetourCode", AKKOORD)


def echo(
    source: etree._Element,
    target: etree._Element,
    heen: str,
    retour: str,
    classes: frozenset[str] = RETOUR_AT,
) -> None:
    """Copy ``source``'s children under ``target``, the heenbericht's elements renamed into
    the retour's namespace, each element of ``classes`` (the retour's classes of table 2.3;
    a 302's by default) closed with retourcode 0200."""
    for child in source:
        if not isinstance(child.tag, str):
            continue  # comments and processing instructions are not part of the message
        name = etree.QName(child)
        if name.namespace != heen:
            target.append(deepcopy(child))  # the basisschema's elements stay as they are
            continue
        copy = etree.SubElement(target, f"{{{retour}}}{name.localname}")
        if len(child) == 0:
            copy.text = child.text
        else:
            echo(child, copy, heen, retour, classes)
        if name.localname in classes:
            _retourcodes(copy, retour)


def retour_302(
    source: Toewijzing, registry: SchemaRegistry, identificatie: str, dagtekening: str
) -> bytes:
    """The 302 that confirms ``source`` (retourcode 0200 throughout): the toewijzing echoed
    in the 302's structure, with the retour's own IdentificatieRetour and DagtekeningRetour
    (checked by the caller with :func:`checked_identificatie` and :func:`checked_datum`)."""
    heen, retour = source.namespace("301"), source.namespace("302")
    prefix = f"{source.prefix}302"
    base_prefix = source.standard
    root = etree.Element(f"{{{retour}}}Bericht", nsmap={base_prefix: source.base, prefix: retour})
    header = etree.SubElement(root, f"{{{retour}}}Header")
    old = source.root.find(f"{{{heen}}}Header")
    assert old is not None  # read_toewijzing found it
    basis, bericht = versions(registry, retour)
    for child in old:
        if not isinstance(child.tag, str):
            continue
        name = etree.QName(child).localname
        if name == "BerichtCode":
            add(header, f"{{{retour}}}BerichtCode", berichtcode(registry, retour))
        elif len(child) == 0:
            add(header, f"{{{retour}}}{name}", child.text or "")
        else:
            copy = etree.SubElement(header, f"{{{retour}}}{name}")
            for grandchild in child:
                if isinstance(grandchild.tag, str):
                    copy.append(deepcopy(grandchild))
    add(header, f"{{{retour}}}IdentificatieRetour", identificatie)
    add(header, f"{{{retour}}}DagtekeningRetour", dagtekening)
    versie = etree.SubElement(header, f"{{{retour}}}XsdVersieRetour")
    add(versie, f"{{{source.base}}}BasisschemaXsdVersie", basis)
    add(versie, f"{{{source.base}}}BerichtXsdVersie", bericht)
    _retourcodes(header, retour)
    client = etree.SubElement(root, f"{{{retour}}}Client")
    old_client = source.root.find(f"{{{heen}}}Client")
    assert old_client is not None
    echo(old_client, client, heen, retour)
    _retourcodes(client, retour)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


@dataclass(frozen=True, slots=True)
class Start:
    """One product whose zorg starts (305), or stops (307, with ``reden`` and ``einddatum``)."""

    product: Product
    begindatum: str
    reden: str = ""
    einddatum: str = ""


def reden_codes(registry: SchemaRegistry, source: Toewijzing) -> tuple[str, ...]:
    """The codes of RedenBeeindiging its basisschema allows (LDT_RedenBeeindiging)."""
    return enumeration(registry, source, "LDT_RedenBeeindiging")


def enumeration(registry: SchemaRegistry, source: Toewijzing, type_name: str) -> tuple[str, ...]:
    """The codes the basisschema of ``source``'s standard allows for ``type_name``."""
    described = registry.file_for(source.namespace("307"))
    if described is None:
        return ()
    basis = etree.parse(
        str(described.path.parent / "basisschema.xsd"), etree.XMLParser(resolve_entities=False)
    )
    xs = "{http://www.w3.org/2001/XMLSchema}"
    return tuple(
        str(e.get("value"))
        for e in basis.iterfind(
            f"{xs}simpleType[@name='{type_name}']/{xs}restriction/{xs}enumeration"
        )
    )


def client_kort(parent: etree._Element, source: Toewijzing, ns: str) -> etree._Element:
    """The client as a 305/307 names it: BSN, birth date, sex and the short name, copied
    from the toewijzing."""
    old = source.root.find("{*}Client")
    assert old is not None
    client = etree.SubElement(parent, f"{{{ns}}}Client")
    add(client, f"{{{ns}}}Bsn", _text(old, "{*}Bsn"))
    geboren = etree.SubElement(client, f"{{{ns}}}Geboortedatum")
    for child in old.iterfind("{*}Geboortedatum/*"):
        geboren.append(deepcopy(child))
    add(client, f"{{{ns}}}Geslacht", _text(old, "{*}Geslacht"))
    naam = etree.SubElement(client, f"{{{ns}}}Naam")
    for part in ("Geslachtsnaam", "Voornamen", "Voorletters"):
        found = old.find(f"{{*}}Naam/{{*}}{part}")
        if found is not None:
            naam.append(deepcopy(found))
    return client


def heen_305_307(
    source: Toewijzing,
    registry: SchemaRegistry,
    number: str,
    identificatie: str,
    dagtekening: str,
    products: list[Start],
) -> bytes:
    """A 305 (start zorg) or 307 (stop zorg) from the aanbieder to the gemeente of
    ``source``, one Start/StopProduct per entry of ``products`` (its values checked by the
    caller: :func:`checked_datum`, a RedenBeeindiging of :func:`reden_codes`)."""
    ns = source.namespace(number)
    base = source.base
    root = etree.Element(
        f"{{{ns}}}Bericht", nsmap={source.standard: base, f"{source.prefix}{number}": ns}
    )
    header = etree.SubElement(root, f"{{{ns}}}Header")
    add(header, f"{{{ns}}}BerichtCode", berichtcode(registry, ns))
    add(header, f"{{{ns}}}BerichtVersie", "3")
    add(header, f"{{{ns}}}BerichtSubversie", "2")
    add(header, f"{{{ns}}}Afzender", source.aanbieder)
    add(header, f"{{{ns}}}Ontvanger", source.gemeente)
    ident = etree.SubElement(header, f"{{{ns}}}BerichtIdentificatie")
    add(ident, f"{{{base}}}Identificatie", identificatie)
    add(ident, f"{{{base}}}Dagtekening", dagtekening)
    basis, bericht = versions(registry, ns)
    versie = etree.SubElement(header, f"{{{ns}}}XsdVersie")
    add(versie, f"{{{base}}}BasisschemaXsdVersie", basis)
    add(versie, f"{{{base}}}BerichtXsdVersie", bericht)
    client = client_kort(root, source, ns)
    kind = "Start" if number == "305" else "Stop"
    container = etree.SubElement(client, f"{{{ns}}}{kind}Producten")
    for entry in products:
        item = etree.SubElement(container, f"{{{ns}}}{kind}Product")
        add(item, f"{{{ns}}}ToewijzingNummer", entry.product.nummer)
        product = etree.SubElement(item, f"{{{ns}}}Product")
        add(product, f"{{{base}}}Categorie", entry.product.categorie)
        if entry.product.code:
            add(product, f"{{{base}}}Code", entry.product.code)
        add(item, f"{{{ns}}}ToewijzingIngangsdatum", entry.product.ingangsdatum)
        add(item, f"{{{ns}}}Begindatum", entry.begindatum)
        if kind == "Stop":
            add(item, f"{{{ns}}}RedenBeeindiging", entry.reden)
            add(item, f"{{{ns}}}Einddatum", entry.einddatum)
        add(item, f"{{{ns}}}StatusAanlevering", "1")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def product_lines(payload: bytes, item: str) -> list[int]:
    """The line each ``item`` element (StartProduct, …) of a composed message starts on: a
    finding's line tells which product it concerns (its path names no index)."""
    root = etree.fromstring(payload, etree.XMLParser(resolve_entities=False, no_network=True))
    lines: list[int] = []
    for element in root.iter(f"{{*}}{item}"):
        line = element.sourceline
        lines.append(line if isinstance(line, int) else 0)
    return lines
