"""A care provider's tasks in the browser, each ending in a message built from its source.

From a toewijzing (301) waiting in the clerk's own inbox: confirm it (the 302 retour, composed
for it), start or stop zorg (305, 307), declare a month (323, with the other toewijzingen of
the same gemeente in the inbox), ask for a change (317) or for a toewijzing for the same client
(315). The answer goes to the gemeente that sent the toewijzing and to no one else (the header
is filled from the source, not from the form; the BSN too). The composed message takes the
API's path (``deps.validate`` and ``deps.submit``: validation, rules, accept), and what that
path refuses is shown beside the form field it concerns, in Dutch (docs/portal.md, "Taken").
"""

from __future__ import annotations

import asyncio
import datetime
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from gateway import envelope as env
from gateway.portal import compose, explain
from gateway.portal.i18n import Language, today_in_amsterdam
from gateway.portal.pages import MESSAGE_ID, Pages, Visitor
from gateway.report import Problem
from gateway.xmlsafe import ParseLimits, UnsafeXml, parse_untrusted

ENVELOPE_LIMITS = ParseLimits(max_bytes=2 * 1024 * 1024)
"""A toewijzing's envelope (its payload at most :data:`compose.LIMITS`, base64)."""

FIELDS_302 = {"IdentificatieRetour": "identificatie", "DagtekeningRetour": "dagtekening"}
"""Where a finding on a 302's element is shown: its form field (by the element's name)."""
CODES_302 = {"StUF058": "identificatie"}
"""Refusals of the accept path that concern one field (a message sent before)."""
HEADER_FIELDS = {
    "BerichtIdentificatie/Identificatie": "identificatie",
    "BerichtIdentificatie/Dagtekening": "dagtekening",
}
"""Where a finding on a heenbericht's header is shown."""
TASKS = {"start": ("305", "Start", "S"), "stop": ("307", "Stop", "E")}
"""The product tasks: their message number, product element and Identificatie letter."""


@dataclass(slots=True)
class Findings:
    """What is wrong with a posted form: per field, and for the message as a whole."""

    fields: dict[str, list[str]] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)

    def add(self, name: str | None, text: str) -> None:
        if name is None:
            self.general.append(text)
        else:
            self.fields.setdefault(name, []).append(text)

    def __bool__(self) -> bool:
        return bool(self.fields or self.general)


def new_identificatie(letter: str = "R") -> str:
    """A fresh Identificatie to prefill: ``letter`` and eleven hex digits (12 characters)."""
    return letter + env.new_referentienummer().replace("-", "")[:11].upper()


def _problem_text(t: Language, problem: Any) -> str:
    """A validation finding in words: the retourcode's official name (Dutch) when it has
    one, and the rule's own text."""
    named = (explain.code_name(explain.RETOURCODE, problem.retourcode or "") or "").rstrip(".")
    text = str(problem.message)
    return f"{named}: {text}" if named else text


def _field_of(path: str | None, fields: dict[str, str]) -> str | None:
    """The form field a finding's path (XSD path or rule plek) concerns, if any."""
    for element, name in fields.items():
        if path and element in path:
            return name
    return None


