"""Claim rules for 323 (declaratie) and 325 (declaratie-antwoord): periods, amounts and
their arithmetic (iStandaarden iWmo/iJw 3.2 regels on declaraties). Amounts are euro-cents
(IV024)."""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from datetime import date

from lxml import etree

from gateway.rules.base import (
    Finding,
    MessageContext,
    as_date,
    as_int,
    every,
    first,
    rule,
    text,
    yyyymmdd,
)

EARLIEST = date(2021, 1, 1)
EURO = "83"


def _prestaties(ctx: MessageContext) -> list[etree._Element]:
    top = "Declaratie" if ctx.message.number == 323 else "DeclaratieAntwoord"
    return every(ctx.root, f"{top}/Clienten/Client/Prestaties/Prestatie")


def signed(el: etree._Element | None, amount: str) -> int:
    """An amount with its DebetCredit sign applied: debit positive, credit negative."""
    value = as_int(el, amount) or 0
    return -value if text(el, "DebetCredit") == "C" else value


def _periods(ctx: MessageContext) -> Iterator[etree._Element]:
    declaratie = first(ctx.root, "Declaratie/DeclaratiePeriode")
    if declaratie is not None:
        yield declaratie
    for p in _prestaties(ctx):
        periode = first(p, "ProductPeriode")
        if periode is not None:
            yield periode


@rule("CS100")
def periods_after_2021(ctx: MessageContext) -> Iterator[Finding]:
    for periode in _periods(ctx):
        begin = as_date(periode, "Begindatum")
        if begin and begin < EARLIEST:
            yield Finding(
                first(periode, "Begindatum"),
                "period before 2021",
                f"on or after {EARLIEST}",
                str(begin),
            )


@rule("CS340")
def claim_period_is_month(ctx: MessageContext) -> Iterator[Finding]:
    periode = first(ctx.root, "Declaratie/DeclaratiePeriode")
    begin, end = as_date(periode, "Begindatum"), as_date(periode, "Einddatum")
    if begin is None or end is None:
        return
    last = calendar.monthrange(begin.year, begin.month)[1]
    if begin.day != 1 or end != begin.replace(day=last):
        yield Finding(
            periode,
            "DeclaratiePeriode is not one whole calendar month",
            f"{begin.replace(day=1)} to {begin.replace(day=last)}",
            f"{begin} to {end}",
        )


@rule("CS337")
def product_period_in_month(ctx: MessageContext) -> Iterator[Finding]:
    for p in _prestaties(ctx):
        begin, end = as_date(p, "ProductPeriode/Begindatum"), as_date(p, "ProductPeriode/Einddatum")
        if begin and end and (begin.year, begin.month) != (end.year, end.month):
            yield Finding(
                first(p, "ProductPeriode"),
                "ProductPeriode spans two months",
                "Begindatum and Einddatum in one month",
                f"{begin} to {end}",
            )


@rule("TR319")
def product_period_not_future(ctx: MessageContext) -> Iterator[Finding]:
    claim_end = as_date(first(ctx.root, "Declaratie/DeclaratiePeriode"), "Einddatum")
    for p in _prestaties(ctx):
        end = as_date(p, "ProductPeriode/Einddatum")
        if claim_end and end and end > claim_end:
            yield Finding(
                first(p, "ProductPeriode/Einddatum"),
                "prestatie of a later period than the claim",
                f"on or before {claim_end}",
                str(end),
            )


@rule("TR335")
def not_too_old(ctx: MessageContext) -> Iterator[Finding]:
    """yyyymmdd arithmetic as the official check: 5 years = 50000 on the number."""
    dagtekening = yyyymmdd(first(ctx.root, "Declaratie"), "DeclaratieDagtekening")
    if dagtekening is None:
        return
    for p in _prestaties(ctx):
        end = yyyymmdd(p, "ProductPeriode/Einddatum")
        if end is not None and end + 50_000 < dagtekening:
            yield Finding(
                first(p, "ProductPeriode/Einddatum"),
                "ProductPeriode ends more than 5 years before the DeclaratieDagtekening",
                "Einddatum + 5 years on or after the DeclaratieDagtekening",
                text(p, "ProductPeriode/Einddatum"),
            )


def _amounts(ctx: MessageContext) -> Iterator[etree._Element]:
    for path in (
        "Declaratie/TotaalIngediendBedrag",
        "DeclaratieAntwoord/TotaalIngediendBedrag",
        "DeclaratieAntwoord/TotaalToegekendBedrag",
    ):
        el = first(ctx.root, path)
        if el is not None:
            yield el
    for p in _prestaties(ctx):
        el = first(p, "IngediendBedrag")
        if el is not None:
            yield el


