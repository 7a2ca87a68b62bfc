"""A partner's own pages: its inbox, what it sent (and what was refused), uploads."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

from aiohttp import web

from gateway.broker.base import ArchiveQuery
from gateway.portal.explain import MESSAGE_TYPES
from gateway.portal.pages import (
    MESSAGE_ID,
    PAGE,
    UPLOAD_ALLOWANCE,
    Pages,
    PortalDeps,
    Templates,
    Visitor,
    day,
)

ARCHIVE_PAGE = 50
"""Rows on an archive page (keyset paged: the next page starts after the last row)."""

UPLOAD_WAIT = 15.0
"""Seconds an upload waits for a free slot (first come, first served; one per partner, so
the line is fair) before it is refused (503): a browser waits a moment rather than failing
at once when other partners' uploads hold every slot (``[limits] portal_upload_slots``)."""


def archive_filters(query: Mapping[str, str]) -> dict[str, str]:
    """The archive's filters from the query string, each kept only when it is well formed
    (a date, a known message type, a known status, a row number); anything else is ignored,
    so a hand-made address shows the unfiltered list rather than an error."""
    asked = {name: (query.get(name) or "").strip()[:40] for name in ARCHIVE_FILTERS}
    for name in ("van", "tot"):
        if day(asked[name]) is None:
            asked[name] = ""
    if asked["bericht"] not in MESSAGE_TYPES:
        asked["bericht"] = ""
    if asked["stand"] not in ("inbox", "delivered"):
        asked["stand"] = ""
    if not (asked["voor"].isdigit() and len(asked["voor"]) <= 18):
        asked["voor"] = ""
    return asked


ARCHIVE_FILTERS = ("van", "tot", "bericht", "stand", "voor")


