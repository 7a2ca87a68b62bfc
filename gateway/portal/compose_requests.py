"""The heenberichten a clerk composes from a toewijzing beside the answers of
gateway/portal/compose.py: the declaratie (323), the verzoek om wijziging (317) and the verzoek
om toewijzing (315), built the same way (values checked first, then element text only)."""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass

from lxml import etree

from gateway.portal.compose import (
    Product,
    Toewijzing,
    add,
    berichtcode,
    client_kort,
    versions,
)
from gateway.schemas import SchemaRegistry


@dataclass(frozen=True, slots=True)
class Prestatie:
    """One declared product over (part of) the declaratie's month, its values checked."""

    source: Toewijzing
    product: Product
    begindatum: str
    einddatum: str
    volume: int
    eenheid: str
    tarief: int | None
    """Cents per eenheid; None for an amount in euros (eenheid 83)."""
    bedrag: int
    referentie: str
    code: str
    """The ProductCode (required in a 323; a toewijzing of a category may have none)."""


EUROS = "83"
"""Eenheid 83: the volume is an amount in euro-cents (a budget), without a tariff."""


def declaratie_323(
    first: Toewijzing,
    registry: SchemaRegistry,
    identificatie: str,
    dagtekening: str,
    nummer: str,
    begin: str,
    end: str,
    prestaties: list[Prestatie],
) -> bytes:
    """A 323 from the aanbieder to ``first``'s gemeente over the month ``begin``..``end``,
    one Client per BSN with its Prestaties (all from toewijzingen of that gemeente and
    standard; the caller checked each value), debit throughout, the total their sum."""
    ns = first.namespace("323")
    base = first.base
    root = etree.Element(f"{{{ns}}}Bericht", nsmap={first.standard: base, f"{first.prefix}323": ns})
    header = etree.SubElement(root, f"{{{ns}}}Header")
    add(header, f"{{{ns}}}BerichtCode", berichtcode(registry, ns))
    add(header, f"{{{ns}}}BerichtVersie", "3")
    add(header, f"{{{ns}}}BerichtSubversie", "2")
    add(header, f"{{{ns}}}Afzender", first.aanbieder)
    add(header, f"{{{ns}}}Ontvanger", first.gemeente)
    ident = etree.SubElement(header, f"{{{ns}}}BerichtIdentificatie")
    add(ident, f"{{{base}}}Identificatie", identificatie)
    add(ident, f"{{{base}}}Dagtekening", dagtekening)
    basis, bericht = versions(registry, ns)
    versie = etree.SubElement(header, f"{{{ns}}}XsdVersie")
    add(versie, f"{{{base}}}BasisschemaXsdVersie", basis)
    add(versie, f"{{{base}}}BerichtXsdVersie", bericht)
    declaratie = etree.SubElement(root, f"{{{ns}}}Declaratie")
    add(declaratie, f"{{{ns}}}DeclaratieNummer", nummer)
    periode = etree.SubElement(declaratie, f"{{{ns}}}DeclaratiePeriode")
    add(periode, f"{{{base}}}Begindatum", begin)
    add(periode, f"{{{base}}}Einddatum", end)
    add(declaratie, f"{{{ns}}}DeclaratieDagtekening", dagtekening)
    totaal = etree.SubElement(declaratie, f"{{{ns}}}TotaalIngediendBedrag")
    add(totaal, f"{{{base}}}TotaalBedrag", str(sum(p.bedrag for p in prestaties)))
    add(totaal, f"{{{base}}}DebetCredit", "D")
    clienten = etree.SubElement(declaratie, f"{{{ns}}}Clienten")
    by_bsn: dict[str, etree._Element] = {}
    for p in prestaties:
        if p.source.bsn not in by_bsn:
            client = etree.SubElement(clienten, f"{{{ns}}}Client")
            add(client, f"{{{ns}}}Bsn", p.source.bsn)
            by_bsn[p.source.bsn] = etree.SubElement(client, f"{{{ns}}}Prestaties")
        item = etree.SubElement(by_bsn[p.source.bsn], f"{{{ns}}}Prestatie")
        referentie = etree.SubElement(item, f"{{{ns}}}ProductReferentie")
        add(referentie, f"{{{base}}}ReferentieNummer", p.referentie)
        add(item, f"{{{ns}}}ToewijzingNummer", p.product.nummer)
        add(item, f"{{{ns}}}ProductCategorie", p.product.categorie)
        add(item, f"{{{ns}}}ProductCode", p.code)
        periode = etree.SubElement(item, f"{{{ns}}}ProductPeriode")
        add(periode, f"{{{base}}}Begindatum", p.begindatum)
        add(periode, f"{{{base}}}Einddatum", p.einddatum)
        add(item, f"{{{ns}}}GeleverdVolume", str(p.volume))
        add(item, f"{{{ns}}}Eenheid", p.eenheid)
        if p.tarief is not None:
            add(item, f"{{{ns}}}ProductTarief", str(p.tarief))
        bedrag = etree.SubElement(item, f"{{{ns}}}IngediendBedrag")
        add(bedrag, f"{{{base}}}Bedrag", str(p.bedrag))
        add(bedrag, f"{{{base}}}DebetCredit", "D")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


