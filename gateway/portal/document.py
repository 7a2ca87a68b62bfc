"""An iWmo/iJw payload as a document a person reads: sections of labelled, typed fields.

The message page (and the forms that will be prefilled from a source message) need more
than a tree of element names: a client with a BSN, products with their category and code
named from the official lists, periods as dates, amounts as money. :func:`read` turns a
payload into a language-neutral :class:`Document`: every label is a Dutch msgid (translated
where it is shown), every code carries the list's name for it, dates stay ISO dates and
amounts are whole cents. Nothing here formats for a language or knows HTML.

Driven by the message's own structure: the payload is walked together with its XSD (the
files the gateway validates with, ``schemas/``), so each value's kind comes from its schema
type (``LDT_Bedrag`` → amount in cents, ``LDT_Datum`` → date, ``LDT_BurgerServicenummer`` →
BSN, a type with an official code list → code), for all 28 iWmo/iJw 3.2 messages alike,
without a hand-written layout per message.

Safe by construction: bytes are parsed only by the hardened parser (gateway/xmlsafe.py: size
limit, no DTD, entities or network, depth limit); the schema is loaded sandboxed
(gateway/portal/contents.py). Callers decide first who may read the message: this module
reads whatever it is given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from lxml import etree

from gateway import envelope as env
from gateway.portal.contents import MAX_BYTES, MAX_FIELDS, Reader
from gateway.portal.explain import N_, code_name, type_code_name
from gateway.xmlsafe import ParseLimits, UnsafeXml, parse_untrusted

_LIMITS = ParseLimits(max_bytes=MAX_BYTES)
_ENVELOPE_LIMITS = ParseLimits(max_bytes=MAX_BYTES * 2)

AMOUNT_TYPES = frozenset({"LDT_Bedrag", "LDT_Budget", "LDT_TotaalBedrag"})
"""Schema types holding money in cents (the standards' own unit)."""
KINDS = {
    "LDT_BurgerServicenummer": "bsn",
    "LDT_Datum": "date",
    "LDT_Tijd": "time",
}

LABELS: dict[str, str] = {
    "Header": N_("Bericht"),
    "BerichtCode": N_("Berichtcode"),
    "BerichtVersie": N_("Versie"),
    "BerichtSubversie": N_("Subversie"),
    "Afzender": N_("Afzender"),
    "Ontvanger": N_("Ontvanger"),
    "BerichtIdentificatie": N_("Berichtidentificatie"),
    "Identificatie": N_("Identificatie"),
    "Dagtekening": N_("Dagtekening"),
    "XsdVersie": N_("XSD-versie"),
    "BasisschemaXsdVersie": N_("Basisschema"),
    "BerichtXsdVersie": N_("Berichtschema"),
    "IdentificatieRetour": N_("Identificatie retour"),
    "DagtekeningRetour": N_("Dagtekening retour"),
    "Client": N_("Cliënt"),
    "Clienten": N_("Cliënten"),
    "Bsn": N_("BSN"),
    "Geboortedatum": N_("Geboortedatum"),
    "Datum": N_("Datum"),
    "DatumGebruik": N_("Datumgebruik"),
    "Geslacht": N_("Geslacht"),
    "Naam": N_("Naam"),
    "Geslachtsnaam": N_("Geslachtsnaam"),
    "Partnernaam": N_("Partnernaam"),
    "Achternaam": N_("Achternaam"),
    "Voorvoegsel": N_("Voorvoegsel"),
    "Voornamen": N_("Voornamen"),
    "Voorletters": N_("Voorletters"),
    "NaamGebruik": N_("Naamgebruik"),
    "Communicatie": N_("Communicatie"),
    "Vorm": N_("Vorm"),
    "Taal": N_("Taal"),
    "Commentaar": N_("Opmerking"),
    "Relaties": N_("Relaties"),
    "Relatie": N_("Relatie"),
    "Nummer": N_("Nummer"),
    "Volgorde": N_("Volgorde"),
    "Soort": N_("Soort"),
    "Contact": N_("Contact"),
    "Contactgegevens": N_("Contactgegevens"),
    "Telefoon": N_("Telefoon"),
    "Telefoonnummer": N_("Telefoonnummer"),
    "Landnummer": N_("Landnummer"),
    "Emailadres": N_("E-mailadres"),
    "Adres": N_("Adres"),
    "Huis": N_("Huis"),
    "Huisnummer": N_("Huisnummer"),
    "Huisletter": N_("Huisletter"),
    "HuisnummerToevoeging": N_("Toevoeging"),
    "Postcode": N_("Postcode"),
    "Straatnaam": N_("Straat"),
    "Plaatsnaam": N_("Plaats"),
    "LandCode": N_("Land"),
    "ToegewezenProducten": N_("Toegewezen producten"),
    "ToegewezenProduct": N_("Toegewezen product"),
    "ToewijzingNummer": N_("Toewijzingnummer"),
    "Product": N_("Product"),
    "Categorie": N_("Categorie"),
    "Code": N_("Code"),
    "ProductCategorie": N_("Categorie"),
    "ProductCode": N_("Productcode"),
    "Toewijzingsdatum": N_("Toewijzingsdatum"),
    "Toewijzingstijd": N_("Toewijzingstijd"),
    "Ingangsdatum": N_("Ingangsdatum"),
    "Einddatum": N_("Einddatum"),
    "Begindatum": N_("Begindatum"),
    "Omvang": N_("Omvang"),
    "Volume": N_("Volume"),
    "Eenheid": N_("Eenheid"),
    "Frequentie": N_("Frequentie"),
    "Budget": N_("Budget"),
    "RedenWijziging": N_("Reden wijziging"),
    "RedenBeeindiging": N_("Reden beëindiging"),
    "RedenVerzoek": N_("Reden verzoek"),
    "ReferentieAanbieder": N_("Referentie aanbieder"),
    "VerzoekAntwoord": N_("Antwoord op het verzoek"),
    "RedenAfwijzingVerzoek": N_("Reden afwijzing"),
    "Declaratie": N_("Declaratie"),
    "DeclaratieNummer": N_("Declaratienummer"),
    "DeclaratiePeriode": N_("Declaratieperiode"),
    "DeclaratieDagtekening": N_("Dagtekening declaratie"),
    "TotaalIngediendBedrag": N_("Totaal ingediend"),
    "TotaalToegekendBedrag": N_("Totaal toegekend"),
    "TotaalBedrag": N_("Bedrag"),
    "DebetCredit": N_("Debet/credit"),
    "Prestaties": N_("Prestaties"),
    "Prestatie": N_("Prestatie"),
    "ProductReferentie": N_("Productreferentie"),
    "ReferentieNummer": N_("Referentienummer"),
    "VorigReferentieNummer": N_("Vorig referentienummer"),
    "ProductPeriode": N_("Periode"),
    "GeleverdVolume": N_("Geleverd volume"),
    "ProductTarief": N_("Tarief"),
    "IngediendBedrag": N_("Ingediend bedrag"),
    "ToegekendBedrag": N_("Toegekend bedrag"),
    "Bedrag": N_("Bedrag"),
    "RetourCodes": N_("Retourcodes"),
    "RetourCode": N_("Retourcode"),
    "Beschikking": N_("Beschikking"),
    "BeschikkingNummer": N_("Beschikkingnummer"),
    "JuridischeStatus": N_("Juridische status"),
    "WettelijkeVertegenwoordiging": N_("Wettelijke vertegenwoordiging"),
    "StatusAanlevering": N_("Status aanlevering"),
    "Verwijzer": N_("Verwijzer"),
    "Type": N_("Type"),
    "ZorgverlenerCode": N_("Zorgverlenercode"),
    "Dagtekeningen": N_("Dagtekeningen"),
}
"""Dutch labels (msgids) of the standards' element names; an element not named here is
shown by its own name split into words (``GeleverdVolume`` → ``Geleverd volume``)."""


@dataclass(frozen=True, slots=True)
class Field:
    """One value: ``label`` a Dutch msgid, ``kind`` one of text, code, date, time, amount,
    bsn, number; ``code_name`` the official name of a code; ``cents`` an amount's value;
    ``path`` where it stands in the message (``Client/ToegewezenProducten/
    ToegewezenProduct[1]/Product/Categorie``), for a form that copies it."""

    label: str
    value: str
    kind: str = "text"
    path: str = ""
    code_name: str | None = None
    cents: int | None = None


@dataclass(frozen=True, slots=True)
class Section:
    """A group of the message (the header, the client, one product, one prestatie)."""

    label: str
    path: str
    fields: tuple[Field, ...] = ()
    sections: tuple[Section, ...] = ()

    def all_fields(self) -> list[Field]:
        """Every field of this section and its subsections, in document order."""
        out = list(self.fields)
        for section in self.sections:
            out.extend(section.all_fields())
        return out


@dataclass(frozen=True, slots=True)
class Document:
    """A payload made readable, or why it is not (``note``, a Dutch msgid)."""

    code: str = ""
    """The message's code (``JW301``), '' when unknown."""
    sections: tuple[Section, ...] = ()
    note: str | None = None

    def all_fields(self) -> list[Field]:
        out: list[Field] = []
        for section in self.sections:
            out.extend(section.all_fields())
        return out

    def bsns(self) -> list[str]:
        """Every BSN the message holds (to be masked where it is shown)."""
        return [f.value for f in self.all_fields() if f.kind == "bsn"]


def label(name: str) -> str:
    """The Dutch label (msgid) of an element name."""
    known = LABELS.get(name)
    if known is not None:
        return known
    words = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name).split()
    return " ".join([words[0], *(w.lower() for w in words[1:])]) if words else name


