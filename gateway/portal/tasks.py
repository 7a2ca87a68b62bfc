"""A care provider's tasks in the browser, each ending in a message built from its source.

Today: confirm a toewijzing (the 302 retour composed for it, retourcode 0200). The source is a
toewijzing waiting in the clerk's own inbox (addressed to its organisation); the answer goes
to the gemeente that sent it and to no one else (the header is filled from the source, not
from the form). The composed message takes the API's path (``deps.validate`` and
``deps.submit``: validation, rules, accept), and what that path refuses is shown beside the
form field it concerns, in Dutch.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from gateway import envelope as env
from gateway.portal import compose, explain
from gateway.portal.i18n import Language, today_in_amsterdam
from gateway.portal.pages import MESSAGE_ID, Pages, Visitor
from gateway.xmlsafe import ParseLimits, UnsafeXml, parse_untrusted

ENVELOPE_LIMITS = ParseLimits(max_bytes=2 * 1024 * 1024)
"""A toewijzing's envelope (its payload at most :data:`compose.LIMITS`, base64)."""

FIELDS_302 = {"IdentificatieRetour": "identificatie", "DagtekeningRetour": "dagtekening"}
"""Where a finding on a 302's element is shown: its form field (by the element's name)."""
CODES_302 = {"StUF058": "identificatie"}
"""Refusals of the accept path that concern one field (a message sent before)."""


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


def new_identificatie() -> str:
    """A fresh IdentificatieRetour to prefill: ``R`` and eleven hex digits (12 characters)."""
    return "R" + env.new_referentienummer().replace("-", "")[:11].upper()


def _problem_text(t: Language, problem: Any) -> str:
    """A validation finding in words: the retourcode's official name (Dutch) when it has
    one, and the rule's own text."""
    named = explain.code_name(explain.RETOURCODE, problem.retourcode or "") or ""
    text = str(problem.message)
    return f"{named}: {text}" if named else text


def _field_of(path: str | None, fields: dict[str, str]) -> str | None:
    """The form field a finding's path (XSD path or rule plek) concerns, if any."""
    for element, name in fields.items():
        if path and element in path:
            return name
    return None


class TaskPages(Pages):
    async def _toewijzing(
        self, request: web.Request, visitor: Visitor
    ) -> compose.Toewijzing | None:
        """The toewijzing of the path's id, when it waits in the visitor's own inbox and is
        addressed to the visitor by the gemeente whose envelope brought it; else None (the
        same 404 for another's message as for none: no existence oracle)."""
        assert visitor.partner is not None
        message_id = request.match_info["id"]
        if not MESSAGE_ID.fullmatch(message_id):
            return None
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