class PartnerPages(Pages):
    def __init__(self, deps: PortalDeps, environment: Templates) -> None:
        super().__init__(deps, environment)
        self.uploads = asyncio.Semaphore(deps.upload_slots)
        """Uploads read at once (each up to max_message_bytes, within the body budget): the
        portal is for partners without software, bulk belongs on the API."""
        self.uploading: set[str] = set()
        """The partners with an upload in flight (at most one each)."""

    async def inbox(self, request: web.Request) -> web.StreamResponse:
        visitor = self.visitor(request)
        if visitor is None or visitor.partner is None:
            return self.denied(request, visitor)
        items = await self.deps.broker.inbox(visitor.partner.id, PAGE)
        return self.render(request, "inbox.html", visitor=visitor, items=items)

    async def download(self, request: web.Request) -> web.StreamResponse:
        visitor = self.visitor(request)
        if visitor is None or visitor.partner is None:
            return self.denied(request, visitor)
        message_id = request.match_info["id"]
        data = (
            await self.deps.broker.inbox_envelope(visitor.partner.id, message_id)
            if MESSAGE_ID.fullmatch(message_id)
            else None
        )
        if data is None:
            t = self.language(request)
            return self.notice(
                request,
                visitor,
                404,
                t.gettext("Niet gevonden"),
                t.gettext("Dit bericht staat niet in uw postvak in."),
            )
        return web.Response(
            body=data,
            content_type="application/xml",
            charset="utf-8",
            # the id was checked to be 32 hex digits: the file name holds nothing else
            headers={"Content-Disposition": f'attachment; filename="{message_id}.xml"'},
        )

    def not_waiting(self, request: web.Request, visitor: Visitor) -> web.Response:
        t = self.language(request)
        return self.notice(
            request,
            visitor,
            404,
            t.gettext("Niet gevonden"),
            t.gettext("Dit bericht wacht niet in uw postvak in."),
        )

    async def acknowledge_page(self, request: web.Request) -> web.StreamResponse:
        """Ask before a message leaves the inbox: it cannot be downloaded there afterwards."""
        visitor = self.visitor(request)
        if visitor is None or visitor.partner is None:
            return self.denied(request, visitor)
        message_id = request.match_info["id"]
        waiting = MESSAGE_ID.fullmatch(message_id) and any(
            item.id == message_id for item in await self.deps.broker.inbox(visitor.partner.id, PAGE)
        )
        view = await self.deps.broker.view(message_id, visitor.partner.id) if waiting else None
        if view is None:
            return self.not_waiting(request, visitor)
        return self.render(request, "acknowledge.html", visitor=visitor, message=view.to_dict())

    async def acknowledge(self, request: web.Request) -> web.StreamResponse:
        """Take a message out of the inbox, once the clerk confirmed it on its page."""
        visitor = self.visitor(request)
        if visitor is None or visitor.partner is None:
            return self.denied(request, visitor)
        data = await self.form(request, visitor)
        if isinstance(data, web.Response):
            return data
        message_id = request.match_info["id"]
        if data.get("confirm") != "yes":
            t = self.language(request)
            return self.notice(
                request,
                visitor,
                400,
                t.gettext("Niet afgehandeld"),
                t.gettext("Bevestig het afhandelen op de pagina van het bericht."),
            )
        done = MESSAGE_ID.fullmatch(message_id) and await self.deps.broker.ack(
            visitor.partner.id, message_id
        )
        if not done:
            return self.not_waiting(request, visitor)
        raise web.HTTPSeeOther("/portal/inbox")

    async def archive(self, request: web.Request) -> web.StreamResponse:
        """Every message the partner received, waiting or acknowledged, newest first:
        acknowledged messages stay findable here (and readable on their page). Filters:
        period (received from/to, dates), message type, status; keyset paging (``voor``:
        the previous page's last row), so a deep page costs what a first page costs."""
        visitor = self.visitor(request)
        if visitor is None or visitor.partner is None:
            return self.denied(request, visitor)
        asked = archive_filters(request.query)
        last_day = day(asked["tot"])
        query = ArchiveQuery(
            since=day(asked["van"]),
            until=None if last_day is None else last_day + 86400,  # through that day
            functie=asked["bericht"] or None,
            status=asked["stand"] or None,
            before=int(asked["voor"]) if asked["voor"] else None,
        )
        rows = await self.deps.broker.received(visitor.partner.id, query, ARCHIVE_PAGE + 1)
        later = rows[ARCHIVE_PAGE - 1].cursor if len(rows) > ARCHIVE_PAGE else None
        return self.render(
            request,
            "archive.html",
            visitor=visitor,
            items=rows[:ARCHIVE_PAGE],
            asked=asked,
            types=sorted(MESSAGE_TYPES),
            more=None if later is None else {**asked, "voor": str(later)},
        )

    async def sent(self, request: web.Request) -> web.StreamResponse:
        visitor = self.visitor(request)
        if visitor is None or visitor.partner is None:
            return self.denied(request, visitor)
        items = await self.deps.broker.sent(visitor.partner.id, PAGE)
        refused = await self.deps.broker.refusals(visitor.partner.id, PAGE)
        return self.render(request, "sent.html", visitor=visitor, items=items, refused=refused)

    def upload_refused(
        self, request: web.Request, visitor: Visitor, status: int, error: str
    ) -> web.Response:
        """The upload page again, saying why nothing was checked or sent."""
        return self.render(
            request, "upload.html", status, visitor=visitor, report=None, outcome=None, error=error
        )

    async def upload_page(self, request: web.Request) -> web.StreamResponse:
        visitor = self.visitor(request)
        if visitor is None or visitor.partner is None:
            return self.denied(request, visitor)
        return self.render(request, "upload.html", visitor=visitor, report=None, outcome=None)

    async def upload(self, request: web.Request) -> web.StreamResponse:
        """Check (and send) an uploaded message. Slots are shared fairly: a partner has at
        most one upload in flight (waiting or read), so one partner (or one stuck browser)
        never holds more than one slot; its body arrives within ``body_timeout`` and at the
        minimum rate or is cut (408). When other partners' uploads hold every slot, it waits
        in line for UPLOAD_WAIT seconds (its body unread), then 503."""
        visitor = self.visitor(request)
        if visitor is None or visitor.partner is None:
            return self.denied(request, visitor)
        partner = visitor.partner.id
        t = self.language(request)
        if partner in self.uploading:
            refused = self.upload_refused(
                request,
                visitor,
                429,
                t.gettext(
                    "Uw vorige bestand wordt nog gecontroleerd; wacht daarop en probeer het "
                    "dan opnieuw."
                ),
            )
            refused.force_close()
            return refused
        self.uploading.add(partner)
        try:
            if not await self._slot():
                refused = self.upload_refused(
                    request,
                    visitor,
                    503,
                    t.gettext("De gateway controleert andere bestanden; probeer het zo opnieuw."),
                )
                refused.force_close()
                return refused
            try:
                return await self._upload(request, visitor)
            finally:
                self.uploads.release()
        finally:
            self.uploading.discard(partner)

    async def _slot(self) -> bool:
        """Wait up to UPLOAD_WAIT for an upload slot; True when this request holds one (the
        caller releases it). A slot granted as the wait ends is kept, never lost."""
        acquiring = asyncio.ensure_future(self.uploads.acquire())
        try:
            done, _ = await asyncio.wait((acquiring,), timeout=UPLOAD_WAIT)
        except BaseException:  # the handler was cancelled: give back a slot granted meanwhile
            acquiring.add_done_callback(
                lambda task: None if task.cancelled() else self.uploads.release()
            )
            acquiring.cancel()
            raise
        if not done:
            acquiring.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await acquiring
        return not acquiring.cancelled()

    async def _upload(self, request: web.Request, visitor: Visitor) -> web.StreamResponse:
        assert visitor.partner is not None
        limit = self.deps.max_upload + UPLOAD_ALLOWANCE

        def refused(status: int, reason: str) -> web.Response:
            return self.upload_refused(request, visitor, status, reason)

        async with self.posted(request, visitor, limit, refused) as data:
            if isinstance(data, web.Response):
                return data
            field = data.get("file")
            t = self.language(request)
            if not isinstance(field, web.FileField):
                return self.upload_refused(
                    request, visitor, 400, t.gettext("Kies een berichtbestand.")
                )
            payload = field.file.read(self.deps.max_upload + 1)
            field.file.close()
            if len(payload) > self.deps.max_upload:
                return self.upload_refused(
                    request,
                    visitor,
                    413,
                    t.gettext("Het bestand is groter dan %(bytes)s bytes.")
                    % {"bytes": t.number(self.deps.max_upload)},
                )
            result = await self.deps.validate(payload)
            outcome = None
            if data.get("action") == "send" and result.report.valid:
                outcome = await self.deps.submit(
                    self.identity(request, visitor), visitor.partner, payload, result
                )
            return self.render(
                request,
                "upload.html",
                visitor=visitor,
                filename=field.filename,
                report=result.report,
                outcome=outcome,
            )
