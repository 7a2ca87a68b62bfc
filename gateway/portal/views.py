"""The portal's pages: a web face for partners without their own software, and operators.

Server-rendered HTML (Jinja2, autoescaped: every partner-supplied text is escaped), no
JavaScript at all, a Content Security Policy that allows none, and the same identities as
the API: a partner signs in with its client certificate or its token, the operator with the
admin token. Every page asks the same broker the REST API asks, with the same permission
checks (a partner sees its own inbox and messages; operator pages need the operator).
"""

from __future__ import annotations

import asyncio
import calendar
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import jinja2
import structlog
from aiohttp import web

from gateway import stats
from gateway.audit import AuditEvent
from gateway.broker.base import Broker
from gateway.ingest import Identity
from gateway.portal.charts import bar_chart
from gateway.portal.session import (
    PRESESSION_COOKIE,
    SESSION_COOKIE,
    SESSION_SECONDS,
    Session,
    SessionKeys,
    SignInLimiter,
)
from gateway.sightings import Sighting
from routing.partners import Partner, PartnerKind, PartnerRegistry

log = structlog.get_logger("ggk.portal")

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
_MESSAGE_ID = re.compile(r"[0-9a-f]{32}")
PAGE = 200
"""Rows on a listing page."""
SIGNIN_FORM_BYTES = 4096
UPLOADS_AT_ONCE = 2
"""Portal uploads read at once (each up to max_message_bytes): the portal is for partners
without software, bulk belongs on the API, whose body budget bounds it."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class PortalDeps:
    """What the portal needs of the gateway, handed in (the portal does not import the
    server): the broker, partners, the API's caller identification and raw submission."""

    broker: Broker
    partners: PartnerRegistry
    keys: SessionKeys
    identify: Callable[[web.Request], Identity]
    """Who the connection is (its client certificate), as the API sees it."""
    by_token: Callable[[str, str], Identity]
    """Who a token proves (token, peer), exactly as the API checks a bearer token."""
    validate: Callable[[bytes], Awaitable[Any]]
    submit: Callable[[Identity, Partner, bytes], Awaitable[Any]]
    certificate: Callable[[str], Sighting | None]
    """The certificate a partner last presented (its expiry), if it did."""
    overdue_days: float
    min_cell: int
    max_upload: int


@dataclass(frozen=True, slots=True)
class Visitor:
    """A signed-in browser: its session and, for a partner, the partner."""

    session: Session
    partner: Partner | None

    @property
    def admin(self) -> bool:
        return self.session.admin

    @property
    def name(self) -> str:
        return self.partner.id if self.partner else "operator"


