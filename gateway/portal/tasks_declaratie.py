"""The clerk's declaratie (323) over a month, from the toewijzingen of one gemeente in its
inbox (gateway/portal/tasks.py has the common ground of the tasks)."""

from __future__ import annotations

import asyncio
import datetime
import re

from aiohttp import web

from gateway.portal import compose, compose_requests
from gateway.portal.i18n import Language, today_in_amsterdam
from gateway.portal.pages import Visitor
from gateway.portal.tasks import (
    HEADER_FIELDS,
    Findings,
    TaskPages,
    new_identificatie,
    row_field,
)

DECLARATIE_HEADER = {
    **HEADER_FIELDS,
    "DeclaratieNummer": "nummer",
    "DeclaratiePeriode/Begindatum": "maand",
    "DeclaratiePeriode/Einddatum": "maand",
    "DeclaratieDagtekening": "dagtekening",
    "TotaalIngediendBedrag/TotaalBedrag": "maand",
}
"""Where a finding on the 323's header or declaratie is shown."""
DECLARATIE_ROW = {
    "GeleverdVolume": "volume",
    "ProductTarief": "tarief",
    "ProductCode": "code",
    "Bedrag": "volume",
    "Begindatum": "volume",
    "Einddatum": "volume",
    "ProductPeriode": "volume",
}
"""Where a finding on a Prestatie is shown: its row's field."""
CODE = re.compile(r"[0-9A-Za-z]{1,5}")
NUMMER = re.compile(r"[0-9A-Za-z]{1,12}")
MAX_SOURCES = 20
"""Toewijzingen offered on one declaratie form at most (the page stays small)."""


def last_month() -> str:
    """The month before this one (JJJJ-MM): what a clerk declares at the start of a month."""
    first = datetime.date.fromisoformat(today_in_amsterdam()).replace(day=1)
    return (first - datetime.timedelta(days=1)).strftime("%Y-%m")


