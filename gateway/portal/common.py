"""Pages for partners and the operator alike, each showing what the visitor may see: one
message with its conversation, overdue retours, beleidsinformatie."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from gateway import stats
from gateway.audit import AuditEvent
from gateway.broker.base import StorageError
from gateway.portal.charts import bar_chart
from gateway.portal.document import Document, read_envelope
from gateway.portal.explain import N_
from gateway.portal.pages import MESSAGE_ID, PAGE, Pages, Visitor
from routing.partners import PartnerKind


class CommonPages(Pages):
    async def message(self, request: web.Request) -> web.StreamResponse:
        """One message as a document to read (its BSNs masked), with its deliveries, history
        and conversation (heen and retours), as ``GET /api/v1/messages/{id}`` shows it to the
        same identity."""
        visitor = self.visitor(request)
        if visitor is None:
            return self.denied(request, visitor)
        return await self._message(request, visitor, reveal=False)

    async def reveal_bsn(self, request: web.Request) -> web.StreamResponse:
        """The same page with the BSNs shown, asked for with a button (a POST carrying the
        session's CSRF token) and audited: who, which message, and the BSNs as the audit
        trail keeps them (pseudonyms), so an operator can find who looked at a citizen."""
        visitor = self.visitor(request)
        if visitor is None:
            return self.denied(request, visitor)
        data = await self.form(request, visitor)
        if isinstance(data, web.Response):
            return data
        return await self._message(request, visitor, reveal=True)

    async def _message(
        self, request: web.Request, visitor: Visitor, *, reveal: bool
    ) -> web.StreamResponse:
        message_id = request.match_info["id"]
        viewer = None if visitor.admin else visitor.partner.id if visitor.partner else ""
        # who may read it is settled first: nothing of the payload is touched for anyone else
        view = (
            await self.deps.broker.view(message_id, viewer)
            if MESSAGE_ID.fullmatch(message_id)
            else None
        )
        if view is None:
            t = self.language(request)
            return self.notice(
                request,
                visitor,
                404,
                t.gettext("Niet gevonden"),
                t.gettext("Dit bericht is er niet, of het is niet van u."),
            )
        mid = view.message.id
        document = await self._document(mid, viewer)
        if reveal:
            await self.deps.broker.audit_event(
                AuditEvent(
                    action="portal_bsn_shown",
                    object=mid,
                    referentienummer=view.message.referentienummer,
                    zender=view.message.zender,
                    ontvanger=view.message.ontvanger,
                    functie=view.message.functie or "",
                    actor=f"portal {self.identity(request, visitor).name}",
                    origin=request.remote or "",
                    outcome=f"{len(document.bsns())} BSN(s) shown",
                    bsns=tuple(document.bsns()),
                )
            )
        return self.render(
            request,
            "message_view.html",
            visitor=visitor,
            message=view.to_dict(),
            document=document,
            reveal=reveal,
        )

    async def _document(self, message_id: str, viewer: str | None) -> Document:
        """The message's payload as a document, or a note why it cannot be shown."""
        try:
            data = await self.deps.broker.message_envelope(message_id, viewer)
        except StorageError:
            data = None
        if data is None:  # retention dropped the payload; the metadata stays
            return Document(note=N_("De inhoud van dit bericht is niet meer bewaard."))
        return await asyncio.to_thread(read_envelope, data, self.deps.contents)

    async def overdue(self, request: web.Request) -> web.StreamResponse:
        visitor = self.visitor(request)
        if visitor is None:
            return self.denied(request, visitor)
        before = time.time() - self.deps.overdue_days * 86400
        items = await self.deps.broker.overdue(before, 10_000)
        if visitor.partner is not None:  # a partner: the heenberichten it sent
            items = [i for i in items if i.zender == visitor.partner.id]
        return self.render(
            request,
            "overdue.html",
            visitor=visitor,
            items=items[:PAGE],
            days=self.deps.overdue_days,
        )

    async def figures(self, request: web.Request) -> web.StreamResponse:
        visitor = self.visitor(request)
        if visitor is None:
            return self.denied(request, visitor)
        if visitor.partner is not None and visitor.partner.kind is not PartnerKind.GEMEENTE:
            return self.denied(request, visitor)
        gemeente = (
            visitor.partner.id if visitor.partner else (request.query.get("gemeente") or None)
        )
        first, last = request.query.get("from") or None, request.query.get("to") or None
        if any(m is not None and not stats.MONTH.fullmatch(m) for m in (first, last)):
            first = last = None
        gemeenten = sorted(
            (p for p in self.deps.partners.all() if p.kind is PartnerKind.GEMEENTE),
            key=lambda p: p.id,
        )
        if gemeente is None:
            # the operator picks one gemeente: every gemeente at once is the batch report
            # (`ggk stats`, seconds for a national year), not a page
            return self.render(
                request,
                "figures.html",
                visitor=visitor,
                figures=None,
                charts=[],
                gemeente="",
                first=first or "",
                last=last or "",
                gemeenten=gemeenten,
            )
        raw = await self.deps.broker.figures(stats.Scope(gemeente, first, last))
        published = stats.publish(raw, self.deps.min_cell)
        t = self.language(request)
        charts = [
            (g, bar_chart(t.gettext("Toewijzingen per maand, gemeente %(g)s") % {"g": g}, points))
            for g, points in _toewijzingen_per_month(published)
        ]
        return self.render(
            request,
            "figures.html",
            visitor=visitor,
            figures=published,
            table=list(stats.cells_and_totals(published)),
            charts=charts,
            gemeente=gemeente,
            first=first or "",
            last=last or "",
            gemeenten=gemeenten,
        )

    # --- operator pages --------------------------------------------------------------------


def _toewijzingen_per_month(
    published: dict[str, Any],
) -> list[tuple[str, list[tuple[str, stats.Value]]]]:
    by_gemeente: dict[str, list[tuple[str, stats.Value]]] = {}
    for total in published["totals"]:
        by_gemeente.setdefault(total["gemeente"], []).append(
            (total["month"], total["toewijzingen"])
        )
    return sorted(by_gemeente.items())
