"""Beleidsinformatie at the source: the countable facts of an accepted message.

The CBS *Gemeentelijke Monitor Sociaal Domein* asks gemeenten for toewijzingen, starts and
stops of zorg, declared and granted amounts and unique clients per product category and
month. Every one of those is in the flow this gateway already carries, so the facts are
taken from the validated payload when a message is accepted (the only moment it is read in
the clear) and stored beside it without any personal data: the client is a keyed
pseudonym of its own (not the audit log's: the figures cannot be joined to anything else),
and the references that link a verzoek to its toewijzing, a toewijzing to its start and a
declaratie to its antwoord are keyed digests too. :mod:`gateway.stats` turns the facts into
the published table, with small cells suppressed.

A fact is one product line: a ToegewezenProduct of a 301, a StartProduct of a 305, a
StopProduct of a 307, an AangevraagdProduct of a 315, a Prestatie of a 323, a rejected
Prestatie of a 325 (plus one fact per 325 for the answer itself).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

from lxml import etree

from gateway.standards import MessageType, Standard

UNKNOWN_CATEGORY = "-"
"""The category of a product line that names none (Product is optional in 301/305/307/315)."""


class FactKind(StrEnum):
    VERZOEK = "verzoek"
    """A product asked for in a verzoek om toewijzing (315)."""
    TOEWIJZING = "toewijzing"
    START = "start"
    STOP = "stop"
    DECLARATIE = "declaratie"
    """A declared prestatie (323); ``amount`` is its IngediendBedrag, credit negative."""
    AFGEWEZEN = "afgewezen"
    """A prestatie the gemeente rejected in its declaratie-antwoord (325)."""
    ANTWOORD = "antwoord"
    """A declaratie-antwoord (325) as a whole: the declaratie it answers is settled."""


@dataclass(frozen=True, slots=True)
class Fact:
    """One countable product line; nothing in it identifies a person."""

    kind: FactKind
    standard: str
    """``wmo`` or ``jw``."""
    gemeente: str
    aanbieder: str
    categorie: str
    month: str
    """``YYYY-MM`` of the business date (toewijzingsdatum, begindatum, einddatum, product
    period); empty when the line has none (then the month the message arrived is used)."""
    client: str | None
    """The figures pseudonym of the client's BSN."""
    key: str
    """What is counted once: the same toewijzing sent again in a later 301 is one toewijzing."""
    amount: int | None = None
    """Euro cents, signed (credit negative)."""
    link: str | None = None
    """A digest later facts may follow (a verzoek, a toewijzing, a declaratie)."""
    follows: str | None = None
    """The link of the fact this one answers: the doorlooptijd runs from that one to this."""


