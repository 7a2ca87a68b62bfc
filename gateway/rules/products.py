"""Rules on assigned, requested and changed products: dates, Omvang/Budget, overlap,
start/stop records, requests and answers (the iStandaarden iWmo/iJw 3.2 regels on Product,
TR and CD)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

from lxml import etree

from gateway.rules.base import Finding, MessageContext, as_date, every, first, rule, text

CUTOFF = date(2020, 12, 31)


@dataclass(frozen=True, slots=True)
class ProductView:
    """A product-like class read uniformly: its element and the names of its period fields."""

    el: etree._Element
    start_field: str
    end_field: str
    has_product: bool  # whether the class has a Product element in its type

    @property
    def start(self) -> date | None:
        return as_date(self.el, self.start_field)

    @property
    def end(self) -> date | None:
        return as_date(self.el, self.end_field)

    @property
    def open_after_cutoff(self) -> bool:
        end = self.end
        return end is None or end > CUTOFF


def products(ctx: MessageContext, *, with_product_only: bool = False) -> list[ProductView]:
    n = ctx.message.number
    root = ctx.root
    if n == 301:
        found = [
            ProductView(e, "Ingangsdatum", "Einddatum", True)
            for e in every(root, "Client/ToegewezenProducten/ToegewezenProduct")
        ]
    elif n == 315:
        found = [
            ProductView(e, "ToewijzingIngangsdatum", "ToewijzingEinddatum", True)
            for e in every(root, "Client/AangevraagdeProducten/AangevraagdProduct")
        ]
    elif n == 317:
        found = [
            ProductView(e, "GewensteIngangsdatum", "Einddatum", True)
            for e in every(root, "Client/Verzoek/NieuweProducten/NieuwProduct")
        ]
        if not with_product_only:
            found += [
                ProductView(e, "GewensteIngangsdatum", "Einddatum", False)
                for e in every(root, "Client/Verzoek/TeWijzigenProducten/TeWijzigenProduct")
            ]
    else:
        found = []
    return found


@rule("CS003")
def end_after_start(ctx: MessageContext) -> Iterator[Finding]:
    for p in products(ctx):
        start, end = p.start, p.end
        if start and end and end < start:
            yield Finding(
                first(p.el, p.end_field),
                f"{p.end_field} before {p.start_field}",
                f"on or after {start}",
                str(end),
            )


@rule("CD079")
def product_without_budget(ctx: MessageContext) -> Iterator[Finding]:
    for p in products(ctx, with_product_only=True):
        if first(p.el, "Budget") is None and first(p.el, "Product") is None:
            yield Finding(p.el, "neither Product nor Budget given", "Product", "no Product")


@rule("CD075")
def end_with_budget(ctx: MessageContext) -> Iterator[Finding]:
    for p in products(ctx):
        if first(p.el, "Budget") is not None and p.end is None:
            yield Finding(p.el, f"{p.end_field} is required with a Budget", p.end_field, "none")


@rule("CD076")
def end_with_weekly(ctx: MessageContext) -> Iterator[Finding]:
    for p in products(ctx):
        if text(p.el, "Omvang/Frequentie") == "2" and p.end is None:
            yield Finding(p.el, f"{p.end_field} is required with Frequentie 2", p.end_field, "none")


@rule("CD041")
def volume_with_code(ctx: MessageContext) -> Iterator[Finding]:
    for p in products(ctx, with_product_only=True):
        if text(p.el, "Product/Code") and first(p.el, "Omvang") is None:
            yield Finding(p.el, "Omvang is required with a product Code", "Omvang", "none")


@rule("CD077")
def no_volume_with_budget(ctx: MessageContext) -> Iterator[Finding]:
    for p in products(ctx):
        omvang = first(p.el, "Omvang")
        if omvang is not None and first(p.el, "Budget") is not None:
            yield Finding(omvang, "Omvang given beside a Budget", "no Omvang", "Omvang")


@rule("CD078")
def no_budget_with_volume(ctx: MessageContext) -> Iterator[Finding]:
    for p in products(ctx):
        budget = first(p.el, "Budget")
        if budget is not None and first(p.el, "Omvang") is not None:
            yield Finding(budget, "Budget given beside an Omvang", "no Budget", budget.text)


def _no_code_rule(rule_id: str, number: int) -> None:
    @rule(rule_id, messages=(number,))
    def check(ctx: MessageContext) -> Iterator[Finding]:
        for p in products(ctx, with_product_only=True):
            omvang = first(p.el, "Omvang")
            if omvang is not None and not text(p.el, "Product/Code") and p.open_after_cutoff:
                yield Finding(
                    omvang, "Omvang given for a product without Code", "no Omvang", "Omvang"
                )


_no_code_rule("CD080", 301)
_no_code_rule("CD095", 315)
_no_code_rule("CD096", 317)


def _frequency_rule(rule_id: str, numbers: tuple[int, ...]) -> None:
    @rule(rule_id, messages=numbers)
    def check(ctx: MessageContext) -> Iterator[Finding]:
        for p in products(ctx):
            eenheid, freq = text(p.el, "Omvang/Eenheid"), text(p.el, "Omvang/Frequentie")
            if (
                eenheid in ("14", "16", "83", "84")
                and p.open_after_cutoff
                and (freq not in ("2", "4", "6"))
            ):
                yield Finding(
                    first(p.el, "Omvang/Frequentie"),
                    f"Frequentie {freq} not allowed with Eenheid {eenheid}",
                    "2, 4 or 6",
                    freq,
                )


_frequency_rule("CS338", (301, 317))
_frequency_rule("CS343", (315,))


@rule("CS335")
def deleted_has_equal_dates(ctx: MessageContext) -> Iterator[Finding]:
    for p in products(ctx):
        if text(p.el, "RedenWijziging") == "13" and p.start != p.end:
            yield Finding(
                first(p.el, "RedenWijziging"),
                "RedenWijziging 13 requires Einddatum equal to Ingangsdatum",
                f"Einddatum {p.start}",
                str(p.end),
            )


@rule("CS336")
def obsolete_reason(ctx: MessageContext) -> Iterator[Finding]:
    for p in products(ctx):
        if text(p.el, "RedenWijziging") == "01":
            yield Finding(
                first(p.el, "RedenWijziging"), "RedenWijziging 01 is no longer used", "02-14", "01"
            )


@rule("TR383")
def unique_request_reference(ctx: MessageContext) -> Iterator[Finding]:
    seen: set[str] = set()
    for p in products(ctx):
        ref = text(p.el, "ReferentieAanbieder") or ""
        if ref in seen:
            yield Finding(
                first(p.el, "ReferentieAanbieder"),
                "ReferentieAanbieder repeated",
                "unique",
                repr(ref),
            )
        seen.add(ref)


@rule("CD043")
def decision_date_with_number(ctx: MessageContext) -> Iterator[Finding]:
    for p in products(ctx):
        number = first(p.el, "BeschikkingNummer") is not None
        start = first(p.el, "BeschikkingIngangsdatum") is not None
        if number != start:
            yield Finding(
                p.el,
                "BeschikkingNummer and BeschikkingIngangsdatum go together",
                "both or neither",
                "only BeschikkingNummer" if number else "only BeschikkingIngangsdatum",
            )


_PROFESSIONAL_REFERRERS = ("02", "03", "04", "05")


def _referrers(ctx: MessageContext) -> Iterator[etree._Element]:
    for p in products(ctx):
        verwijzer = first(p.el, "Verwijzer")
        if verwijzer is not None:
            yield verwijzer


@rule("CD066")
def referrer_code_excludes_name(ctx: MessageContext) -> Iterator[Finding]:
    for v in _referrers(ctx):
        if (
            text(v, "Type") in _PROFESSIONAL_REFERRERS
            and first(v, "ZorgverlenerCode") is not None
            and first(v, "Naam") is not None
        ):
            yield Finding(
                first(v, "Naam"),
                "Naam must be absent when ZorgverlenerCode is given",
                "no Naam",
                text(v, "Naam"),
            )


@rule("CD067")
def referrer_needs_name(ctx: MessageContext) -> Iterator[Finding]:
    for v in _referrers(ctx):
        if (
            text(v, "Type") in _PROFESSIONAL_REFERRERS
            and first(v, "ZorgverlenerCode") is None
            and first(v, "Naam") is None
        ):
            yield Finding(v, "Naam is required without a ZorgverlenerCode", "Naam", "none")


@rule("CD068")
def referrer_code_only_for_professionals(ctx: MessageContext) -> Iterator[Finding]:
    for v in _referrers(ctx):
        if (
            text(v, "Type") not in _PROFESSIONAL_REFERRERS
            and first(v, "ZorgverlenerCode") is not None
        ):
            yield Finding(
                first(v, "ZorgverlenerCode"),
                f"ZorgverlenerCode not allowed for referrer Type {text(v, 'Type')}",
                "no ZorgverlenerCode",
                "ZorgverlenerCode",
            )


@rule("TR352")
def request_keeps_something(ctx: MessageContext) -> Iterator[Finding]:
    verzoek = first(ctx.root, "Client/Verzoek")
    if (
        verzoek is not None
        and first(verzoek, "OngewijzigdeProducten") is None
        and first(verzoek, "TeWijzigenProducten") is None
    ):
        yield Finding(
            verzoek,
            "no current assignment is kept or changed",
            "OngewijzigdeProducten or TeWijzigenProducten",
            "neither",
        )


@rule("TR353")
def request_changes_something(ctx: MessageContext) -> Iterator[Finding]:
    verzoek = first(ctx.root, "Client/Verzoek")
    if (
        verzoek is not None
        and first(verzoek, "TeWijzigenProducten") is None
        and first(verzoek, "NieuweProducten") is None
    ):
        yield Finding(
            verzoek,
            "the request changes nothing",
            "TeWijzigenProducten or NieuweProducten",
            "neither",
        )


# --- start and stop ---------------------------------------------------------------------------


def _start_stop(ctx: MessageContext) -> list[etree._Element]:
    return every(ctx.root, "Client/StartProducten/StartProduct") + every(
        ctx.root, "Client/StopProducten/StopProduct"
    )


@rule("CS058")
def delivery_status(ctx: MessageContext) -> Iterator[Finding]:
    for el in _start_stop(ctx):
        status = text(el, "StatusAanlevering")
        if status not in ("1", "3"):
            yield Finding(
                first(el, "StatusAanlevering"),
                f"StatusAanlevering {status} not allowed",
                "1 or 3",
                status,
            )


@rule("TR018")
def stop_after_start(ctx: MessageContext) -> Iterator[Finding]:
    for el in every(ctx.root, "Client/StopProducten/StopProduct"):
        begin, end = as_date(el, "Begindatum"), as_date(el, "Einddatum")
        if begin and end and end < begin:
            yield Finding(
                first(el, "Einddatum"),
                "Einddatum before Begindatum",
                f"on or after {begin}",
                str(end),
            )


# --- answers (319) ----------------------------------------------------------------------------


@rule("CD085")
def rejection_has_reason(ctx: MessageContext) -> Iterator[Finding]:
    antwoord = first(ctx.root, "Antwoord")
    if text(antwoord, "VerzoekAntwoord") == "1" and text(antwoord, "RedenAfwijzingVerzoek") is None:
        yield Finding(
            antwoord, "rejection without RedenAfwijzingVerzoek", "RedenAfwijzingVerzoek", "none"
        )


@rule("CD086")
def investigation_has_no_reason(ctx: MessageContext) -> Iterator[Finding]:
    antwoord = first(ctx.root, "Antwoord")
    reason = first(antwoord, "RedenAfwijzingVerzoek") if antwoord is not None else None
    if text(antwoord, "VerzoekAntwoord") == "2" and reason is not None:
        yield Finding(
            reason,
            "a reason is given while the request is under investigation",
            "no RedenAfwijzingVerzoek",
            reason.text,
        )


@rule("TR377")
def reason_8_names_gemeente(ctx: MessageContext) -> Iterator[Finding]:
    antwoord = first(ctx.root, "Antwoord")
    if (
        antwoord is not None
        and text(antwoord, "RedenAfwijzingVerzoek") == "8"
        and first(antwoord, "Woonplaatsbeginsel") is None
    ):
        yield Finding(
            antwoord,
            "RedenAfwijzingVerzoek 8 without the Woonplaatsbeginsel class",
            "Woonplaatsbeginsel",
            "none",
        )


@rule("TR409")
def residence_only_with_reason_8(ctx: MessageContext) -> Iterator[Finding]:
    antwoord = first(ctx.root, "Antwoord")
    wpb = first(antwoord, "Woonplaatsbeginsel") if antwoord is not None else None
    reason = text(antwoord, "RedenAfwijzingVerzoek")
    if wpb is not None and reason != "8":
        yield Finding(
            wpb,
            "Woonplaatsbeginsel given while RedenAfwijzingVerzoek is not 8",
            "RedenAfwijzingVerzoek 8",
            reason,
        )
