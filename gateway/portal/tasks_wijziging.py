"""The clerk's verzoek om wijziging (317) of a toewijzing's products (gateway/portal/tasks.py
has the common ground of the tasks)."""

from __future__ import annotations

import asyncio
import re

from aiohttp import web

from gateway.portal import compose, compose_requests
from gateway.portal.i18n import Language, today_in_amsterdam
from gateway.portal.pages import Visitor
from gateway.portal.tasks import (
    HEADER_FIELDS,
    Findings,
    TaskPages,
    named_codes,
    new_identificatie,
    row_field,
)

WIJZIGING_HEADER = {
    **HEADER_FIELDS,
    "ReferentieAanbieder": "referentie",
    "RedenVerzoek": "reden",
}
"""Where a finding on the 317's header or Verzoek is shown."""
WIJZIGING_ROW = {
    "GewensteIngangsdatum": "ingang",
    "Einddatum": "einde",
    "Volume": "volume",
    "Omvang": "volume",
    "Budget": "budget",
}
"""Where a finding on a TeWijzigenProduct is shown: its row's field."""
REFERENTIE = re.compile(r"[A-Za-z0-9._/-]{1,36}")
VERZOEK_REDEN = {"ijw": ("ijw-WJ758",), "iwmo": ("iwmo-WJ758",)}


def euros_text(value: str) -> str:
    """Cents as a clerk types euros (``2400,00``); empty stays empty."""
    return f"{int(value) // 100},{int(value) % 100:02d}" if value.isdigit() else ""


class ChangePages(TaskPages):
    """Ask for a change of a toewijzing (317): new dates, volume or budget per product."""

    def _change_form(
        self,
        request: web.Request,
        visitor: Visitor,
        source: compose.Toewijzing,
        values: dict[str, str],
        findings: Findings,
        status: int = 200,
    ) -> web.Response:
        redenen = named_codes(
            VERZOEK_REDEN[source.standard],
            compose.enumeration(self.deps.contents.registry, source, "LDT_RedenVerzoek"),
        )
        return self.render(
            request,
            "task_change.html",
            status,
            visitor=visitor,
            source=source,
            functie=f"{source.prefix.upper()}317",
            message_id=request.match_info["id"],
            values=values,
            findings=findings,
            redenen=redenen,
        )

    async def change_page(self, request: web.Request) -> web.StreamResponse:
        visitor = self.visitor(request)
        if visitor is None or visitor.partner is None:
            return self.denied(request, visitor)
        source = await self._toewijzing(request, visitor)
        if source is None:
            return self._not_found(request, visitor)
        values = {
            "identificatie": new_identificatie("V"),
            "dagtekening": today_in_amsterdam(),
            "referentie": new_identificatie("VOW-"),
            "reden": "",
        }
        for j, product in enumerate(source.products):
            values.update(
                {
                    f"ingang-{j}": "",
                    f"einde-{j}": product.einddatum,
                    f"volume-{j}": product.volume,
                    f"budget-{j}": euros_text(product.budget),
                }
            )
        return self._change_form(request, visitor, source, values, Findings())

    async def change(self, request: web.Request) -> web.StreamResponse:
        """Compose the 317 from the toewijzing and the rows the clerk changed, check it and
        send it through the API's path; each problem beside its field."""
        visitor = self.visitor(request)
        if visitor is None or visitor.partner is None:
            return self.denied(request, visitor)
        data = await self.form(request, visitor)
        if isinstance(data, web.Response):
            return data
        source = await self._toewijzing(request, visitor)
        if source is None:
            return self._not_found(request, visitor)
        t = self.language(request)
        names = ["identificatie", "dagtekening", "referentie", "reden"] + [
            f"{n}-{j}"
            for j in range(len(source.products))
            for n in ("ingang", "einde", "volume", "budget")
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
        if not REFERENTIE.fullmatch(values["referentie"]):
            findings.add(
                "referentie",
                t.gettext("Geef 1 tot 36 letters, cijfers of de tekens . _ / - (geen spaties)."),
            )
        codes = compose.enumeration(self.deps.contents.registry, source, "LDT_RedenVerzoek")
        if values["reden"] not in codes:
            findings.add("reden", t.gettext("Kies de reden van het verzoek."))
        changes: list[tuple[int, compose_requests.Wijziging]] = []
        for j, product in enumerate(source.products):
            if not values[f"ingang-{j}"]:
                continue
            entry = self._change_row(t, j, product, values, findings)
            if entry is not None:
                changes.append((j, entry))
        if not changes and not findings:
            findings.add(
                "ingang-0", t.gettext("Vul bij ten minste één product de gewenste ingangsdatum in.")
            )
        if findings:
            return self._change_form(request, visitor, source, values, findings, 422)
        payload = await asyncio.to_thread(
            compose_requests.verzoek_317,
            source,
            self.deps.contents.registry,
            values["identificatie"],
            values["dagtekening"],
            values["referentie"],
            values["reden"],
            [c for _, c in changes],
        )
        lines = compose.product_lines(payload, "TeWijzigenProduct")
        row_numbers = [j for j, _ in changes]
        return await self.send(
            request,
            visitor,
            payload,
            findings,
            field_for=lambda problem: row_field(
                problem, lines, row_numbers, values, WIJZIGING_ROW, WIJZIGING_HEADER
            ),
            form=lambda status: self._change_form(
                request, visitor, source, values, findings, status
            ),
            functie=f"{source.prefix.upper()}317",
            gemeente=source.gemeente,
        )

    @staticmethod
    def _change_row(
        t: Language,
        j: int,
        product: compose.Product,
        values: dict[str, str],
        findings: Findings,
    ) -> compose_requests.Wijziging | None:
        """Row ``j`` as a checked change, or None with its problems beside its fields."""
        ingang, einde = values[f"ingang-{j}"], values[f"einde-{j}"]
        wrong = False
        for name, value in (("ingang", ingang), ("einde", einde)):
            if name == "einde" and not value:
                continue
            problem = compose.checked_datum(value)
            if problem:
                findings.add(f"{name}-{j}", t.gettext(problem))
                wrong = True
        volume, budget = "", ""
        if product.eenheid:
            number = compose_requests.whole(values[f"volume-{j}"])
            if number is None:
                findings.add(f"volume-{j}", t.gettext("Geef een geheel aantal."))
                wrong = True
            else:
                volume = str(number)
        else:
            amount = compose_requests.cents(values[f"budget-{j}"])
            if amount is None:
                findings.add(
                    f"budget-{j}", t.gettext("Geef een bedrag in euro, bijvoorbeeld 450,00.")
                )
                wrong = True
            else:
                budget = str(amount)
        if wrong:
            return None
        if einde and einde < ingang:
            findings.add(f"einde-{j}", t.gettext("De einddatum ligt vóór de begindatum."))
            return None
        return compose_requests.Wijziging(product, ingang, einde, volume, budget)
