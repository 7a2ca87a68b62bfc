"""Dates against the message's own Dagtekening: TR134, TR137 and TR380.

The rule texts name the messages but not the elements; which dates each rule covers is the
table below (the catalogue's ``elements`` and ``note`` say why). Dates are XSD-valid
``xs:date`` values without a time zone here, so comparing them as dates is the official
yyyymmdd comparison.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

from lxml import etree

from gateway.rules.base import Finding, MessageContext, as_date, every, first, header, rule

_BIRTH = "Client/Geboortedatum/Datum"
_PRESTATIE_PERIODE = "Clienten/Client/Prestaties/Prestatie/ProductPeriode"

PAST_DATES: dict[int, tuple[str, ...]] = {
    301: (
        _BIRTH,
        "Client/Relaties/Relatie/Geboortedatum/Datum",
        "Client/ToegewezenProducten/ToegewezenProduct/Toewijzingsdatum",
    ),
    305: (_BIRTH, "Client/StartProducten/StartProduct/Begindatum"),
    307: (
        _BIRTH,
        "Client/StopProducten/StopProduct/Begindatum",
        "Client/StopProducten/StopProduct/Einddatum",
    ),
    315: (_BIRTH,),
    323: (
        "Declaratie/DeclaratieDagtekening",
        "Declaratie/DeclaratiePeriode/Begindatum",
        f"Declaratie/{_PRESTATIE_PERIODE}/Begindatum",
    ),
    325: (f"DeclaratieAntwoord/{_PRESTATIE_PERIODE}/Begindatum",),
}
"""TR134: dates of what has happened already, so not after the Dagtekening."""

CLOSED_PERIODS: dict[int, tuple[str, ...]] = {
    323: ("Declaratie/DeclaratiePeriode", f"Declaratie/{_PRESTATIE_PERIODE}"),
    325: (f"DeclaratieAntwoord/{_PRESTATIE_PERIODE}",),
}
"""TR137: periods whose Einddatum lies between their Begindatum and the Dagtekening."""

FUTURE_DATES: dict[int, tuple[str, ...]] = {
    317: ("Client/Verzoek/TeWijzigenProducten/TeWijzigenProduct/Einddatum",),
}
"""TR380: the new end of a current assignment asked for in a verzoek om wijziging lies after
the Dagtekening (a change cannot end care in the past)."""


def _dagtekening(ctx: MessageContext) -> date:
    found = as_date(header(ctx), "BerichtIdentificatie/Dagtekening")
    assert found is not None  # heenberichten carry one (XSD)
    return found


def _dated(ctx: MessageContext, paths: tuple[str, ...]) -> Iterator[tuple[etree._Element, date]]:
    """Each date at the paths: the parent is found once, the date read through the run's
    cache (other rules read the same dates)."""
    for path in paths:
        parent_path, _, leaf = path.rpartition("/")
        for parent in every(ctx.root, parent_path):
            value = as_date(parent, leaf)
            if value is not None:
                el = first(parent, leaf)
                assert el is not None
                yield el, value


@rule("TR134")
def past_dates_not_after_dagtekening(ctx: MessageContext) -> Iterator[Finding]:
    dagtekening = _dagtekening(ctx)
    for el, value in _dated(ctx, PAST_DATES.get(ctx.message.number, ())):
        if value > dagtekening:
            yield Finding(
                el, "date after the message's Dagtekening", f"<= {dagtekening}", str(value)
            )


@rule("TR137")
def period_ends_between_begin_and_dagtekening(ctx: MessageContext) -> Iterator[Finding]:
    dagtekening = _dagtekening(ctx)
    for path in CLOSED_PERIODS.get(ctx.message.number, ()):
        for periode in every(ctx.root, path):
            begin, end = as_date(periode, "Begindatum"), as_date(periode, "Einddatum")
            if begin is None or end is None:
                continue
            if end < begin or end > dagtekening:
                yield Finding(
                    first(periode, "Einddatum"),
                    "Einddatum before the Begindatum"
                    if end < begin
                    else "Einddatum after the message's Dagtekening",
                    f"from {begin} to {dagtekening}",
                    str(end),
                )


@rule("TR380")
def requested_end_after_dagtekening(ctx: MessageContext) -> Iterator[Finding]:
    dagtekening = _dagtekening(ctx)
    for el, value in _dated(ctx, FUTURE_DATES.get(ctx.message.number, ())):
        if value <= dagtekening:
            yield Finding(
                el, "end date not after the message's Dagtekening", f"> {dagtekening}", str(value)
            )
