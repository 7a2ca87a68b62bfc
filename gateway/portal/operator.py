"""The operator's pages: queues and partner health, dead letters and replay, the audit
trail."""

from __future__ import annotations

import time

import structlog
from aiohttp import web

from gateway.audit import AuditEvent
from gateway.portal.pages import MESSAGE_ID, PAGE, Pages, day

log = structlog.get_logger("ggk.portal")


class OperatorPages(Pages):
    async def queues(self, request: web.Request) -> web.StreamResponse:
        visitor = self.visitor(request)
        if visitor is None or not visitor.admin:
            return self.denied(request, visitor)
        now = time.time()
        snapshot = await self.deps.broker.ops_snapshot(now - self.deps.overdue_days * 86400)
        queues = {q.destination: q for q in snapshot.queues}
        partners = list(self.deps.partners.all())
        health = await self.deps.broker.delivery_health([p.id for p in partners])
        rows = []
        for p in partners:
            queue = queues.get(p.id)
            seen = self.deps.certificate(p.id)
            rows.append(
                {
                    "partner": p,
                    "waiting": queue.waiting if queue else 0,
                    "oldest": queue.oldest_received_at if queue else None,
                    "dead": queue.dead if queue else 0,
                    "certificate_expires": seen.not_after if seen else None,
                    "certificate_days": (seen.not_after - now) / 86400 if seen else None,
                    **health[p.id].to_dict(),
                }
            )
        return self.render(
            request, "queues.html", visitor=visitor, rows=rows, snapshot=snapshot, now=now
        )

    async def dead_letters(self, request: web.Request) -> web.StreamResponse:
        visitor = self.visitor(request)
        if visitor is None or not visitor.admin:
            return self.denied(request, visitor)
        items = await self.deps.broker.dead_letters(None, PAGE)
        return self.render(request, "dead_letters.html", visitor=visitor, items=items)

    async def replay_page(self, request: web.Request) -> web.StreamResponse:
        visitor = self.visitor(request)
        if visitor is None or not visitor.admin:
            return self.denied(request, visitor)
        message_id = request.match_info["id"]
        view = await self.deps.broker.view(message_id) if MESSAGE_ID.fullmatch(message_id) else None
        if view is None:
            t = self.language(request)
            return self.notice(
                request,
                visitor,
                404,
                t.gettext("Niet gevonden"),
                t.gettext("Dit bericht bestaat niet."),
            )
        return self.render(request, "replay.html", visitor=visitor, message=view.to_dict())

    async def replay(self, request: web.Request) -> web.StreamResponse:
        visitor = self.visitor(request)
        if visitor is None or not visitor.admin:
            return self.denied(request, visitor)
        data = await self.form(request, visitor)
        if isinstance(data, web.Response):
            return data
        message_id = request.match_info["id"]
        t = self.language(request)
        if not MESSAGE_ID.fullmatch(message_id) or data.get("confirm") != "yes":
            return self.notice(
                request,
                visitor,
                400,
                t.gettext("Niet opnieuw aangeboden"),
                t.gettext("Bevestig het opnieuw aanbieden op de pagina van het bericht."),
            )
        count = await self.deps.broker.replay(
            message_id=message_id, dead_only=True, actor=f"portal operator@{request.remote}"
        )
        log.info("portal.replay", message_id=message_id, count=count, peer=request.remote)
        return self.notice(
            request,
            visitor,
            200,
            t.gettext("Opnieuw aangeboden"),
            t.ngettext(
                "%(n)s onbestelbare aflevering van %(id)s is opnieuw ingepland.",
                "%(n)s onbestelbare afleveringen van %(id)s zijn opnieuw ingepland.",
                count,
            )
            % {"n": count, "id": message_id},
        )

    async def audit_page(self, request: web.Request) -> web.StreamResponse:
        visitor = self.visitor(request)
        if visitor is None or not visitor.admin:
            return self.denied(request, visitor)
        return self.render(request, "audit.html", visitor=visitor, rows=None, asked={})

    async def audit_search(self, request: web.Request) -> web.StreamResponse:
        """Search the audit trail. A POST, so a BSN never lands in a URL (browser history,
        proxies); the search itself is recorded, the BSN sealed in the record."""
        visitor = self.visitor(request)
        if visitor is None or not visitor.admin:
            return self.denied(request, visitor)
        data = await self.form(request, visitor)
        if isinstance(data, web.Response):
            return data
        asked = {
            name: value.strip()[:100]
            for name in ("message", "bsn", "partner", "since")
            if isinstance(value := data.get(name), str) and value.strip()
        }
        since = day(asked.get("since"))
        t = self.language(request)
        problem = (
            t.gettext("Geef ten minste één zoekgegeven.")
            if not asked
            else t.gettext("Vanaf is een datum: JJJJ-MM-DD.")
            if "since" in asked and since is None
            else t.gettext("Een BSN bestaat uit negen cijfers.")
            if "bsn" in asked and not asked["bsn"].isdigit()
            else None
        )
        if problem is not None:
            asked.pop("bsn", None)  # never echoed into the page
            return self.render(
                request, "audit.html", 400, visitor=visitor, rows=None, asked=asked, error=problem
            )
        rows = await self.deps.broker.audit_search(
            message=asked.get("message"),
            bsn=asked.get("bsn"),
            partner=asked.get("partner"),
            since=since,
            limit=PAGE,
        )
        await self.deps.broker.audit_event(
            AuditEvent(
                action="audit_searched",
                actor=f"portal operator@{request.remote}",
                origin=request.remote or "",
                outcome=f"{len(rows)} record(s); by "
                + ", ".join(sorted(asked)),  # the names of the criteria, not their values
                object=asked.get("message", ""),
                bsns=(asked["bsn"],) if "bsn" in asked else (),
            )
        )
        asked.pop("bsn", None)  # not echoed into the page
        return self.render(request, "audit.html", visitor=visitor, rows=rows, asked=asked)
