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
import re
from collections.abc import Callable, Iterable
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


def named_codes(lists: tuple[str, ...], codes: Iterable[str]) -> list[tuple[str, str]]:
    """The codes a form's select offers, each with its official name from ``lists`` (the
    code itself where the lists have none)."""
    return [(code, explain.code_name(lists, code) or code) for code in codes]


def problem_text(t: Language, problem: Any) -> str:
    """A validation finding in words: the retourcode's official name (Dutch) when it has
    one, and the rule's own text."""
    named = (explain.code_name(explain.RETOURCODE, problem.retourcode or "") or "").rstrip(".")
    text = str(problem.message)
    return f"{named}: {text}" if named else text


def field_of(path: str | None, fields: dict[str, str]) -> str | None:
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
        """The toewijzing of the path's id, when the visitor received it through its own
        inbox (waiting there, or acknowledged: in its archive) and it is addressed to the
        visitor by the gemeente whose envelope brought it; else None (the same 404 for
        another's message as for none: no existence oracle)."""
        message_id = request.match_info["id"]
        if not MESSAGE_ID.fullmatch(message_id):
            return None
        return await self._read(message_id, visitor)

    async def _read(self, message_id: str, visitor: Visitor) -> compose.Toewijzing | None:
        """A toewijzing in the visitor's inbox or archive, read and checked (see
        :meth:`_toewijzing`)."""
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
            t.gettext("Deze toewijzing staat niet in uw postvak in of uw archief."),
        )

    async def send(
        self,
        request: web.Request,
        visitor: Visitor,
        payload: bytes,
        findings: Findings,
        *,
        field_for: Callable[[Problem], str | None],
        form: Callable[[int], web.StreamResponse],
        functie: str,
        gemeente: str,
    ) -> web.StreamResponse:
        """The composed message through the API's path: validated, then submitted. A problem
        of either is shown on the form again (``form(status)``) beside the field it concerns
        (``field_for``: a validation problem's field; an accept refusal's by its code);
        otherwise the page that says the message went to the gemeente."""
        if visitor.partner is None:  # the tasks' pages are for a partner's clerk only
            return self._not_found(request, visitor)
        t = self.language(request)
        result = await self.deps.validate(payload)
        if not result.report.valid:
            for problem in result.report.errors:
                findings.add(field_for(problem), problem_text(t, problem))
            return form(422)
        outcome = await self.deps.submit(
            self.identity(request, visitor), visitor.partner, payload, result
        )
        if outcome.status != 202:
            code = str(outcome.body.get("code") or "")
            findings.add(CODES_302.get(code), t.gettext(explain.fo03(code)))
            return form(outcome.status)
        return self.render(
            request,
            "task_sent.html",
            visitor=visitor,
            functie=functie,
            gemeente=gemeente,
            outcome=outcome.body,
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
        return await self.send(
            request,
            visitor,
            payload,
            findings,
            field_for=lambda problem: field_of(problem.path, FIELDS_302),
            form=lambda status: self._confirm_form(
                request, visitor, source, values, findings, status
            ),
            functie=source.code,
            gemeente=source.gemeente,
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
        redenen = named_codes(
            REDEN[source.standard], compose.reden_codes(self.deps.contents.registry, source)
        )
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
        lines = compose.product_lines(payload, f"{item}Product")
        return await self.send(
            request,
            visitor,
            payload,
            findings,
            field_for=lambda problem: row_field(problem, lines, [i for i, _ in rows], values),
            form=lambda status: self._products_form(
                request, visitor, source, task, values, findings, status
            ),
            functie=f"{source.prefix.upper()}{number}",
            gemeente=source.gemeente,
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


def row_field(
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