def read(data: bytes, reader: Reader) -> Document:
    """The payload ``data`` as a :class:`Document` (a note instead when it cannot be read)."""
    if len(data) > MAX_BYTES:
        return Document(note=N_("Dit bericht is te groot om hier te tonen; download het."))
    try:
        root = parse_untrusted(data, _LIMITS)
    except UnsafeXml:
        return Document(note=N_("De inhoud is geen leesbare XML."))
    described = reader.registry.file_for(etree.QName(root).namespace or "")
    if described is None:
        return Document(note=N_("Voor deze inhoud is geen schema bekend."))
    schema = reader._schema(described.path)
    declared = schema.elements.get(etree.QName(root).localname)
    standard = described.path.parent.parent.name  # schemas/<standard>/<version>/x.xsd
    walker = _Walker(standard, [MAX_FIELDS])
    code = etree.QName(root).namespace or ""
    match = re.search(r"/(jw|wmo)(\d{3})/", code)
    message_code = f"{match.group(1).upper()}{match.group(2)}" if match else ""
    sections = tuple(
        walker.section(child, _child_decl(declared, child), etree.QName(child).localname)
        for child in _elements(root)
    )
    note = None if walker.budget[0] >= 0 else N_("Niet alle waarden worden getoond.")
    return Document(message_code, sections, note)