class TaskPages(Pages):
    """Reading the source toewijzing (the same way for every task); the 302, 305 and 307."""

    async def _toewijzing(
        self, request: web.Request, visitor: Visitor
    ) -> compose.Toewijzing | None:
        """The toewijzing of the path's id, when it waits in the visitor's own inbox and is
        addressed to the visitor by the gemeente whose envelope brought it; else None (the
        same 404 for another's message as for none: no existence oracle)."""
        message_id = request.match_info["id"]
        if not MESSAGE_ID.fullmatch(message_id):
            return None
        return await self._read(message_id, visitor)

    async def _read(self, message_id: str, visitor: Visitor) -> compose.Toewijzing | None:
        """A toewijzing in the visitor's inbox, read and checked (see :meth:`_toewijzing`)."""
        assert visitor.partner is not None
        data = await self.deps.broker.inbox_envelope(visitor.partner.id, message_id)
        if data is None:
            return None
        try:
            envelope = env.parse(parse_untrusted(data, ENVELOPE_LIMITS))
        except (UnsafeXml, env.EnvelopeError):
            return None
        if not envelope.payload or not envelope.payload_is_xml:
            return None
        source = await asyncio.to_thread(compose.read_toewijzing, envelope.payload)
        if (
            source is None
            or source.aanbieder != visitor.partner.id
            or source.gemeente != envelope.zender.organisatie
        ):
            return None
        return source

    async def _answered(self, request: web.Request, visitor: Visitor, code: str) -> bool:
        """Has the visitor already sent ``code`` (the 302) in the toewijzing's conversation?
        The gateway does not check a retour's IdentificatieRetour for reuse (TR056 lists
        heenberichten only), so the portal keeps a clerk from confirming twice."""
        assert visitor.partner is not None
        view = await self.deps.broker.view(request.match_info["id"], visitor.partner.id)
        return view is not None and any(
            entry.functie == code and entry.zender == visitor.partner.id
            for entry in view.conversation
        )

    def _done_before(self, request: web.Request, visitor: Visitor) -> web.Response:
        t = self.language(request)
        return self.notice(
            request,
            visitor,
            409,
            t.gettext("Al bevestigd"),
            t.gettext(
                "U hebt deze toewijzing al bevestigd; het retourbericht staat bij Verzonden. "
                "Handel de toewijzing af in uw postvak in."
            ),
        )

    def _not_found(self, request: web.Request, visitor: Visitor) -> web.Response:
        t = self.language(request)
        return self.notice(
            request,
            visitor,
            404,
            t.gettext("Niet gevonden"),
            t.gettext("Deze toewijzing wacht niet in uw postvak in."),
        )

    def _confirm_form(
        self,
        request: web.Request,
        visitor: Visitor,
        source: compose.Toewijzing,
        values: dict[str, str],
        findings: Findings,
        status: int = 200,
    ) -> web.Response:
        return self.render(
            request,
            "task_confirm.html",
            status,
            visitor=visitor,
            source=source,
            message_id=request.match_info["id"],
            values=values,
            findings=findings,
        )

    async def confirm_page(self, request: web.Request) -> web.StreamResponse:
        """The toewijzing to confirm, read for the clerk, with the retour's two values
        prefilled (a fresh IdentificatieRetour, today)."""
        visitor = self.visitor(request)
        if visitor is None or visitor.partner is None:
            return self.denied(request, visitor)
        source = await self._toewijzing(request, visitor)
        if source is None:
            return self._not_found(request, visitor)
        if await self._answered(request, visitor, source.code):
            return self._done_before(request, visitor)
        values = {"identificatie": new_identificatie(), "dagtekening": today_in_amsterdam()}
        return self._confirm_form(request, visitor, source, values, Findings())

    async def confirm(self, request: web.Request) -> web.StreamResponse:
        """Compose the 302 from the toewijzing and the form, check it and send it through
        the API's path; its problems go back to the form, beside their fields."""
        visitor = self.visitor(request)
        if visitor is None or visitor.partner is None:
            return self.denied(request, visitor)
        data = await self.form(request, visitor)
        if isinstance(data, web.Response):
            return data
        source = await self._toewijzing(request, visitor)
        if source is None:
            return self._not_found(request, visitor)
        if await self._answered(request, visitor, source.code):
            return self._done_before(request, visitor)
        t = self.language(request)
        values = {
            name: str(data.get(name, "")).strip()[:40] for name in ("identificatie", "dagtekening")
        }
        findings = Findings()
        for name, check in (
            ("identificatie", compose.checked_identificatie),
            ("dagtekening", compose.checked_datum),
        ):
            wrong = check(values[name])
            if wrong:
                findings.add(name, t.gettext(wrong))
        if findings:
            return self._confirm_form(request, visitor, source, values, findings, 422)
        payload = await asyncio.to_thread(
            compose.retour_302,
            source,
            self.deps.contents.registry,
            values["identificatie"],
            values["dagtekening"],
        )
        result = await self.deps.validate(payload)
        if not result.report.valid:
            for problem in result.report.errors:
                findings.add(_field_of(problem.path, FIELDS_302), _problem_text(t, problem))
            return self._confirm_form(request, visitor, source, values, findings, 422)
        outcome = await self.deps.submit(
            self.identity(request, visitor), visitor.partner, payload, result
        )
        if outcome.status != 202:
            code = str(outcome.body.get("code") or "")
            findings.add(CODES_302.get(code), t.gettext(explain.fo03(code)))
            return self._confirm_form(request, visitor, source, values, findings, outcome.status)
        return self.render(
            request,
            "task_sent.html",
            visitor=visitor,
            functie=source.code,
            gemeente=source.gemeente,
            outcome=outcome.body,
        )

    # start zorg (305) and stop zorg (307): one form, a row per toegewezen product

    async def products_page(self, request: web.Request) -> web.StreamResponse:
        """The toewijzing's products, each with its dates prefilled from the toewijzing (start:
        its ingangsdatum; stop: the begindatum, the einddatum and reason to fill)."""
        visitor = self.visitor(request)
        if visitor is None or visitor.partner is None:
            return self.denied(request, visitor)
        source = await self._toewijzing(request, visitor)
        task = request.match_info["task"]
        if source is None or task not in TASKS:
            return self._not_found(request, visitor)
        values = {
            "identificatie": new_identificatie(TASKS[task][2]),
            "dagtekening": today_in_amsterdam(),
        }
        for i, product in enumerate(source.products):
            values[f"begindatum-{i}"] = product.ingangsdatum
            values[f"einddatum-{i}"] = ""
            values[f"reden-{i}"] = ""
        return self._products_form(request, visitor, source, task, values, Findings())

    def _products_form(
        self,
        request: web.Request,
        visitor: Visitor,
        source: compose.Toewijzing,
        task: str,
        values: dict[str, str],
        findings: Findings,
        status: int = 200,
    ) -> web.Response:
        redenen = [
            (code, explain.code_name(REDEN[source.standard], code) or code)
            for code in compose.reden_codes(self.deps.contents.registry, source)
        ]
        return self.render(
            request,
            "task_products.html",
            status,
            visitor=visitor,
            source=source,
            task=task,
            functie=f"{source.prefix.upper()}{TASKS[task][0]}",
            message_id=request.match_info["id"],
            values=values,
            findings=findings,
            redenen=redenen,
        )

    async def products(self, request: web.Request) -> web.StreamResponse:
        """Compose the 305 or 307 from the toewijzing and the form's rows, check it and
        send it through the API's path; each problem beside its field."""
        visitor = self.visitor(request)
        if visitor is None or visitor.partner is None:
            return self.denied(request, visitor)
        data = await self.form(request, visitor)
        if isinstance(data, web.Response):
            return data
        source = await self._toewijzing(request, visitor)
        task = request.match_info["task"]
        if source is None or task not in TASKS:
            return self._not_found(request, visitor)
        number, item, _ = TASKS[task]
        t = self.language(request)
        names = ["identificatie", "dagtekening"] + [
            f"{name}-{i}"
            for i in range(len(source.products))
            for name in ("begindatum", "einddatum", "reden")
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
        codes = compose.reden_codes(self.deps.contents.registry, source)
        rows: list[tuple[int, compose.Start]] = []
        for i, product in enumerate(source.products):
            entry = self._row(t, task, i, product, values, codes, findings)
            if entry is not None:
                rows.append((i, entry))
        if not rows and not findings:
            first = "begindatum-0" if task == "start" else "einddatum-0"
            findings.add(first, t.gettext("Vul bij ten minste één product de datum in."))
        if findings:
            return self._products_form(request, visitor, source, task, values, findings, 422)
        payload = await asyncio.to_thread(
            compose.heen_305_307,
            source,
            self.deps.contents.registry,
            number,
            values["identificatie"],
            values["dagtekening"],
            [entry for _, entry in rows],
        )
        result = await self.deps.validate(payload)
        if not result.report.valid:
            lines = compose.product_lines(payload, f"{item}Product")
            for problem in result.report.errors:
                findings.add(
                    _row_field(problem, lines, [i for i, _ in rows], values),
                    _problem_text(t, problem),
                )
            return self._products_form(request, visitor, source, task, values, findings, 422)
        outcome = await self.deps.submit(
            self.identity(request, visitor), visitor.partner, payload, result
        )
        if outcome.status != 202:
            code = str(outcome.body.get("code") or "")
            findings.add(CODES_302.get(code), t.gettext(explain.fo03(code)))
            return self._products_form(
                request, visitor, source, task, values, findings, outcome.status
            )
        return self.render(
            request,
            "task_sent.html",
            visitor=visitor,
            functie=f"{source.prefix.upper()}{number}",
            gemeente=source.gemeente,
            outcome=outcome.body,
        )

    @staticmethod
    def _row(
        t: Language,
        task: str,
        i: int,
        product: compose.Product,
        values: dict[str, str],
        codes: tuple[str, ...],
        findings: Findings,
    ) -> compose.Start | None:
        """Product ``i``'s row as checked values, or None when it is left out (start: no
        begindatum; stop: no einddatum) or wrong (its problems added beside its fields)."""
        begin, end, reden = (values[f"{n}-{i}"] for n in ("begindatum", "einddatum", "reden"))
        if (task == "start" and not begin) or (task == "stop" and not end):
            return None
        wrong = False
        for name, value in (("begindatum", begin), ("einddatum", end)):
            if task == "start" and name == "einddatum":
                continue
            problem = compose.checked_datum(value)
            if problem:
                findings.add(f"{name}-{i}", t.gettext(problem))
                wrong = True
        if wrong:
            return None
        if begin < product.ingangsdatum or (product.einddatum and begin > product.einddatum):
            findings.add(
                f"begindatum-{i}",
                t.gettext("De begindatum ligt buiten de toewijzing (%(van)s tot en met %(tot)s).")
                % {"van": product.ingangsdatum, "tot": product.einddatum or "-"},
            )
            return None
        if task == "start":
            return compose.Start(product, begin)
        if end < begin:
            findings.add(f"einddatum-{i}", t.gettext("De einddatum ligt vóór de begindatum."))
            return None
        if reden not in codes:
            findings.add(f"reden-{i}", t.gettext("Kies de reden van beëindiging."))
            return None
        return compose.Start(product, begin, reden, end)


REDEN = {"ijw": ("ijw-JZ588",), "iwmo": ("iwmo-WMO588",)}
"""The code lists naming a RedenBeeindiging."""


def _row_field(
    problem: Problem,
    lines: list[int],
    used: list[int],
    values: dict[str, str],
    aliases: dict[str, str] | None = None,
    header: dict[str, str] | None = None,
) -> str | None:
    """The form field a finding on a composed 305/307 concerns: a header field by its path,
    a product's field by its element name and the line it is on (the n-th product element
    of the message is the n-th row the clerk filled), else None (shown above the form)."""
    path = re.sub(r"\[\d+\]", "", problem.path or "")
    for element, name in (header or HEADER_FIELDS).items():
        if path.endswith(element):
            return name
    leaf = path.rsplit("/", 1)[-1]
    if aliases is not None:  # a finding on the row as a whole goes beside its first field
        leaf = aliases.get(leaf, next(iter(aliases.values())))
    else:
        leaf = leaf.lower().replace("redenbeeindiging", "reden")
    line = problem.line or 0
    index = sum(1 for start in lines if start <= line) - 1
    if 0 <= index < len(used):
        name = f"{leaf}-{used[index]}"
        if name in values:
            return name
    return None


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
            euros=compose.EUROS,
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
        period = compose.month(values["maand"])
        if period is None:
            findings.add("maand", t.gettext("Geef een maand als JJJJ-MM, bijvoorbeeld 2026-11."))
        prestaties: list[tuple[int, compose.Prestatie]] = []
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
            compose.declaratie_323,
            sources[0][1],
            self.deps.contents.registry,
            values["identificatie"],
            values["dagtekening"],
            values["nummer"],
            period[0],
            period[1],
            [p for _, p in prestaties],
        )
        result = await self.deps.validate(payload)
        if not result.report.valid:
            lines = compose.product_lines(payload, "Prestatie")
            for problem in result.report.errors:
                findings.add(
                    _row_field(
                        problem,
                        lines,
                        [j for j, _ in prestaties],
                        values,
                        DECLARATIE_ROW,
                        DECLARATIE_HEADER,
                    ),
                    _problem_text(t, problem),
                )
            return self._declaration_form(request, visitor, sources, values, findings, 422)
        outcome = await self.deps.submit(
            self.identity(request, visitor), visitor.partner, payload, result
        )
        first = sources[0][1]
        if outcome.status != 202:
            code = str(outcome.body.get("code") or "")
            findings.add(CODES_302.get(code), t.gettext(explain.fo03(code)))
            return self._declaration_form(
                request, visitor, sources, values, findings, outcome.status
            )
        return self.render(
            request,
            "task_sent.html",
            visitor=visitor,
            functie=f"{first.prefix.upper()}323",
            gemeente=first.gemeente,
            outcome=outcome.body,
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
    ) -> compose.Prestatie | None:
        """Row ``j`` as a checked prestatie over the month's part the toewijzing covers, or
        None with its problems beside its fields."""
        eenheid = product.eenheid or compose.EUROS
        euros = eenheid == compose.EUROS
        volume = (
            compose.cents(values[f"volume-{j}"]) if euros else compose.whole(values[f"volume-{j}"])
        )
        tarief = None if euros else compose.cents(values[f"tarief-{j}"])
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
        return compose.Prestatie(
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
        redenen = [
            (code, explain.code_name(VERZOEK_REDEN[source.standard], code) or code)
            for code in compose.enumeration(self.deps.contents.registry, source, "LDT_RedenVerzoek")
        ]
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
        changes: list[tuple[int, compose.Wijziging]] = []
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
            compose.verzoek_317,
            source,
            self.deps.contents.registry,
            values["identificatie"],
            values["dagtekening"],
            values["referentie"],
            values["reden"],
            [c for _, c in changes],
        )
        result = await self.deps.validate(payload)
        if not result.report.valid:
            lines = compose.product_lines(payload, "TeWijzigenProduct")
            for problem in result.report.errors:
                findings.add(
                    _row_field(
                        problem,
                        lines,
                        [j for j, _ in changes],
                        values,
                        WIJZIGING_ROW,
                        WIJZIGING_HEADER,
                    ),
                    _problem_text(t, problem),
                )
            return self._change_form(request, visitor, source, values, findings, 422)
        outcome = await self.deps.submit(
            self.identity(request, visitor), visitor.partner, payload, result
        )
        if outcome.status != 202:
            code = str(outcome.body.get("code") or "")
            findings.add(CODES_302.get(code), t.gettext(explain.fo03(code)))
            return self._change_form(request, visitor, source, values, findings, outcome.status)
        return self.render(
            request,
            "task_sent.html",
            visitor=visitor,
            functie=f"{source.prefix.upper()}317",
            gemeente=source.gemeente,
            outcome=outcome.body,
        )

    @staticmethod
    def _change_row(
        t: Language,
        j: int,
        product: compose.Product,
        values: dict[str, str],
        findings: Findings,
    ) -> compose.Wijziging | None:
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
            number = compose.whole(values[f"volume-{j}"])
            if number is None:
                findings.add(f"volume-{j}", t.gettext("Geef een geheel aantal."))
                wrong = True
            else:
                volume = str(number)
        else:
            amount = compose.cents(values[f"budget-{j}"])
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
        return compose.Wijziging(product, ingang, einde, volume, budget)


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
        verwijzers = [
            (code, explain.code_name(VERWIJZER[source.standard], code) or code)
            for code in compose.enumeration(
                self.deps.contents.registry, source, "LDT_TypeVerwijzer"
            )
        ]
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
            number = compose.whole(values["volume"])
            if number is None:
                findings.add("volume", t.gettext("Geef een geheel aantal."))
            else:
                volume = str(number)
        else:
            amount = compose.cents(values["budget"])
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
        asked = compose.Aanvraag(
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
            compose.verzoek_315,
            source,
            self.deps.contents.registry,
            values["identificatie"],
            values["dagtekening"],
            asked,
        )
        result = await self.deps.validate(payload)
        if not result.report.valid:
            for problem in result.report.errors:
                path = re.sub(r"\[\d+\]", "", problem.path or "")
                # a rule that misses an element names it as expected: show it at that field
                field_name = AANVRAAG_FIELDS.get(str(problem.expected or "")) or next(
                    (name for element, name in AANVRAAG_FIELDS.items() if path.endswith(element)),
                    None,
                )
                findings.add(field_name, _problem_text(t, problem))
            return self._request_form(request, visitor, source, values, findings, 422)
        outcome = await self.deps.submit(
            self.identity(request, visitor), visitor.partner, payload, result
        )
        if outcome.status != 202:
            code = str(outcome.body.get("code") or "")
            findings.add(CODES_302.get(code), t.gettext(explain.fo03(code)))
            return self._request_form(request, visitor, source, values, findings, outcome.status)
        return self.render(
            request,
            "task_sent.html",
            visitor=visitor,
            functie=f"{source.prefix.upper()}315",
            gemeente=source.gemeente,
            outcome=outcome.body,
        )