class DeclarationPages(TaskPages):
    """Declare (323) over a month from the toewijzingen of one gemeente in the inbox."""

    async def _sources(
        self, request: web.Request, visitor: Visitor
    ) -> list[tuple[str, compose.Toewijzing]]:
        """The chosen toewijzing first, then the other toewijzingen waiting in the inbox from
        the same gemeente in the same standard (each read as :meth:`_toewijzing` reads it)."""
        assert visitor.partner is not None
        first = await self._toewijzing(request, visitor)
        if first is None:
            return []
        chosen = request.match_info["id"]
        found = [(chosen, first)]
        for item in await self.deps.broker.inbox(visitor.partner.id, 200):
            if len(found) >= MAX_SOURCES:
                break
            if item.id == chosen or item.functie != f"{first.prefix.upper()}301":
                continue
            if item.zender != first.gemeente:
                continue
            other = await self._read(item.id, visitor)
            if other is not None and other.standard == first.standard:
                found.append((item.id, other))
        return found

    @staticmethod
    def _rows(
        sources: list[tuple[str, compose.Toewijzing]],
    ) -> list[tuple[compose.Toewijzing, compose.Product]]:
        return [(source, product) for _, source in sources for product in source.products]

    def _declaration_form(
        self,
        request: web.Request,
        visitor: Visitor,
        sources: list[tuple[str, compose.Toewijzing]],
        values: dict[str, str],
        findings: Findings,
        status: int = 200,
    ) -> web.Response:
        first = sources[0][1]
        return self.render(
            request,
            "task_declaration.html",
            status,
            visitor=visitor,
            first=first,
            rows=self._rows(sources),
            euros=compose_requests.EUROS,
            functie=f"{first.prefix.upper()}323",
            message_id=request.match_info["id"],
            values=values,
            findings=findings,
        )

    async def declaration_page(self, request: web.Request) -> web.StreamResponse:
        visitor = self.visitor(request)
        if visitor is None or visitor.partner is None:
            return self.denied(request, visitor)
        sources = await self._sources(request, visitor)
        if not sources:
            return self._not_found(request, visitor)
        values = {
            "identificatie": new_identificatie("D"),
            "dagtekening": today_in_amsterdam(),
            "nummer": new_identificatie("N"),
            "maand": last_month(),
        }
        for j, (_, product) in enumerate(self._rows(sources)):
            values.update({f"volume-{j}": "", f"tarief-{j}": "", f"code-{j}": product.code})
        return self._declaration_form(request, visitor, sources, values, Findings())

    async def declaration(self, request: web.Request) -> web.StreamResponse:
        """Compose the 323 from the chosen toewijzingen' rows the clerk filled, check it and
        send it through the API's path; each problem beside its field."""
        visitor = self.visitor(request)
        if visitor is None or visitor.partner is None:
            return self.denied(request, visitor)
        data = await self.form(request, visitor)
        if isinstance(data, web.Response):
            return data
        sources = await self._sources(request, visitor)
        if not sources:
            return self._not_found(request, visitor)
        t = self.language(request)
        rows = self._rows(sources)
        names = ["identificatie", "dagtekening", "nummer", "maand"] + [
            f"{n}-{j}" for j in range(len(rows)) for n in ("volume", "tarief", "code")
        ]
        values = {name: str(data.get(name, "")).strip()[:40] for name in names}
        findings = Findings()
        for name, check in (
            ("identificatie", compose.checked_identificatie),
            ("dagtekening", compose.checked_datum),
        ):
            wrong = check(values[name])
            if wrong:
                findings.add(name, t.gettext(wrong))
        if not NUMMER.fullmatch(values["nummer"]):
            findings.add("nummer", t.gettext("Geef 1 tot 12 letters of cijfers."))
        period = compose_requests.month(values["maand"])
        if period is None:
            findings.add("maand", t.gettext("Geef een maand als JJJJ-MM, bijvoorbeeld 2026-11."))
        prestaties: list[tuple[int, compose_requests.Prestatie]] = []
        for j, (source, product) in enumerate(rows):
            if period is None or not values[f"volume-{j}"]:
                continue
            entry = self._prestatie(t, j, source, product, period, values, findings)
            if entry is not None:
                prestaties.append((j, entry))
        if period is not None and not prestaties and not findings:
            findings.add(
                "volume-0", t.gettext("Vul bij ten minste één product de geleverde zorg in.")
            )
        if findings or period is None:
            return self._declaration_form(request, visitor, sources, values, findings, 422)
        order = list(dict.fromkeys(p.source.bsn for _, p in prestaties))
        prestaties.sort(key=lambda row: order.index(row[1].source.bsn))  # as the 323 groups
        payload = await asyncio.to_thread(
            compose_requests.declaratie_323,
            sources[0][1],
            self.deps.contents.registry,
            values["identificatie"],
            values["dagtekening"],
            values["nummer"],
            period[0],
            period[1],
            [p for _, p in prestaties],
        )
        lines = compose.product_lines(payload, "Prestatie")
        row_numbers = [j for j, _ in prestaties]
        first = sources[0][1]
        return await self.send(
            request,
            visitor,
            payload,
            findings,
            field_for=lambda problem: row_field(
                problem, lines, row_numbers, values, DECLARATIE_ROW, DECLARATIE_HEADER
            ),
            form=lambda status: self._declaration_form(
                request, visitor, sources, values, findings, status
            ),
            functie=f"{first.prefix.upper()}323",
            gemeente=first.gemeente,
        )

    @staticmethod
    def _prestatie(
        t: Language,
        j: int,
        source: compose.Toewijzing,
        product: compose.Product,
        period: tuple[str, str],
        values: dict[str, str],
        findings: Findings,
    ) -> compose_requests.Prestatie | None:
        """Row ``j`` as a checked prestatie over the month's part the toewijzing covers, or
        None with its problems beside its fields."""
        eenheid = product.eenheid or compose_requests.EUROS
        euros = eenheid == compose_requests.EUROS
        volume = (
            compose_requests.cents(values[f"volume-{j}"])
            if euros
            else compose_requests.whole(values[f"volume-{j}"])
        )
        tarief = None if euros else compose_requests.cents(values[f"tarief-{j}"])
        code = values[f"code-{j}"]
        wrong = False
        if volume is None:
            findings.add(
                f"volume-{j}",
                t.gettext("Geef een bedrag in euro, bijvoorbeeld 450,00.")
                if euros
                else t.gettext("Geef een geheel aantal."),
            )
            wrong = True
        if not euros and tarief is None:
            findings.add(f"tarief-{j}", t.gettext("Geef het tarief in euro, bijvoorbeeld 62,50."))
            wrong = True
        if not CODE.fullmatch(code):
            findings.add(f"code-{j}", t.gettext("Geef de productcode: 1 tot 5 letters of cijfers."))
            wrong = True
        begin = max(period[0], product.ingangsdatum)
        end = min(period[1], product.einddatum or period[1])
        if begin > end:
            findings.add(f"volume-{j}", t.gettext("De toewijzing loopt niet in deze maand."))
            wrong = True
        if wrong or volume is None:
            return None
        bedrag = volume if tarief is None else volume * tarief
        if bedrag > 99_999_999:
            findings.add(f"volume-{j}", t.gettext("Het bedrag is te groot voor één prestatie."))
            return None
        return compose_requests.Prestatie(
            source=source,
            product=product,
            begindatum=begin,
            einddatum=end,
            volume=volume,
            eenheid=eenheid,
            tarief=tarief,
            bedrag=bedrag,
            referentie=new_identificatie("P") + new_identificatie("")[:7],
            code=code,
        )