@rule("CS325")
def zero_is_debit(ctx: MessageContext) -> Iterator[Finding]:
    for el in _amounts(ctx):
        value = (
            as_int(el, "Bedrag") if first(el, "Bedrag") is not None else as_int(el, "TotaalBedrag")
        )
        if value == 0 and text(el, "DebetCredit") != "D":
            yield Finding(first(el, "DebetCredit"), "amount 0 must be marked D", "D", "C")


@rule("CD060")
def credit_refers_to_debit(ctx: MessageContext) -> Iterator[Finding]:
    for p in _prestaties(ctx):
        credit = text(p, "IngediendBedrag/DebetCredit") == "C"
        previous = first(p, "ProductReferentie/VorigReferentieNummer") is not None
        if credit and not previous:
            yield Finding(
                first(p, "ProductReferentie"),
                "credit without VorigReferentieNummer",
                "VorigReferentieNummer",
                "none",
            )
        elif previous and not credit:
            yield Finding(
                first(p, "ProductReferentie/VorigReferentieNummer"),
                "VorigReferentieNummer on a debit prestatie",
                "no VorigReferentieNummer",
                "VorigReferentieNummer",
            )


@rule("CD087")
def tariff_unless_euros(ctx: MessageContext) -> Iterator[Finding]:
    for p in _prestaties(ctx):
        euros = text(p, "Eenheid") == EURO
        tarief = first(p, "ProductTarief")
        if euros and tarief is not None:
            yield Finding(
                tarief,
                "ProductTarief must be absent for Eenheid 83",
                "no ProductTarief",
                tarief.text,
            )
        elif not euros and tarief is None:
            yield Finding(p, "ProductTarief is required", "ProductTarief", "none")


@rule("CS339")
def euros_equal_volume(ctx: MessageContext) -> Iterator[Finding]:
    for p in _prestaties(ctx):
        if text(p, "Eenheid") == EURO:
            volume, bedrag = as_int(p, "GeleverdVolume"), as_int(p, "IngediendBedrag/Bedrag")
            if volume != bedrag:
                yield Finding(
                    first(p, "IngediendBedrag/Bedrag"),
                    "Bedrag differs from volume",
                    str(volume),
                    str(bedrag),
                )


def expected_amount(volume: int, tarief: int, eenheid: str | None) -> tuple[int, int]:
    """IngediendBedrag = volume × tarief (TR346), with the IV081 tolerance for minutes.

    For minutes the shown tariff is the hourly tariff / 60 rounded to whole cents, while the
    amount is computed from the unrounded tariff; each minute can differ half a cent.
    """
    tolerance = volume // 2 + 1 if eenheid == "01" else 0
    return volume * tarief, tolerance


@rule("TR346")
def amount_is_volume_times_tariff(ctx: MessageContext) -> Iterator[Finding]:
    for p in _prestaties(ctx):
        eenheid = text(p, "Eenheid")
        tarief = as_int(p, "ProductTarief")
        if eenheid == EURO or tarief is None:
            continue
        volume = as_int(p, "GeleverdVolume") or 0
        bedrag = as_int(p, "IngediendBedrag/Bedrag") or 0
        want, tolerance = expected_amount(volume, tarief, eenheid)
        if abs(bedrag - want) > tolerance:
            yield Finding(
                first(p, "IngediendBedrag/Bedrag"),
                f"Bedrag is not {volume} x {tarief}",
                str(want) + (f" ± {tolerance}" if tolerance else ""),
                str(bedrag),
            )


@rule("TR358")
def total_is_sum(ctx: MessageContext) -> Iterator[Finding]:
    total_el = first(ctx.root, "Declaratie/TotaalIngediendBedrag")
    total = signed(total_el, "TotaalBedrag")
    computed = sum(signed(first(p, "IngediendBedrag"), "Bedrag") for p in _prestaties(ctx))
    if total != computed:
        yield Finding(
            total_el,
            "TotaalIngediendBedrag differs from the sum of the prestaties",
            _as_dc(computed),
            _as_dc(total),
        )


def _as_dc(cents: int) -> str:
    return f"{abs(cents)} {'C' if cents < 0 else 'D'}"