MAAND = re.compile(r"(20\d\d)-(0[1-9]|1[0-2])")
CENTS = re.compile(r"(\d{1,6})(?:[,.](\d{1,2}))?")
"""An amount in euros as a clerk types it (``62,50``, ``62.5``, ``62``): up to 999999."""
WHOLE = re.compile(r"\d{1,8}")


def month(value: str) -> tuple[str, str] | None:
    """The first and last day of the month ``JJJJ-MM``, or None."""
    found = MAAND.fullmatch(value)
    if found is None:
        return None
    year, number = int(found.group(1)), int(found.group(2))
    last = datetime.date(year + number // 12, number % 12 + 1, 1) - datetime.timedelta(days=1)
    return f"{value}-01", last.isoformat()


def cents(value: str) -> int | None:
    """Euro-cents of an amount typed as euros, or None when it is not one."""
    found = CENTS.fullmatch(value)
    if found is None:
        return None
    fraction = (found.group(2) or "0").ljust(2, "0")
    return int(found.group(1)) * 100 + int(fraction)


def whole(value: str) -> int | None:
    """A whole number of up to 8 digits (LDT_Volume), or None."""
    return int(value) if WHOLE.fullmatch(value) else None


@dataclass(frozen=True, slots=True)
class Wijziging:
    """One toegewezen product the aanbieder asks to change (317), its values checked."""

    product: Product
    ingangsdatum: str
    einddatum: str
    volume: str
    """The new volume (with the toewijzing's eenheid and frequentie); empty for a budget."""
    budget: str
    """The new budget in cents; empty for a product with an omvang."""


def _header(
    root: etree._Element,
    source: Toewijzing,
    registry: SchemaRegistry,
    ns: str,
    identificatie: str,
    dagtekening: str,
) -> None:
    """A heenbericht's header from the aanbieder to ``source``'s gemeente."""
    base = source.base
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


def verzoek_317(
    source: Toewijzing,
    registry: SchemaRegistry,
    identificatie: str,
    dagtekening: str,
    referentie: str,
    reden: str,
    changes: list[Wijziging],
) -> bytes:
    """A 317 asking ``source``'s gemeente to change the products in ``changes``; the
    toewijzing's other products are listed unchanged (the caller checked every value)."""
    ns = source.namespace("317")
    base = source.base
    root = etree.Element(
        f"{{{ns}}}Bericht", nsmap={source.standard: base, f"{source.prefix}317": ns}
    )
    _header(root, source, registry, ns, identificatie, dagtekening)
    client = etree.SubElement(root, f"{{{ns}}}Client")
    add(client, f"{{{ns}}}Bsn", source.bsn)
    verzoek = etree.SubElement(client, f"{{{ns}}}Verzoek")
    add(verzoek, f"{{{ns}}}ReferentieAanbieder", referentie)
    add(verzoek, f"{{{ns}}}RedenVerzoek", reden)
    changed = {c.product.nummer for c in changes}
    unchanged = [p for p in source.products if p.nummer not in changed]
    if unchanged:
        group = etree.SubElement(verzoek, f"{{{ns}}}OngewijzigdeProducten")
        for product in unchanged:
            item = etree.SubElement(group, f"{{{ns}}}OngewijzigdProduct")
            add(item, f"{{{ns}}}ToewijzingNummer", product.nummer)
    group = etree.SubElement(verzoek, f"{{{ns}}}TeWijzigenProducten")
    for change in changes:
        item = etree.SubElement(group, f"{{{ns}}}TeWijzigenProduct")
        add(item, f"{{{ns}}}ToewijzingNummer", change.product.nummer)
        add(item, f"{{{ns}}}GewensteIngangsdatum", change.ingangsdatum)
        if change.einddatum:
            add(item, f"{{{ns}}}Einddatum", change.einddatum)
        if change.volume:
            omvang = etree.SubElement(item, f"{{{ns}}}Omvang")
            add(omvang, f"{{{base}}}Volume", change.volume)
            add(omvang, f"{{{base}}}Eenheid", change.product.eenheid)
            add(omvang, f"{{{base}}}Frequentie", change.product.frequentie)
        if change.budget:
            add(item, f"{{{ns}}}Budget", change.budget)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


@dataclass(frozen=True, slots=True)
class Aanvraag:
    """The product a 315 asks for, its values checked (a volume with the eenheid and
    frequentie of the toewijzing's product it is modelled on, or a budget in cents)."""

    referentie: str
    categorie: str
    code: str
    ingangsdatum: str
    einddatum: str
    volume: str
    eenheid: str
    frequentie: str
    budget: str
    verwijzer: str
    zorgverlener: str


def verzoek_315(
    source: Toewijzing,
    registry: SchemaRegistry,
    identificatie: str,
    dagtekening: str,
    asked: Aanvraag,
) -> bytes:
    """A 315 asking ``source``'s gemeente for a toewijzing for the same client (its BSN,
    birth date, sex and name copied from the toewijzing)."""
    ns = source.namespace("315")
    base = source.base
    root = etree.Element(
        f"{{{ns}}}Bericht", nsmap={source.standard: base, f"{source.prefix}315": ns}
    )
    _header(root, source, registry, ns, identificatie, dagtekening)
    client = client_kort(root, source, ns)
    group = etree.SubElement(client, f"{{{ns}}}AangevraagdeProducten")
    item = etree.SubElement(group, f"{{{ns}}}AangevraagdProduct")
    add(item, f"{{{ns}}}ReferentieAanbieder", asked.referentie)
    product = etree.SubElement(item, f"{{{ns}}}Product")
    add(product, f"{{{base}}}Categorie", asked.categorie)
    if asked.code:
        add(product, f"{{{base}}}Code", asked.code)
    add(item, f"{{{ns}}}ToewijzingIngangsdatum", asked.ingangsdatum)
    if asked.einddatum:
        add(item, f"{{{ns}}}ToewijzingEinddatum", asked.einddatum)
    if asked.volume:
        omvang = etree.SubElement(item, f"{{{ns}}}Omvang")
        add(omvang, f"{{{base}}}Volume", asked.volume)
        add(omvang, f"{{{base}}}Eenheid", asked.eenheid)
        add(omvang, f"{{{base}}}Frequentie", asked.frequentie)
    if asked.budget:
        add(item, f"{{{ns}}}Budget", asked.budget)
    verwijzer = etree.SubElement(item, f"{{{ns}}}Verwijzer")
    add(verwijzer, f"{{{base}}}Type", asked.verwijzer)
    if asked.zorgverlener:
        add(verwijzer, f"{{{base}}}ZorgverlenerCode", asked.zorgverlener)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