def read_envelope(data: bytes, reader: Reader) -> Document:
    """The payload of a stored StUF-GGk envelope as a :class:`Document`."""
    if len(data) > MAX_BYTES * 2:  # base64 makes the payload 4/3 of itself
        return Document(note=N_("Dit bericht is te groot om hier te tonen; download het."))
    try:
        envelope = env.parse(parse_untrusted(data, _ENVELOPE_LIMITS))
    except (UnsafeXml, env.EnvelopeError):
        return Document(note=N_("De envelop kan niet worden gelezen."))
    if not envelope.payload or not envelope.payload_is_xml:
        return Document(note=N_("Dit bericht heeft geen XML-inhoud om te tonen."))
    return read(envelope.payload, reader)


def _elements(node: etree._Element) -> list[etree._Element]:
    return [c for c in node if isinstance(c.tag, str)]


def _child_decl(parent: Any, child: etree._Element) -> Any:
    """The XSD declaration of ``child`` within ``parent``'s declaration, or None."""
    if parent is None:
        return None
    content = getattr(parent.type, "content", None)
    if content is None or not hasattr(content, "iter_elements"):
        return None
    name = etree.QName(child).localname
    for decl in content.iter_elements():
        if getattr(decl, "local_name", None) == name:
            return decl
    return None


def _type_names(decl: Any) -> list[str]:
    """The names of a declaration's simple type and its bases, nearest first."""
    names: list[str] = []
    kind = getattr(decl, "type", None)
    while kind is not None and len(names) < 8:
        local = getattr(kind, "local_name", None)
        if local:
            names.append(local)
        kind = getattr(kind, "base_type", None)
    return names


class _Walker:
    def __init__(self, standard: str, budget: list[int]) -> None:
        self.standard = standard
        self.budget = budget

    def section(self, node: etree._Element, decl: Any, path: str) -> Section:
        fields: list[Field] = []
        sections: list[Section] = []
        counts: dict[str, int] = {}
        category = ""  # a product's category, for the name of its code
        children = _elements(node)
        names = [etree.QName(c).localname for c in children]
        for child, name in zip(children, names, strict=True):
            counts[name] = counts.get(name, 0) + 1
            where = f"{path}/{name}"
            if names.count(name) > 1:
                where += f"[{counts[name]}]"
            child_decl = _child_decl(decl, child)
            if _elements(child):
                sections.append(self.section(child, child_decl, where))
            elif self.budget[0] > 0:
                self.budget[0] -= 1
                text = (child.text or "").strip()
                fields.append(self.field(name, text, child_decl, where, category))
                if name in ("Categorie", "ProductCategorie"):
                    category = text
            else:
                self.budget[0] = -1
        return Section(label(etree.QName(node).localname), path, tuple(fields), tuple(sections))

    def field(self, name: str, value: str, decl: Any, path: str, category: str = "") -> Field:
        types = _type_names(decl)
        for type_name in types:
            if type_name in AMOUNT_TYPES and re.fullmatch(r"-?\d{1,15}", value):
                return Field(label(name), value, "amount", path, cents=int(value))
            if type_name in KINDS:
                return Field(label(name), value, KINDS[type_name], path)
            named = type_code_name(self.standard, type_name, value)
            if named is not None:  # '' : a coded type, a code its list does not name
                return Field(label(name), value, "code", path, code_name=named or None)
        if name in ("Code", "ProductCode"):
            named = code_name((f"{self.standard}-productcodes-{category}",), value)
            return Field(label(name), value, "code", path, code_name=named)
        if types and types[0] in ("integer", "LDT_Volume", "LDT_Nummer"):
            return Field(label(name), value, "number", path)
        return Field(label(name), value, "text", path)
