"""Pairs the gateway carries: a retour against its heenbericht, a 325 against its 323.

When the heenbericht an answer refers to passed this gateway and is still stored, the
gateway can compare the two at accept, as the receiver of the answer would: a retourbericht
(302/306/308/316/318/320) copies its heenbericht's Header and classes unchanged (IV028) and,
rejected at control level 2, holds only the Header (IV032); a declaratie-antwoord (325)
names its declaratie (TR337, TR371, TR376), repeats its TotaalIngediendBedrag (IV087) and
lists only prestaties of that declaratie, with their values unchanged (TR366, TR367), and,
rejected at control level 2, holds only the Header (IV088).

Everything here is a pure comparison of two parsed payloads; finding the heenbericht (only
among the messages of the answer's own two parties) is :mod:`gateway.pairing`'s job. A
finding never quotes the heenbericht: its ``expected`` and ``found`` stay empty and its words
name the rule and the place in the answer, so a refusal tells the sender nothing it did not
send itself.

IV033 (XsltVersie when the official XSLTs rejected the heenbericht) is not checked: whether
those XSLTs were used is not in either message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from lxml import etree

from gateway.report import Problem, Severity
from gateway.rules import catalogue
from gateway.rules.base import element_path, every, first, text

RETOUR_HEADER_OWN = frozenset(
    {"BerichtCode", "IdentificatieRetour", "DagtekeningRetour", "XsdVersieRetour", "XsltVersie"}
)
"""Header elements a retour fills itself (IV028: "aangevuld met identificerende gegevens van
het retourbericht"); every other Header element is the heenbericht's, unchanged."""

RETOURCODES = "RetourCodes"
TECHNICAL = "0001"
"""The level-2 retourcode: the message is refused on its content (IV032, IV088)."""
FULLY_GRANTED = "8001"

Shape = tuple[str, str, tuple["Shape", ...]]
PairCheck = Callable[[etree._Element, etree._Element], "list[Problem]"]
"""A comparison of an answer (first) with the message it answers (second)."""


def _name(el: etree._Element) -> str:
    tag = el.tag
    assert isinstance(tag, str)
    return tag[tag.rfind("}") + 1 :]


def shape(el: etree._Element) -> Shape:
    """An element as local names and trimmed texts, without its RetourCodes: what "copied
    unchanged" compares (a retour's classes live in another namespace than the heenbericht's).
    Tags are sliced, not parsed with QName: a 1 MB declaratie has some 100,000 elements."""
    children = []
    for child in el:
        tag = child.tag
        if isinstance(tag, str) and tag[tag.rfind("}") + 1 :] != RETOURCODES:
            children.append(shape(child))
    name = _name(el)
    if children:
        return name, "", tuple(children)
    return name, (el.text or "").strip(), ()


def _codes(el: etree._Element | None) -> set[str]:
    if el is None:
        return set()
    return {(c.text or "").strip() for c in every(el, "RetourCodes/RetourCode")}


def _problem(rule_id: str, el: etree._Element | None, message: str) -> Problem:
    """A finding with the catalogue's level and retourcode (none: the rule id alone)."""
    meta = catalogue.entry(rule_id)
    return Problem(
        rule=rule_id,
        message=message,
        path=element_path(el) if el is not None else None,
        level=meta.level,
        retourcode=meta.retourcode,
        severity=Severity.ERROR,
    )


def _classes(root: etree._Element) -> list[etree._Element]:
    return [c for c in root if isinstance(c.tag, str) and _name(c) != "Header"]


# --- a retourbericht against its heenbericht ---------------------------------------------------


def check_retour(
    retour: etree._Element, heen: etree._Element, heen_code: str | None = None
) -> list[Problem]:
    """The findings of a retourbericht (302/306/308/316/318/320) against its heenbericht;
    ``heen_code``: the BerichtCode of the message it answers (436 for a JW302), which the
    heenbericht named must have, or nothing else is worth comparing."""
    if heen_code is not None and text(heen, "Header/BerichtCode") != heen_code:
        return [
            _problem(
                "IV028",
                first(retour, "Header/BerichtCode"),
                "the heenbericht referred to is not of the type this retour answers",
            )
        ]
    return [*_retour_header(retour, heen), *_retour_classes(retour, heen)]


def _retour_header(retour: etree._Element, heen: etree._Element) -> Iterator[Problem]:
    own = first(retour, "Header")
    theirs = first(heen, "Header")
    if own is None or theirs is None:
        return
    copied = {
        _name(c): c
        for c in own
        if isinstance(c.tag, str) and _name(c) not in RETOUR_HEADER_OWN | {RETOURCODES}
    }
    expected = {
        _name(c): c
        for c in theirs
        if isinstance(c.tag, str) and _name(c) not in RETOUR_HEADER_OWN | {RETOURCODES}
    }
    for name in sorted(copied.keys() | expected.keys()):
        mine, heens = copied.get(name), expected.get(name)
        if mine is None or heens is None or shape(mine) != shape(heens):
            yield _problem(
                "IV028",
                mine if mine is not None else own,
                f"Header/{name} is not the heenbericht's, unchanged",
            )


def _retour_classes(retour: etree._Element, heen: etree._Element) -> Iterator[Problem]:
    classes = _classes(retour)
    header = first(retour, "Header")
    if classes and TECHNICAL in _codes(header):
        yield _problem(
            "IV032",
            classes[0],
            "a retour rejecting the heenbericht with 0001 (control level 2) holds only the Header",
        )
        return
    theirs = {shape(c) for c in _classes(heen)}
    for el in classes:
        if shape(el) not in theirs:
            yield _problem(
                "IV028",
                el,
                f"{_name(el)} is not a class of the heenbericht with all its classes, unchanged",
            )


# --- a declaratie-antwoord (325) against its declaratie (323) ----------------------------------


def declaratie_reference(antwoord: etree._Element) -> tuple[str, str] | None:
    """(the aanbieder that sent the declaratie, its Identificatie) as a 325 names them: its
    Header/Ontvanger and DeclaratieIdentificatie/Identificatie."""
    aanbieder = text(antwoord, "Header/Ontvanger")
    identificatie = text(antwoord, "Header/DeclaratieIdentificatie/Identificatie")
    if not aanbieder or not identificatie:
        return None
    return aanbieder, identificatie


def check_antwoord(antwoord: etree._Element, declaratie: etree._Element) -> list[Problem]:
    """The findings of a 325 against the 323 its DeclaratieIdentificatie names."""
    return [*_antwoord_header(antwoord, declaratie), *_antwoord_body(antwoord, declaratie)]


def _differs(a: etree._Element | None, b: etree._Element | None) -> bool:
    """Whether two elements differ in content (their own names aside: XsdVersieDeclaratie
    holds what XsdVersie held)."""
    if a is None or b is None:
        return a is not b
    return shape(a)[1:] != shape(b)[1:]


def _antwoord_header(antwoord: etree._Element, declaratie: etree._Element) -> Iterator[Problem]:
    dagtekening = first(antwoord, "Header/DeclaratieIdentificatie/Dagtekening")
    if text(antwoord, "Header/DeclaratieIdentificatie/Dagtekening") != text(
        declaratie, "Header/BerichtIdentificatie/Dagtekening"
    ):
        yield _problem(
            "TR337",
            dagtekening,
            "DeclaratieIdentificatie is not the BerichtIdentificatie of the declaratie answered",
        )
    versie = first(antwoord, "Header/XsdVersieDeclaratie")
    if _differs(versie, first(declaratie, "Header/XsdVersie")):
        yield _problem(
            "TR371",
            versie,
            "XsdVersieDeclaratie is not the XsdVersie of the declaratie answered",
        )


def _antwoord_body(antwoord: etree._Element, declaratie: etree._Element) -> Iterator[Problem]:
    body = first(antwoord, "DeclaratieAntwoord")
    claim = first(declaratie, "Declaratie")
    if body is not None and TECHNICAL in _codes(first(antwoord, "Header")):
        yield _problem(
            "IV088",
            body,
            "a declaratie-antwoord rejecting the declaratie with 0001 (control level 2) holds "
            "only the Header",
        )
        return
    if body is None or claim is None:
        return
    nummer = first(body, "DeclaratieNummer")
    if text(body, "DeclaratieNummer") != text(claim, "DeclaratieNummer"):
        yield _problem(
            "TR376",
            nummer,
            "DeclaratieNummer is not the DeclaratieNummer of the declaratie answered",
        )
    ingediend = first(body, "TotaalIngediendBedrag")
    if _differs(ingediend, first(claim, "TotaalIngediendBedrag")):
        yield _problem(
            "IV087",
            ingediend,
            "TotaalIngediendBedrag is not the TotaalIngediendBedrag of the declaratie answered",
        )
    toegekend = first(body, "TotaalToegekendBedrag")
    if FULLY_GRANTED in _codes(body) and _differs(toegekend, ingediend):
        yield _problem(
            "IV087",
            toegekend,
            "a declaratie granted in full (8001) grants its TotaalIngediendBedrag",
        )
    yield from _prestaties(body, claim)


def _prestatie_key(prestatie: etree._Element) -> Shape | None:
    referentie = first(prestatie, "ProductReferentie")
    return shape(referentie) if referentie is not None else None


def _prestaties(body: etree._Element, claim: etree._Element) -> Iterator[Problem]:
    """TR366: a listed prestatie is one of the declaratie's, by ProductReferentie; TR367: its
    values (and its client's Bsn) are that prestatie's. Only the declaratie's prestaties whose
    ProductReferentie the answer lists are read whole: a 325 lists a few, a 323 may hold
    tens of thousands."""
    listed = [
        (text(client, "Bsn"), p, _prestatie_key(p))
        for client in every(body, "Clienten/Client")
        for p in every(client, "Prestaties/Prestatie")
    ]
    if not listed:
        return
    wanted = {key for _, _, key in listed}
    claimed: dict[Shape | None, list[tuple[str | None, Shape]]] = {}
    for client in every(claim, "Clienten/Client"):
        bsn: str | None = None
        for p in every(client, "Prestaties/Prestatie"):
            key = _prestatie_key(p)
            if key in wanted:
                bsn = bsn or text(client, "Bsn")
                claimed.setdefault(key, []).append((bsn, shape(p)))
    for bsn, p, key in listed:
        same = claimed.get(key)
        if not same:
            yield _problem(
                "TR366",
                first(p, "ProductReferentie"),
                "no prestatie of the declaratie answered has this ProductReferentie",
            )
        elif (bsn, shape(p)) not in same:
            yield _problem(
                "TR367",
                p,
                "the prestatie's values are not those of the declaratie's prestatie with "
                "this ProductReferentie (under the same Bsn)",
            )


DOC = (
    "## Pairs the gateway carries",
    "",
    "An answer is compared at accept with the message it answers when that message passed",
    "this gateway and is still stored (nothing else is kept for it; gateway/pairing.py):",
    "",
    "- a retourbericht (302, 306, 308, 316, 318, 320) with the Di01 its crossRefnummer names,",
    "  which its ontvanger sent to its zender (the conversation check, docs/conversations.md):",
    "  IV028 (the Header and every class after it copied unchanged, RetourCodes and the",
    "  retour's own Header elements aside) and IV032 (rejected with 0001: only the Header);",
    "- a declaratie-antwoord (325) with the 323 its `DeclaratieIdentificatie` names, sent by",
    "  the 325's Ontvanger to the 325's zender: TR337, TR371, TR376, IV087, IV088, TR366 and",
    "  TR367.",
    "",
    "A finding refuses the answer with a Fo03 (REST: a problem document) `StUF058` whose",
    "omschrijving names the rule and its retourcode (`TR366 [9366] at …`), or the rule id",
    "alone for the rules without one (`TR337 at …`). It names the place in the answer, never",
    "a value of the heenbericht. An answer whose heenbericht the gateway does not carry (sent",
    "before it, purged by retention, or another pair's: the lookups are limited to the",
    "answer's two parties) is not compared, so a refusal says nothing about other partners'",
    "messages. IV033 (XsltVersie when the official XSLTs rejected the heenbericht) is not",
    'checked: neither message says whether they were used. With `business_rules = "record"`',
    "nothing is compared.",
)
"""The "Pairs the gateway carries" section of docs/rules.md (gateway/rules/render.py)."""
