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
from dataclasses import dataclass, fields
from enum import StrEnum
from operator import attrgetter

from lxml import etree

from gateway.standards import MessageType, Standard, basis_namespace, parse_namespace

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

    def __reduce__(self) -> tuple[type[Fact], tuple[object, ...]]:
        """Pickled as the constructor and its arguments: a reader process sends every fact
        of a message to the gateway, and the event loop unpickles them. A slotted
        dataclass's own ``__setstate__`` is Python walking its fields: the answer for a
        1 MB declaratie (1,302 facts) took 4.8 ms of the loop to unpickle, now 2.1."""
        return (Fact, _fact_fields(self))


_fact_fields = attrgetter(*(field.name for field in fields(Fact)))
"""A fact's fields in order, as one tuple (``Fact.__reduce__``)."""


class FigureKeys:
    """Keyed digests for facts: one key, derived from the keyring's pseudonym key, so
    pseudonyms are stable across restarts and processes but differ from the audit log's."""

    def __init__(self, key: bytes) -> None:
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)

    def digest(self, *parts: str) -> str:
        mac = self._keyed.copy()  # the key schedule is done once, not per digest
        mac.update("\x1f".join(parts).encode())
        return mac.hexdigest()[:32]


def extract(root: etree._Element, message: MessageType, keys: FigureKeys) -> tuple[Fact, ...]:
    """The facts of one validated payload (an empty tuple for messages that count nothing:
    retourberichten, 317/319)."""
    header = _child(root, "Header")
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
        header = _child(root, "Header")
        assert header is not None
        self.header = _fields(header)
        afzender, ontvanger = self.header.get("Afzender", ""), self.header.get("Ontvanger", "")
        from_gemeente = message.header_afzender.value == "gemeente"
        self.gemeente = afzender if from_gemeente else ontvanger
        self.aanbieder = ontvanger if from_gemeente else afzender
        self.identificatie = self.header.get("BerichtIdentificatie/Identificatie", "")
        self._clients: dict[str, str] = {}

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
        bsn = _child(element, "Bsn") if element is not None else None
        text = (bsn.text or "").strip() if bsn is not None else ""
        return self.keys.digest("bsn", text) if text else None

    def toewijzing_link(self, nummer: str) -> str:
        # a ToewijzingNummer is unique within its gemeente (and standard)
        return self.keys.digest("toewijzing", self.standard, self.gemeente, nummer)

    def verzoek_link(self, referentie: str) -> str:
        return self.keys.digest("verzoek", self.standard, self.aanbieder, referentie)

    def declaratie_link(self, identificatie: str) -> str:
        return self.keys.digest("declaratie", self.standard, self.aanbieder, identificatie)

    def products(self, path: str) -> Iterator[dict[str, str]]:
        return (_fields(p) for p in _all(self.root, path))

    def toewijzingen(self) -> Iterator[Fact]:
        client = self.client(_child(self.root, "Client"))
        for product in self.products("Client/ToegewezenProducten/ToegewezenProduct"):
            referentie = product.get("ReferentieAanbieder")
            link = self.toewijzing_link(product.get("ToewijzingNummer", ""))
            yield self.fact(
                FactKind.TOEWIJZING,
                product.get("Product/Categorie", ""),
                _month(product.get("Toewijzingsdatum", "")),
                client,
                key=link,
                link=link,
                follows=self.verzoek_link(referentie) if referentie else None,
            )

    def starts_stops(self, kind: FactKind) -> Iterator[Fact]:
        client = self.client(_child(self.root, "Client"))
        start = kind is FactKind.START
        path = "Client/StartProducten/StartProduct" if start else "Client/StopProducten/StopProduct"
        for product in self.products(path):
            if product.get("StatusAanlevering") == "3":
                continue  # a withdrawn report (StatusAanlevering 3: verwijderen) counts nothing
            nummer = product.get("ToewijzingNummer")
            categorie = product.get("Product/Categorie", "")
            date = product.get("Begindatum" if start else "Einddatum", "")
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
        client = self.client(_child(self.root, "Client"))
        for product in self.products("Client/AangevraagdeProducten/AangevraagdProduct"):
            link = self.verzoek_link(product.get("ReferentieAanbieder", ""))
            yield self.fact(
                FactKind.VERZOEK,
                product.get("Product/Categorie", ""),
                "",  # a verzoek counts in the month it arrived
                client,
                key=link,
                link=link,
            )

    def prestaties(
        self,
        kind: FactKind,
        clienten: etree._Element | None,
        *,
        key: str,
        link: str | None = None,
        follows: str | None = None,
    ) -> Iterator[Fact]:
        """The prestaties under ``clienten`` (a 323's, or the rejected ones of a 325),
        summed per client, category and month: what the figures count of them (declared and
        rejected amounts, declaring clients), in as few rows as that takes. A declaratie of
        megabytes has thousands of prestaties; every Kafka view stores what this yields."""
        if clienten is None:
            return
        sums: dict[tuple[str | None, str, str], int] = {}
        for bsn, categorie, begindatum, amount in _prestatie_lines(clienten, self.root):
            group = (self.client_of(bsn), categorie, _month(begindatum))
            sums[group] = sums.get(group, 0) + (amount or 0)
        for (client, categorie, month), amount in sums.items():
            yield self.fact(
                kind, categorie, month, client, key=key, amount=amount, link=link, follows=follows
            )

    def client_of(self, bsn: str) -> str | None:
        """The figures pseudonym of a BSN (None for none); one digest per client, however
        many prestaties it has."""
        if not bsn:
            return None
        known = self._clients.get(bsn)
        if known is None:
            known = self._clients[bsn] = self.keys.digest("bsn", bsn)
        return known

    def declaraties(self) -> Iterator[Fact]:
        link = self.declaratie_link(self.identificatie)
        declaratie = _child(self.root, "Declaratie")
        clienten = _child(declaratie, "Clienten") if declaratie is not None else None
        # key: declared lines are summed, never counted one by one
        yield from self.prestaties(FactKind.DECLARATIE, clienten, key=link, link=link)

    def antwoorden(self) -> Iterator[Fact]:
        answered = self.declaratie_link(
            self.header.get("DeclaratieIdentificatie/Identificatie", "")
        )
        answer = _child(self.root, "DeclaratieAntwoord")
        totals = _fields(answer) if answer is not None else {}
        yield self.fact(
            FactKind.ANTWOORD,
            UNKNOWN_CATEGORY,
            "",
            None,
            key=self.keys.digest("antwoord", answered),
            amount=_amount(totals, "TotaalToegekendBedrag/TotaalBedrag"),
            follows=answered,
        )
        clienten = _child(answer, "Clienten") if answer is not None else None
        yield from self.prestaties(FactKind.AFGEWEZEN, clienten, key=answered, follows=answered)


