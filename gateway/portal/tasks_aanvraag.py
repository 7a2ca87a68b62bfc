"""The clerk's verzoek om toewijzing (315) for the client of a toewijzing
(gateway/portal/tasks.py has the common ground of the tasks)."""

from __future__ import annotations

import asyncio
import re

from aiohttp import web

from gateway.portal import compose, compose_requests
from gateway.portal.i18n import today_in_amsterdam
from gateway.portal.pages import Visitor
from gateway.portal.tasks import (
    HEADER_FIELDS,
    Findings,
    TaskPages,
    named_codes,
    new_identificatie,
)
from gateway.portal.tasks_declaratie import CODE
from gateway.portal.tasks_wijziging import REFERENTIE, euros_text
from gateway.report import Problem

AANVRAAG_FIELDS = {
    **HEADER_FIELDS,
    "ReferentieAanbieder": "referentie",
    "Product/Categorie": "categorie",
    "Product/Code": "code",
    "Product": "categorie",
    "ToewijzingIngangsdatum": "ingang",
    "ToewijzingEinddatum": "einde",
    "Omvang/Volume": "volume",
    "Omvang": "volume",
    "Budget": "budget",
    "Verwijzer/Type": "verwijzer",
    "Verwijzer/ZorgverlenerCode": "zorgverlener",
    "Verwijzer": "verwijzer",
    "AangevraagdProduct": "ingang",
}
"""Where a finding on the 315 is shown (one product asked for: no rows)."""
CATEGORIE = re.compile(r"[0-9]{2}")
AGB = re.compile(r"[0-9]{8}")
VERWIJZER = {"ijw": ("ijw-COD327",), "iwmo": ("iwmo-COD327",)}


class RequestPages(TaskPages):
    """Ask for a toewijzing (315) for the client of a toewijzing, modelled on its product."""

    def _request_form(
        self,
        request: web.Request,
        visitor: Visitor,
        source: compose.Toewijzing,
        values: dict[str, str],
        findings: Findings,
        status: int = 200,
    ) -> web.Response:
        model = source.products[0]
        verwijzers = named_codes(
            VERWIJZER[source.standard],
            compose.enumeration(self.deps.contents.registry, source, "LDT_TypeVerwijzer"),
        )
        return self.render(
            request,
            "task_request.html",
            status,
            visitor=visitor,
            source=source,
            model=model,
            functie=f"{source.prefix.upper()}315",
            message_id=request.match_info["id"],
            values=values,
            findings=findings,
            verwijzers=verwijzers,
        )

    async def request_page(self, request: web.Request) -> web.StreamResponse:
        visitor = self.visitor(request)
        if visitor is None or visitor.partner is None:
            return self.denied(request, visitor)
        source = await self._toewijzing(request, visitor)
        if source is None or not source.products:
            return self._not_found(request, visitor)
        model = source.products[0]
        values = {
            "identificatie": new_identificatie("A"),
            "dagtekening": today_in_amsterdam(),
            "referentie": new_identificatie("VOT-"),
            "categorie": model.categorie,
            "code": model.code,
            "ingang": "",
            "einde": "",
            "volume": model.volume,
            "budget": euros_text(model.budget),
            "verwijzer": "",
            "zorgverlener": "",
        }
        return self._request_form(request, visitor, source, values, Findings())

    async def ask(self, request: web.Request) -> web.StreamResponse:
        """Compose the 315 from the toewijzing's client and the form, check it and send it
        through the API's path; each problem beside its field."""
        visitor = self.visitor(request)
        if visitor is None or visitor.partner is None:
            return self.denied(request, visitor)
        data = await self.form(request, visitor)
        if isinstance(data, web.Response):
            return data
        source = await self._toewijzing(request, visitor)
        if source is None or not source.products:
            return self._not_found(request, visitor)
        model = source.products[0]
        t = self.language(request)
        names = (
            "identificatie", "dagtekening", "referentie", "categorie", "code", "ingang",
            "einde", "volume", "budget", "verwijzer", "zorgverlener",
        )  # fmt: skip
        values = {name: str(data.get(name, "")).strip()[:40] for name in names}
        findings = Findings()
        for name, check in (
            ("identificatie", compose.checked_identificatie),
            ("dagtekening", compose.checked_datum),
            ("ingang", compose.checked_datum),
        ):
            wrong = check(values[name])
            if wrong:
                findings.add(name, t.gettext(wrong))
        if values["einde"]:
            wrong = compose.checked_datum(values["einde"])
            if wrong:
                findings.add("einde", t.gettext(wrong))
            elif values["einde"] < values["ingang"]:
                findings.add("einde", t.gettext("De einddatum ligt vóór de begindatum."))
        if not REFERENTIE.fullmatch(values["referentie"]):
            findings.add(
                "referentie",
                t.gettext("Geef 1 tot 36 letters, cijfers of de tekens . _ / - (geen spaties)."),
            )
        if not CATEGORIE.fullmatch(values["categorie"]):
            findings.add("categorie", t.gettext("Geef de productcategorie: twee cijfers."))
        if values["code"] and not CODE.fullmatch(values["code"]):
            findings.add("code", t.gettext("Geef de productcode: 1 tot 5 letters of cijfers."))
        volume, budget = "", ""
        if model.eenheid:
            number = compose_requests.whole(values["volume"])
            if number is None:
                findings.add("volume", t.gettext("Geef een geheel aantal."))
            else:
                volume = str(number)
        else:
            amount = compose_requests.cents(values["budget"])
            if amount is None:
                findings.add("budget", t.gettext("Geef een bedrag in euro, bijvoorbeeld 450,00."))
            else:
                budget = str(amount)
        codes = compose.enumeration(self.deps.contents.registry, source, "LDT_TypeVerwijzer")
        if values["verwijzer"] not in codes:
            findings.add("verwijzer", t.gettext("Kies wie de cliënt verwees."))
        if values["zorgverlener"] and not AGB.fullmatch(values["zorgverlener"]):
            findings.add("zorgverlener", t.gettext("Geef een AGB-code: acht cijfers."))
        if findings:
            return self._request_form(request, visitor, source, values, findings, 422)
        asked = compose_requests.Aanvraag(
            referentie=values["referentie"],
            categorie=values["categorie"],
            code=values["code"],
            ingangsdatum=values["ingang"],
            einddatum=values["einde"],
            volume=volume,
            eenheid=model.eenheid,
            frequentie=model.frequentie,
            budget=budget,
            verwijzer=values["verwijzer"],
            zorgverlener=values["zorgverlener"],
        )
        payload = await asyncio.to_thread(
            compose_requests.verzoek_315,
            source,
            self.deps.contents.registry,
            values["identificatie"],
            values["dagtekening"],
            asked,
        )
        return await self.send(
            request,
            visitor,
            payload,
            findings,
            field_for=_aanvraag_field,
            form=lambda status: self._request_form(
                request, visitor, source, values, findings, status
            ),
            functie=f"{source.prefix.upper()}315",
            gemeente=source.gemeente,
        )


def _aanvraag_field(problem: Problem) -> str | None:
    """The form field a problem of a composed 315 concerns; a rule that misses an element
    names it as expected: shown at that field."""
    path = re.sub(r"\[\d+\]", "", problem.path or "")
    return AANVRAAG_FIELDS.get(str(problem.expected or "")) or next(
        (name for element, name in AANVRAAG_FIELDS.items() if path.endswith(element)),
        None,
    )