@rule("TR315")
def previous_reference_unique(ctx: MessageContext) -> Iterator[Finding]:
    seen: set[str] = set()
    for p in _prestaties(ctx):
        previous = text(p, "ProductReferentie/VorigReferentieNummer")
        if previous is None:
            continue
        if previous in seen:
            yield Finding(
                first(p, "ProductReferentie/VorigReferentieNummer"),
                "the same debit is credited twice",
                "unique",
                previous,
            )
        seen.add(previous)


@rule("TR316")
def no_credit_of_own_debit(ctx: MessageContext) -> Iterator[Finding]:
    prestaties = _prestaties(ctx)
    own = {text(p, "ProductReferentie/ReferentieNummer") for p in prestaties}
    for p in prestaties:
        previous = text(p, "ProductReferentie/VorigReferentieNummer")
        if previous is not None and previous in own:
            yield Finding(
                first(p, "ProductReferentie/VorigReferentieNummer"),
                "credits a prestatie of this same claim",
                "an earlier claim's number",
                previous,
            )


# Codes that do not reject the class they are on (WJ001): no remark, not judged, fully granted.
NOT_REJECTING = frozenset({"0200", "0233", "8001"})
NOT_JUDGED = "0233"


def _rejecting(el: etree._Element | None) -> list[str]:
    if el is None:
        return []
    codes = (c.text.strip() for c in every(el, "RetourCodes/RetourCode") if c.text)
    return [c for c in codes if c not in NOT_REJECTING]


def _not_judged_under_rejected_client(prestatie: etree._Element) -> bool:
    """IV087: a Client rejected at level 3/4 is sent with its retourcode and all its
    prestaties with 0233 (not judged); those prestaties are rejected with it."""
    prestaties = prestatie.getparent()  # Client/Prestaties/Prestatie
    client = prestaties.getparent() if prestaties is not None else None
    codes = {c.text.strip() for c in every(prestatie, "RetourCodes/RetourCode") if c.text}
    return NOT_JUDGED in codes and bool(_rejecting(client))


@rule("TR342")
def answer_adds_up(ctx: MessageContext) -> Iterator[Finding]:
    antwoord = first(ctx.root, "DeclaratieAntwoord")
    if antwoord is None:
        return
    toegekend = signed(first(antwoord, "TotaalToegekendBedrag"), "TotaalBedrag")
    if _rejecting(antwoord):
        if toegekend != 0:
            yield Finding(
                first(antwoord, "TotaalToegekendBedrag"),
                "the declaratie is rejected as a whole, yet an amount is granted",
                "0",
                _as_dc(toegekend),
            )
        return
    prestaties = _prestaties(ctx)
    for p in prestaties:
        if not _rejecting(p) and not _not_judged_under_rejected_client(p):
            codes = first(p, "RetourCodes")
            yield Finding(
                codes if codes is not None else p,
                "a prestatie that is not rejected is listed",
                "only rejected prestaties",
                ", ".join(c.text or "" for c in every(p, "RetourCodes/RetourCode")),
            )
    ingediend = signed(first(antwoord, "TotaalIngediendBedrag"), "TotaalBedrag")
    rejected = sum(signed(first(p, "IngediendBedrag"), "Bedrag") for p in prestaties)
    if rejected != ingediend - toegekend:
        yield Finding(
            first(antwoord, "TotaalToegekendBedrag"),
            "the listed (rejected) prestaties do not account for TotaalIngediend - TotaalToegekend",
            _as_dc(ingediend - toegekend),
            _as_dc(rejected),
        )


@rule("TR416")
def one_debit_per_period_and_product(ctx: MessageContext) -> Iterator[Finding]:
    """Per client, as TR101: a prestatie is the client's, its ToewijzingNummer the client's
    assignment (the official JW323 example repeats a ToewijzingNummer under two clients)."""
    seen: set[tuple[str | None, ...]] = set()
    for p in _prestaties(ctx):
        if text(p, "IngediendBedrag/DebetCredit") != "D":
            continue
        prestaties = p.getparent()  # Client/Prestaties/Prestatie
        client = prestaties.getparent() if prestaties is not None else None
        key = (
            text(client, "Bsn"),
            text(p, "ProductPeriode/Begindatum"),
            text(p, "ProductPeriode/Einddatum"),
            text(p, "ProductCategorie"),
            text(p, "ProductCode"),
            text(p, "ToewijzingNummer"),
        )
        if key in seen:
            yield Finding(
                p,
                "a second debit for the same ProductPeriode, product and ToewijzingNummer",
                "one debit prestatie per period and product",
                f"{key[3]}/{key[4] or '-'} {key[1]}..{key[2]} toewijzing {key[5]}",
            )
        seen.add(key)