def _child(element: etree._Element, name: str) -> etree._Element | None:
    """The first child named ``name`` in any namespace. A walk over the children: lxml's
    ElementPath with ``{*}`` wildcards cost most of the extraction's time."""
    suffix = "}" + name
    for child in element:
        tag = child.tag
        if isinstance(tag, str) and (tag.endswith(suffix) or tag == name):
            return child
    return None


def _all(element: etree._Element, path: str) -> Iterator[etree._Element]:
    """Every element at ``path`` (local names separated by ``/``) below ``element``."""
    *parents, last = path.split("/")
    node: etree._Element | None = element
    for name in parents:
        node = _child(node, name) if node is not None else None
    if node is None:
        return
    suffix = "}" + last
    for child in node:
        tag = child.tag
        if isinstance(tag, str) and (tag.endswith(suffix) or tag == last):
            yield child


def _prestatie_lines(
    clienten: etree._Element, root: etree._Element
) -> Iterator[tuple[str, str, str, int | None]]:
    """(BSN, category, begin date, signed amount in cents) of every prestatie, in one walk
    over the Clienten subtree that stops only at the five elements wanted (lxml matches the
    tags in C): each Bsn, then per prestatie its ProductCategorie, Begindatum, Bedrag and
    DebetCredit, in that order in a valid message. XPath per field, or a search per
    prestatie, cost 3 to 10 times more for a declaratie of thousands. Should the order ever
    not hold, the prestaties are read element by element instead: no line is paired with
    the wrong client or amount."""
    message_ns = etree.QName(root).namespace or ""
    info = parse_namespace(message_ns)
    basis_ns = basis_namespace(info.standard, info.release) if info else ""
    bsn_tag = f"{{{message_ns}}}Bsn"
    expected = (
        f"{{{message_ns}}}ProductCategorie",
        f"{{{basis_ns}}}Begindatum",
        f"{{{basis_ns}}}Bedrag",
        f"{{{basis_ns}}}DebetCredit",
    )
    lines: list[tuple[str, str, str, int | None]] = []
    bsn = ""
    line: list[str] = []
    for element in clienten.iter(bsn_tag, *expected):
        if element.tag == bsn_tag:
            if line:
                break  # a prestatie cut short: read them one by one
            bsn = (element.text or "").strip()
        elif element.tag == expected[len(line)]:
            line.append((element.text or "").strip())
            if len(line) == len(expected):
                lines.append((bsn, line[0], line[1], _signed(line[2], line[3])))
                line = []
        else:
            break
    else:
        if not line:
            yield from lines
            return
    yield from _prestatie_lines_one_by_one(clienten, message_ns)


def _prestatie_lines_one_by_one(
    clienten: etree._Element, message_ns: str
) -> Iterator[tuple[str, str, str, int | None]]:
    for client in _all(clienten, "Client"):
        bsn = (client.findtext(f"{{{message_ns}}}Bsn") or "").strip()
        for prestatie in _all(client, "Prestaties/Prestatie"):
            fields = _fields(prestatie)
            yield (
                bsn,
                fields.get("ProductCategorie", ""),
                fields.get("ProductPeriode/Begindatum", ""),
                _amount(fields, "IngediendBedrag/Bedrag"),
            )


def _signed(amount: str, sign: str) -> int | None:
    if not amount.isdigit():
        return None
    return -int(amount) if sign == "C" else int(amount)


def _fields(element: etree._Element) -> dict[str, str]:
    """The texts of an element's children and grandchildren by local name (``Bsn``,
    ``ProductPeriode/Begindatum``), the first of each name: one walk over the subtree instead
    of a search per field."""
    out: dict[str, str] = {}
    for child in element:
        tag = child.tag
        if not isinstance(tag, str):
            continue
        name = tag.rpartition("}")[2]
        if len(child):
            for grandchild in child:
                inner = grandchild.tag
                if isinstance(inner, str):
                    out.setdefault(
                        f"{name}/{inner.rpartition('}')[2]}", (grandchild.text or "").strip()
                    )
        else:
            out.setdefault(name, (child.text or "").strip())
    return out


def _month(date: str) -> str:
    """``YYYY-MM`` of an xs:date; empty for anything else (the arrival month is used)."""
    month = date[:7]
    return month if len(month) == 7 and month[4] == "-" and month.replace("-", "").isdigit() else ""


def _amount(fields: dict[str, str], path: str) -> int | None:
    """A CDT_BedragMetDC / CDT_TotaalBedragMetDC (``path`` names its amount element) in
    signed euro cents (credit negative)."""
    text = fields.get(path, "")
    if not text.isdigit():
        return None
    return _signed(text, fields.get(f"{path.rpartition('/')[0]}/DebetCredit", ""))