class FigureKeys:
    """Keyed digests for facts: one key, derived from the keyring's pseudonym key, so
    pseudonyms are stable across restarts and processes but differ from the audit log's."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def digest(self, *parts: str) -> str:
        data = "\x1f".join(parts).encode()
        return hmac.new(self._key, data, hashlib.sha256).hexdigest()[:32]


def extract(root: etree._Element, message: MessageType, keys: FigureKeys) -> tuple[Fact, ...]:
    """The facts of one validated payload (an empty tuple for messages that count nothing:
    retourberichten, 317/319)."""
    header = root.find("{*}Header")
    if header is None:
        return ()
    reader = _Reader(root, message, keys)
    number = message.number
    if number == 301:
        return tuple(reader.toewijzingen())
    if number in (305, 307):
        return tuple(reader.starts_stops(FactKind.START if number == 305 else FactKind.STOP))
    if number == 315:
        return tuple(reader.verzoeken())
    if number == 323:
        return tuple(reader.declaraties())
    if number == 325:
        return tuple(reader.antwoorden())
    return ()


class _Reader:
    def __init__(self, root: etree._Element, message: MessageType, keys: FigureKeys) -> None:
        self.root = root
        self.keys = keys
        self.standard = "wmo" if message.standard is Standard.IWMO else "jw"
        header = root.find("{*}Header")
        assert header is not None
        afzender = _text(header, "Afzender")
        ontvanger = _text(header, "Ontvanger")
        from_gemeente = message.header_afzender.value == "gemeente"
        self.gemeente = afzender if from_gemeente else ontvanger
        self.aanbieder = ontvanger if from_gemeente else afzender
        self.identificatie = _text(header, "BerichtIdentificatie/{*}Identificatie")

    def fact(
        self,
        kind: FactKind,
        categorie: str,
        month: str,
        client: str | None,
        *,
        key: str,
        amount: int | None = None,
        link: str | None = None,
        follows: str | None = None,
    ) -> Fact:
        return Fact(
            kind,
            self.standard,
            self.gemeente,
            self.aanbieder,
            categorie or UNKNOWN_CATEGORY,
            month,
            client,
            key,
            amount,
            link,
            follows,
        )

    def client(self, element: etree._Element | None) -> str | None:
        """The figures pseudonym of the element's Bsn."""
        bsn = _text(element, "Bsn") if element is not None else ""
        return self.keys.digest("bsn", bsn) if bsn else None

    def toewijzing_link(self, nummer: str) -> str:
        # a ToewijzingNummer is unique within its gemeente (and standard)
        return self.keys.digest("toewijzing", self.standard, self.gemeente, nummer)

    def verzoek_link(self, referentie: str) -> str:
        return self.keys.digest("verzoek", self.standard, self.aanbieder, referentie)

    def declaratie_link(self, identificatie: str) -> str:
        return self.keys.digest("declaratie", self.standard, self.aanbieder, identificatie)

    def toewijzingen(self) -> Iterator[Fact]:
        client = self.client(self.root.find("{*}Client"))
        for product in self.root.iterfind("{*}Client/{*}ToegewezenProducten/{*}ToegewezenProduct"):
            nummer = _text(product, "ToewijzingNummer")
            referentie = _text(product, "ReferentieAanbieder")
            link = self.toewijzing_link(nummer)
            yield self.fact(
                FactKind.TOEWIJZING,
                _text(product, "Product/{*}Categorie"),
                _month(_text(product, "Toewijzingsdatum")),
                client,
                key=link,
                link=link,
                follows=self.verzoek_link(referentie) if referentie else None,
            )

    def starts_stops(self, kind: FactKind) -> Iterator[Fact]:
        client = self.client(self.root.find("{*}Client"))
        container = (
            "StartProducten/{*}StartProduct"
            if kind is FactKind.START
            else ("StopProducten/{*}StopProduct")
        )
        for product in self.root.iterfind(f"{{*}}Client/{{*}}{container}"):
            if _text(product, "StatusAanlevering") == "3":
                continue  # a withdrawn report (StatusAanlevering 3: verwijderen) counts nothing
            nummer = _text(product, "ToewijzingNummer")
            categorie = _text(product, "Product/{*}Categorie")
            date = _text(product, "Begindatum" if kind is FactKind.START else "Einddatum")
            follows = self.toewijzing_link(nummer) if nummer else None
            yield self.fact(
                kind,
                categorie,
                _month(date),
                client,
                key=self.keys.digest(kind.value, follows or f"{client}|{categorie}", date),
                follows=follows,
            )

    def verzoeken(self) -> Iterator[Fact]:
        client = self.client(self.root.find("{*}Client"))
        for product in self.root.iterfind(
            "{*}Client/{*}AangevraagdeProducten/{*}AangevraagdProduct"
        ):
            link = self.verzoek_link(_text(product, "ReferentieAanbieder"))
            yield self.fact(
                FactKind.VERZOEK,
                _text(product, "Product/{*}Categorie"),
                "",  # a verzoek counts in the month it arrived
                client,
                key=link,
                link=link,
            )

    def declaraties(self) -> Iterator[Fact]:
        link = self.declaratie_link(self.identificatie)
        for client_element in self.root.iterfind("{*}Declaratie/{*}Clienten/{*}Client"):
            client = self.client(client_element)
            for prestatie in client_element.iterfind("{*}Prestaties/{*}Prestatie"):
                yield self.fact(
                    FactKind.DECLARATIE,
                    _text(prestatie, "ProductCategorie"),
                    _month(_text(prestatie, "ProductPeriode/{*}Begindatum")),
                    client,
                    key=self.keys.digest(
                        "prestatie", link, _text(prestatie, "ProductReferentie/{*}ReferentieNummer")
                    ),
                    amount=_amount(prestatie.find("{*}IngediendBedrag")),
                    link=link,
                )

    def antwoorden(self) -> Iterator[Fact]:
        header = self.root.find("{*}Header")
        assert header is not None
        answered = self.declaratie_link(_text(header, "DeclaratieIdentificatie/{*}Identificatie"))
        answer = self.root.find("{*}DeclaratieAntwoord")
        yield self.fact(
            FactKind.ANTWOORD,
            UNKNOWN_CATEGORY,
            "",
            None,
            key=self.keys.digest("antwoord", answered),
            amount=_amount(answer.find("{*}TotaalToegekendBedrag"), total=True)
            if answer is not None
            else None,
            follows=answered,
        )
        if answer is None:
            return
        for client_element in answer.iterfind("{*}Clienten/{*}Client"):
            client = self.client(client_element)
            for prestatie in client_element.iterfind("{*}Prestaties/{*}Prestatie"):
                yield self.fact(
                    FactKind.AFGEWEZEN,
                    _text(prestatie, "ProductCategorie"),
                    _month(_text(prestatie, "ProductPeriode/{*}Begindatum")),
                    client,
                    key=self.keys.digest(
                        "afgewezen",
                        answered,
                        _text(prestatie, "ProductReferentie/{*}ReferentieNummer"),
                    ),
                    amount=_amount(prestatie.find("{*}IngediendBedrag")),
                    follows=answered,
                )


def _text(element: etree._Element, path: str) -> str:
    return (element.findtext(f"{{*}}{path}") or "").strip()


def _month(date: str) -> str:
    """``YYYY-MM`` of an xs:date; empty for anything else (the arrival month is used)."""
    month = date[:7]
    return month if len(month) == 7 and month[4] == "-" and month.replace("-", "").isdigit() else ""


def _amount(element: etree._Element | None, *, total: bool = False) -> int | None:
    """A CDT_BedragMetDC / CDT_TotaalBedragMetDC in signed euro cents (credit negative)."""
    if element is None:
        return None
    text = _text(element, "TotaalBedrag" if total else "Bedrag")
    if not text.isdigit():
        return None
    value = int(text)
    return -value if _text(element, "DebetCredit") == "C" else value