class Portal:
    def __init__(self, deps: PortalDeps) -> None:
        self.deps = deps
        self.limiter = SignInLimiter()
        self.uploads = asyncio.Semaphore(UPLOADS_AT_ONCE)
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("gateway.portal", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.templates.filters["when"] = _when
        self.templates.filters["euro"] = _euro

    # --- plumbing --------------------------------------------------------------------------

    def render(
        self, request: web.Request, name: str, status: int = 200, **context: Any
    ) -> web.Response:
        visitor: Visitor | None = context.pop("visitor", None)
        html = self.templates.get_template(name).render(
            visitor=visitor,
            csrf=self.deps.keys.csrf(visitor.session.nonce) if visitor else "",
            path=request.path,
            **context,
        )
        return web.Response(text=html, status=status, content_type="text/html")

    def visitor(self, request: web.Request) -> Visitor | None:
        """The signed-in visitor, or None. A session proven by a certificate holds only on a
        connection that still presents that partner's certificate."""
        session = self.deps.keys.read(request.cookies.get(SESSION_COOKIE), time.time())
        if session is None:
            return None
        partner = self.deps.partners.get(session.partner) if session.partner else None
        if session.partner and partner is None:
            return None  # the partner was removed since
        if session.via == "certificate":
            presented = self.deps.identify(request)
            if presented.partner is None or presented.partner.id != session.partner:
                return None
        return Visitor(session, partner)

    def denied(self, request: web.Request, visitor: Visitor | None) -> web.StreamResponse:
        if visitor is None:
            raise web.HTTPSeeOther("/portal/signin")
        return self.notice(
            request, visitor, 403, "Not for you", "This page is not available with your sign-in."
        )

    async def form(self, request: web.Request, visitor: Visitor) -> dict[str, Any] | None:
        """The posted form when its CSRF token is the session's and it comes from this
        site; None otherwise."""
        if not _same_origin(request):
            return None
        data = dict(await request.post())
        token = data.get("csrf")
        if not self.deps.keys.csrf_ok(
            visitor.session.nonce, token if isinstance(token, str) else None
        ):
            return None
        return data

    def notice(
        self, request: web.Request, visitor: Visitor | None, status: int, title: str, text: str
    ) -> web.Response:
        """A page that only says something (not found, refused, done)."""
        return self.render(request, "message.html", status, visitor=visitor, title=title, text=text)

    def refused_form(self, request: web.Request, visitor: Visitor) -> web.Response:
        return self.notice(
            request,
            visitor,
            403,
            "Form refused",
            "The form was not sent from this portal or has expired. Open the page again.",
        )

    def identity(self, request: web.Request, visitor: Visitor) -> Identity:
        return Identity(
            visitor.partner,
            admin=visitor.admin,
            peer=request.remote or "",
            via=f"portal-{visitor.session.via}",
        )

    # --- signing in and out ----------------------------------------------------------------

    async def home(self, request: web.Request) -> web.StreamResponse:
        visitor = self.visitor(request)
        if visitor is None:
            raise web.HTTPSeeOther("/portal/signin")
        if visitor.admin:
            raise web.HTTPSeeOther("/portal/queues")
        raise web.HTTPSeeOther("/portal/inbox")

    async def signin_page(
        self, request: web.Request, status: int = 200, error: str = ""
    ) -> web.Response:
        if request.scheme != "https":  # its cookies are Secure: a browser would drop them
            return self.notice(
                request,
                None,
                503,
                "The portal needs HTTPS",
                "This gateway serves plain HTTP (a development setting); the portal's "
                "sign-in works over HTTPS only.",
            )
        # a fresh pre-session nonce for every form: the double-submit CSRF of the sign-in
        nonce = secrets.token_urlsafe(18)
        presented = self.deps.identify(request).partner
        response = self.render(
            request,
            "signin.html",
            status,
            signin_csrf=self.deps.keys.csrf(nonce),
            certificate=presented.name if presented else None,
            error=error,
        )
        response.set_cookie(
            PRESESSION_COOKIE,
            nonce,
            secure=True,
            httponly=True,
            samesite="Strict",
            path="/",
            max_age=600,
        )
        return response

    async def signin(self, request: web.Request) -> web.StreamResponse:
        peer = request.remote or ""
        now = time.time()
        if self.limiter.blocked(peer, now):
            log.warning("portal.signin_limited", peer=peer)
            return await self.signin_page(
                request, 429, "Too many failed sign-ins. Wait a few minutes."
            )
        if not _same_origin(request):
            return await self.signin_page(request, 403, "The form was not sent from this portal.")
        if request.content_length is None or request.content_length > SIGNIN_FORM_BYTES:
            # the only form read before anyone is known: a few hundred bytes, or not at all
            response = await self.signin_page(request, 413, "The sign-in form is too large.")
            response.force_close()
            return response
        data = await request.post()
        token = data.get("csrf")
        if not self.deps.keys.csrf_ok(
            request.cookies.get(PRESESSION_COOKIE), token if isinstance(token, str) else None
        ):
            return await self.signin_page(request, 403, "The form has expired. Try again.")
        method = data.get("method")
        presented = self.deps.identify(request)
        partner: str | None
        if method == "certificate" and presented.partner is not None:
            partner, admin, via = presented.partner.id, False, "certificate"
        else:
            secret = data.get("token")
            proven = (
                self.deps.by_token(secret, peer)
                if isinstance(secret, str) and 0 < len(secret) <= 200
                else Identity(None)
            )
            # a connection that presents one partner's certificate cannot sign in as another
            crossed = (
                presented.partner is not None
                and proven.partner is not None
                and proven.partner.id != presented.partner.id
            )
            if (proven.partner is None and not proven.admin) or crossed:
                self.limiter.failed(peer, now)
                log.info("portal.signin_failed", peer=peer)
                return await self.signin_page(request, 401, "Sign-in failed.")
            partner = proven.partner.id if proven.partner else None
            admin, via = proven.admin, "token"
        _, cookie = self.deps.keys.mint(partner, admin, via, now)
        log.info("portal.signed_in", who=partner or "operator", via=via, peer=peer)
        response = web.HTTPSeeOther("/portal/")
        response.set_cookie(
            SESSION_COOKIE,
            cookie,
            secure=True,
            httponly=True,
            samesite="Strict",
            path="/",
            max_age=SESSION_SECONDS,
        )
        response.del_cookie(PRESESSION_COOKIE, path="/")
        raise response

    async def signout(self, request: web.Request) -> web.StreamResponse:
        visitor = self.visitor(request)
        if visitor is not None and await self.form(request, visitor) is None:
            return self.refused_form(request, visitor)
        response = web.HTTPSeeOther("/portal/signin")
        response.del_cookie(SESSION_COOKIE, path="/")
        raise response

    # --- partner pages ---------------------------------------------------------------------

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
            if _MESSAGE_ID.fullmatch(message_id)
            else None
        )
        if data is None:
            return self.notice(
                request, visitor, 404, "Not found", "There is no such message in your inbox."
            )
        return web.Response(
            body=data,
            content_type="application/xml",
            charset="utf-8",
            # the id was checked to be 32 hex digits: the file name holds nothing else
            headers={"Content-Disposition": f'attachment; filename="{message_id}.xml"'},
        )

    async def acknowledge(self, request: web.Request) -> web.StreamResponse:
        visitor = self.visitor(request)
        if visitor is None or visitor.partner is None:
            return self.denied(request, visitor)
        if await self.form(request, visitor) is None:
            return self.refused_form(request, visitor)
        message_id = request.match_info["id"]
        done = _MESSAGE_ID.fullmatch(message_id) and await self.deps.broker.ack(
            visitor.partner.id, message_id
        )
        if not done:
            return self.notice(
                request,
                visitor,
                404,
                "Not found",
                "There is no such message waiting in your inbox.",
            )
        raise web.HTTPSeeOther("/portal/inbox")

    async def sent(self, request: web.Request) -> web.StreamResponse:
        visitor = self.visitor(request)
        if visitor is None or visitor.partner is None:
            return self.denied(request, visitor)
        items = await self.deps.broker.sent(visitor.partner.id, PAGE)
        refused = await self.deps.broker.refusals(visitor.partner.id, PAGE)
        return self.render(request, "sent.html", visitor=visitor, items=items, refused=refused)

    async def message(self, request: web.Request) -> web.StreamResponse:
        """One message with its deliveries, history and conversation (heen and retours), as
        ``GET /api/v1/messages/{id}`` shows it to the same identity."""
        visitor = self.visitor(request)
        if visitor is None:
            return self.denied(request, visitor)
        message_id = request.match_info["id"]
        viewer = None if visitor.admin else visitor.partner.id if visitor.partner else ""
        view = (
            await self.deps.broker.view(message_id, viewer)
            if _MESSAGE_ID.fullmatch(message_id)
            else None
        )
        if view is None:
            return self.notice(
                request, visitor, 404, "Not found", "There is no such message among yours."
            )
        return self.render(request, "message_view.html", visitor=visitor, message=view.to_dict())

    async def overdue(self, request: web.Request) -> web.StreamResponse:
        visitor = self.visitor(request)
        if visitor is None:
            return self.denied(request, visitor)
        before = time.time() - self.deps.overdue_days * 86400
        items = await self.deps.broker.overdue(before, 10_000)
        if visitor.partner is not None:  # a partner: the heenberichten it sent
            items = [i for i in items if i["zender"] == visitor.partner.id]
        return self.render(
            request,
            "overdue.html",
            visitor=visitor,
            items=items[:PAGE],
            days=self.deps.overdue_days,
        )

    async def upload_page(self, request: web.Request) -> web.StreamResponse:
        visitor = self.visitor(request)
        if visitor is None or visitor.partner is None:
            return self.denied(request, visitor)
        return self.render(request, "upload.html", visitor=visitor, report=None, outcome=None)

    async def upload(self, request: web.Request) -> web.StreamResponse:
        visitor = self.visitor(request)
        if visitor is None or visitor.partner is None:
            return self.denied(request, visitor)
        if self.uploads.locked():
            return self.render(
                request,
                "upload.html",
                503,
                visitor=visitor,
                report=None,
                outcome=None,
                error="The gateway is checking other uploads; try again in a moment.",
            )
        async with self.uploads:
            return await self._upload(request, visitor)

    async def _upload(self, request: web.Request, visitor: Visitor) -> web.StreamResponse:
        assert visitor.partner is not None
        data = await self.form(request, visitor)
        if data is None:
            return self.refused_form(request, visitor)
        field = data.get("file")
        if not isinstance(field, web.FileField):
            return self.render(
                request,
                "upload.html",
                400,
                visitor=visitor,
                report=None,
                outcome=None,
                error="Choose a message file.",
            )
        payload = field.file.read(self.deps.max_upload + 1)
        if len(payload) > self.deps.max_upload:
            return self.render(
                request,
                "upload.html",
                413,
                visitor=visitor,
                report=None,
                outcome=None,
                error=f"The file is larger than {self.deps.max_upload:,} bytes.",
            )
        result = await self.deps.validate(payload)
        outcome = None
        if data.get("action") == "send" and result.report.valid:
            outcome = await self.deps.submit(
                self.identity(request, visitor), visitor.partner, payload
            )
        return self.render(
            request,
            "upload.html",
            visitor=visitor,
            filename=field.filename,
            report=result.report,
            outcome=outcome,
        )

    # --- figures (gemeenten and the operator) -----------------------------------------------

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
        charts = [
            (g, bar_chart(f"Toewijzingen per month, gemeente {g}", points))
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

    async def queues(self, request: web.Request) -> web.StreamResponse:
        visitor = self.visitor(request)
        if visitor is None or not visitor.admin:
            return self.denied(request, visitor)
        now = time.time()
        snapshot = await self.deps.broker.ops_snapshot(now - self.deps.overdue_days * 86400)
        queues = {q.destination: q for q in snapshot.queues}
        rows = []
        for p in self.deps.partners.all():
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
                    **await self.deps.broker.delivery_health(p.id),
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
        view = (
            await self.deps.broker.view(message_id) if _MESSAGE_ID.fullmatch(message_id) else None
        )
        if view is None:
            return self.notice(request, visitor, 404, "Not found", "There is no such message.")
        return self.render(request, "replay.html", visitor=visitor, message=view.to_dict())

    async def replay(self, request: web.Request) -> web.StreamResponse:
        visitor = self.visitor(request)
        if visitor is None or not visitor.admin:
            return self.denied(request, visitor)
        data = await self.form(request, visitor)
        if data is None:
            return self.refused_form(request, visitor)
        message_id = request.match_info["id"]
        if not _MESSAGE_ID.fullmatch(message_id) or data.get("confirm") != "yes":
            return self.notice(
                request, visitor, 400, "Not replayed", "Confirm the replay on its page."
            )
        count = await self.deps.broker.replay(
            message_id=message_id, dead_only=True, actor=f"portal operator@{request.remote}"
        )
        log.info("portal.replay", message_id=message_id, count=count, peer=request.remote)
        return self.notice(
            request,
            visitor,
            200,
            "Replayed",
            f"{count} dead-lettered delivery(ies) of {message_id} scheduled again.",
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
        if data is None:
            return self.refused_form(request, visitor)
        asked = {
            name: value.strip()[:100]
            for name in ("message", "bsn", "partner", "since")
            if isinstance(value := data.get(name), str) and value.strip()
        }
        since = _day(asked.get("since"))
        problem = (
            "Give at least one criterion."
            if not asked
            else "Since is a date, YYYY-MM-DD."
            if "since" in asked and since is None
            else "A BSN is nine digits."
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


def routes(portal: Portal) -> list[web.RouteDef]:
    return [
        web.get("/", portal.home),
        web.get("/signin", portal.signin_page),
        web.post("/signin", portal.signin),
        web.post("/signout", portal.signout),
        web.get("/inbox", portal.inbox),
        web.get("/inbox/{id}", portal.download),
        web.post("/inbox/{id}/ack", portal.acknowledge),
        web.get("/sent", portal.sent),
        web.get("/messages/{id}", portal.message),
        web.get("/overdue", portal.overdue),
        web.get("/upload", portal.upload_page),
        web.post("/upload", portal.upload),
        web.get("/figures", portal.figures),
        web.get("/queues", portal.queues),
        web.get("/dead-letters", portal.dead_letters),
        web.get("/replay/{id}", portal.replay_page),
        web.post("/replay/{id}", portal.replay),
        web.get("/audit", portal.audit_page),
        web.post("/audit", portal.audit_search),
    ]


@web.middleware
async def hardened(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every portal answer: no scripts, no framing, no caching, no sniffing, no referrer
    to other sites."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
        _harden(response)
        raise
    _harden(response)
    return response


def _harden(response: web.StreamResponse) -> None:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    # same-origin, not no-referrer: with no-referrer a browser sends "Origin: null" on
    # its own POSTs, and the Origin check (below) needs the real one
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"


def _same_origin(request: web.Request) -> bool:
    """A browser's POST names its origin; one from another site is refused (a request
    without Origin, from a non-browser client, still needs the CSRF token)."""
    origin = request.headers.get("Origin")
    return origin is None or origin == f"{request.scheme}://{request.host}"


def _when(value: object) -> str:
    if not isinstance(value, int | float):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(value)) + " UTC"


def _day(text: str | None) -> float | None:
    """Midnight UTC of a YYYY-MM-DD date, as epoch seconds; None when it is not one."""
    if not text:
        return None
    try:
        return calendar.timegm(time.strptime(text, "%Y-%m-%d"))
    except ValueError:
        return None


def _euro(value: object) -> str:
    return f"€ {value / 100:,.2f}" if isinstance(value, int) else str(value)


def _toewijzingen_per_month(
    published: dict[str, Any],
) -> list[tuple[str, list[tuple[str, stats.Value]]]]:
    by_gemeente: dict[str, list[tuple[str, stats.Value]]] = {}
    for total in published["totals"]:
        by_gemeente.setdefault(total["gemeente"], []).append(
            (total["month"], total["toewijzingen"])
        )
    return sorted(by_gemeente.items())
