"""What every portal page stands on: who the visitor is, rendering, forms, the headers.

Server-rendered HTML (Jinja2, autoescaped: every partner-supplied text is escaped), no
JavaScript at all, a Content Security Policy that allows none, and the same identities as
the API: a partner signs in with its client certificate or its token, the operator with the
admin token. Every page asks the same broker the REST API asks, with the same permission
checks (a partner sees its own inbox and messages; operator pages need the operator).
"""

from __future__ import annotations

import calendar
import contextlib
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware

from gateway import disclosure
from gateway.admission import Admission, Refusal, admitted_form
from gateway.broker.base import Broker
from gateway.ingest import Identity
from gateway.portal import explain, i18n
from gateway.portal.contents import Reader
from gateway.portal.session import SESSION_COOKIE, Session, SessionKeys
from gateway.ratelimit import retry_after
from gateway.sightings import Sighting
from routing.partners import Partner, PartnerRegistry

log = structlog.get_logger("ggk.portal")

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
MESSAGE_ID = re.compile(r"[0-9a-f]{32}")
"""A message id as the gateway makes them (matched whole): nothing else reaches the store."""
PAGE = 200
"""Rows on a listing page."""
FORM_BYTES = 16 * 1024
"""A form of the portal (sign-out, acknowledge, replay, audit search): a few hundred bytes."""
UPLOAD_ALLOWANCE = 64 * 1024
"""The upload form around its file: multipart framing, the token, the action."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _holds(partner: Partner, mark: str) -> bool:
    """Does ``partner`` still hold a valid token whose digest begins with ``mark``?"""
    now = datetime.now(UTC)
    return bool(mark) and any(d.startswith(mark) for d in partner.digests(now))


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
    rate: Callable[[Identity], float]
    """Spend one request of a partner's rate, the bucket its API calls spend too: 0.0 when
    the request may go ahead, else the seconds until it may (``[limits] partner_rate``)."""
    validate: Callable[[bytes], Awaitable[Any]]
    submit: Callable[[Identity, Partner, bytes, Any], Awaitable[Any]]
    """Accept a payload as the API does, given its validation (not repeated)."""
    certificate: Callable[[str], Sighting | None]
    """The certificate a partner last presented (its expiry), if it did."""
    overdue_days: float
    min_cell: int
    max_upload: int
    bodies: Admission
    """The gateway's body budgets: an upload is read within the partner's share of the API's,
    a small form within the forms' own (sign-in and sign-out never wait for API bodies)."""
    body_timeout: float
    upload_slots: int = 4
    """Portal uploads read and checked at once (``[limits] portal_upload_slots``)."""
    contents: Reader = field(default_factory=Reader)
    """Decodes a message's payload by its schema for the message page (typed values)."""
    partners_file: Path | None = None
    """The partner file the operator's Partners page changes (gateway/partnerfile.py)."""
    publish_partners: Callable[[bytes], Awaitable[None]] | None = None
    """Kafka: put a changed partner file on ``<prefix>.partners`` for every process."""


class Answer(Exception):
    """Raised with the page to answer instead of the handler's (:func:`hardened` returns it):
    a refusal decided where the visitor is looked up, before anything else of the request."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


@dataclass(frozen=True, slots=True)
class Visitor:
    """A signed-in browser: its session and, for a partner, the partner."""

    session: Session
    partner: Partner | None

    @property
    def admin(self) -> bool:
        return self.session.admin


class Templates:
    """The portal's templates, one Jinja2 environment per language (gettext through Jinja2's
    i18n extension: ``{% trans %}`` and ``_()`` in a template, Dutch msgids): autoescaped, and
    a missing value is an error, not a blank."""

    def __init__(self) -> None:
        self.environments = {code: _environment(i18n.language(code)) for code in i18n.LANGUAGES}

    def get(self, language: i18n.Language, name: str) -> jinja2.Template:
        return self.environments[language.code].get_template(name)


def templates() -> Templates:
    """The portal's templates in every language it speaks."""
    return Templates()


def _environment(language: i18n.Language) -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("gateway.portal", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        extensions=["jinja2.ext.i18n"],
    )
    # newstyle: a translated text's %(name)s values are escaped, and a missing one is an error
    environment.policies["ext.i18n.trimmed"] = True  # as extracted (babel.cfg)
    environment.install_gettext_callables(  # type: ignore[attr-defined]
        language.gettext, language.ngettext, newstyle=True
    )
    environment.filters["when"] = language.when
    environment.filters["euro"] = language.euro
    environment.filters["day"] = language.day
    environment.filters["number"] = language.number
    environment.globals["band"] = disclosure.band  # what a rounded figure stands for
    environment.globals["lang"] = language.code
    environment.globals.update(_words(language))
    environment.globals["languages"] = [(c, i18n.NAMES[c]) for c in i18n.LANGUAGES]
    return environment


def _words(language: i18n.Language) -> dict[str, Callable[..., str | None]]:
    """What a template says instead of a code: a Fo03 code's sentence, delivery states and
    severities in words, a code's official name (gateway/portal/explain.py)."""

    def delivery(states: str | None) -> str:
        return "; ".join(language.gettext(w) for w in explain.delivery(states)) or "-"

    def coded(list_names: tuple[str, ...]) -> Callable[[str], str | None]:
        return lambda code: explain.code_name(list_names, code)

    def bericht(functie: str | None) -> str:
        named = explain.MESSAGE_TYPES.get((functie or "").upper())
        return f"{functie} · {language.gettext(named)}" if named else functie or "-"

    return {
        "bericht": bericht,
        "fo03": lambda code: language.gettext(explain.fo03(code)),
        "delivery": delivery,
        "severity": lambda value: language.gettext(explain.SEVERITY.get(str(value), str(value))),
        "retourcode": coded(explain.RETOURCODE),
        "categorie": coded(explain.PRODUCTCATEGORIE),
    }


class Pages:
    """The plumbing every group of pages shares."""

    def __init__(self, deps: PortalDeps, environment: Templates) -> None:
        self.deps = deps
        self.templates = environment

    def language(self, request: web.Request) -> i18n.Language:
        """The visitor's language: chosen (cookie), else guessed (Accept-Language), else
        Dutch. Python code translates with it: ``self.language(request).gettext("…")``."""
        return i18n.language(
            i18n.choose(
                request.cookies.get(i18n.LANG_COOKIE), request.headers.get("Accept-Language")
            )
        )

    def render(
        self, request: web.Request, name: str, status: int = 200, **context: Any
    ) -> web.Response:
        visitor: Visitor | None = context.pop("visitor", None)
        html = self.templates.get(self.language(request), name).render(
            visitor=visitor,
            csrf=self.deps.keys.csrf(visitor.session.nonce) if visitor else "",
            path=request.path,
            here=request.path_qs,
            partij=self.party,
            **context,
        )
        return web.Response(text=html, status=status, content_type="text/html")

    def party(self, code: str | None) -> str:
        """A partner's code with its name (``Gemeente Deventer (0150)``): from the partner
        registry, else (a gemeente not connected) the CBS list; the bare code otherwise."""
        if not code:
            return "-"
        partner = self.deps.partners.get(code)
        name = partner.name if partner else explain.code_name(explain.GEMEENTE, code)
        return f"{name} ({code})" if name else code

    def visitor(self, request: web.Request, *, spend: bool = True) -> Visitor | None:
        """The signed-in visitor, or None. A session proven by a certificate holds only on a
        connection that still presents that partner's certificate; a partner's session never
        holds on a connection presenting another partner's certificate (as on the API, the
        certificate outranks anything else).

        A partner's request spends one of its rate (``spend``; every page and form but
        sign-out, which each session does once and which must never be refused): over it,
        :class:`Answer` with the 429 page, before a byte of a form is read."""
        session = self.deps.keys.read(request.cookies.get(SESSION_COOKIE), time.time())
        if session is None or self.deps.broker.session_revoked(session.nonce):
            return None
        partner = self.deps.partners.get(session.partner) if session.partner else None
        if session.partner and (partner is None or partner.disabled):
            return None  # the partner was removed or disabled since
        if partner is not None and session.via == "token" and not _holds(partner, session.token):
            return None  # the token it signed in with was revoked (or expired) since
        if partner is not None:
            presented = self.deps.identify(request).partner
            if presented is not None and presented.id != partner.id:
                return None
            if presented is None and session.via == "certificate":
                return None
        visitor = Visitor(session, partner)
        if partner is not None and spend:
            wait = self.deps.rate(self.identity(request, visitor))
            if wait:
                raise Answer(self.too_fast(request, visitor, wait))
        return visitor

    def too_fast(self, request: web.Request, visitor: Visitor, wait: float) -> web.Response:
        """The page for a partner over its rate: what happened, and when to try again (also
        in ``Retry-After``)."""
        after = retry_after(wait)
        t = self.language(request)
        response = self.notice(
            request,
            visitor,
            429,
            t.gettext("Te veel verzoeken"),
            t.gettext(
                "Uw organisatie stuurde meer verzoeken dan de gateway per seconde aanneemt (het "
                "portaal en de API samen). Wacht %(seconds)s seconden en probeer het dan opnieuw."
            )
            % {"seconds": after},
        )
        response.headers["Retry-After"] = after
        return response

    def denied(self, request: web.Request, visitor: Visitor | None) -> web.StreamResponse:
        if visitor is None:
            raise web.HTTPSeeOther("/portal/signin")
        t = self.language(request)
        return self.notice(
            request,
            visitor,
            403,
            t.gettext("Niet voor u"),
            t.gettext("Deze pagina is er niet voor uw aanmelding."),
        )

    async def form(self, request: web.Request, visitor: Visitor) -> dict[str, Any] | web.Response:
        """A small posted form (:meth:`posted`), or the answer that refuses it."""
        async with self.posted(request, visitor, FORM_BYTES) as data:
            return data

    @contextlib.asynccontextmanager
    async def posted(
        self,
        request: web.Request,
        visitor: Visitor,
        limit: int,
        page: Callable[[int, str], web.Response] | None = None,
    ) -> AsyncIterator[dict[str, Any] | web.Response]:
        """The posted form, held within the gateway's body budget for the block, when it is
        at most ``limit`` bytes, arrives within ``body_timeout``, comes from this site and
        carries the session's CSRF token; otherwise the answer that refuses it (the
        connection closed when its body was not read); ``page`` shows a refused body (status,
        reason) on the form's own page instead of a notice."""
        if not same_origin(request):
            response = self.refused_form(request, visitor)
            response.force_close()
            yield response
            return
        holder = visitor.partner.id if visitor.partner else "operator"
        async with admitted_form(
            request, self.deps.bodies, limit, self.deps.body_timeout, holder
        ) as form:
            if isinstance(form, Refusal):
                t = self.language(request)
                reason = form_refused(t, form.status)
                response = (
                    page(form.status, reason)
                    if page is not None
                    else self.notice(
                        request, visitor, form.status, t.gettext("Formulier niet gelezen"), reason
                    )
                )
                response.force_close()
                yield response
                return
            data = dict(form)
            token = data.get("csrf")
            if not self.deps.keys.csrf_ok(
                visitor.session.nonce, token if isinstance(token, str) else None
            ):
                yield self.refused_form(request, visitor)
                return
            yield data

    def notice(
        self, request: web.Request, visitor: Visitor | None, status: int, title: str, text: str
    ) -> web.Response:
        """A page that only says something (not found, refused, done)."""
        return self.render(request, "message.html", status, visitor=visitor, title=title, text=text)

    def error_page(
        self, request: web.Request, visitor: Visitor | None, status: int
    ) -> web.Response:
        """The page for an HTTP error ``status``: what happened and what to do, in words."""
        t = self.language(request)
        title, text = {
            404: (
                t.gettext("Pagina niet gevonden"),
                t.gettext(
                    "Deze pagina bestaat niet. Controleer het adres, of ga naar de startpagina."
                ),
            ),
            405: (
                t.gettext("Dit kan zo niet"),
                t.gettext(
                    "Deze pagina kan niet op deze manier worden opgevraagd. Gebruik de knoppen "
                    "en koppelingen van het portaal."
                ),
            ),
            413: (
                t.gettext("Te groot"),
                t.gettext("Wat u verstuurde is groter dan het portaal aanneemt."),
            ),
            500: (
                t.gettext("Er ging iets mis"),
                t.gettext(
                    "Er ging iets mis in de gateway; uw verzoek is niet uitgevoerd. Probeer het "
                    "opnieuw; lukt het weer niet, meld het dan aan de beheerder."
                ),
            ),
        }.get(
            status,
            (
                t.gettext("Verzoek niet uitgevoerd"),
                t.gettext("Het portaal kon dit verzoek niet uitvoeren."),
            ),
        )
        return self.render(
            request, "message.html", status, visitor=visitor, title=title, text=text, code=status
        )

    def refused_form(self, request: web.Request, visitor: Visitor) -> web.Response:
        t = self.language(request)
        return self.notice(
            request,
            visitor,
            403,
            t.gettext("Formulier geweigerd"),
            t.gettext(
                "Het formulier kwam niet van dit portaal of is verlopen. Open de pagina opnieuw."
            ),
        )

    def identity(self, request: web.Request, visitor: Visitor) -> Identity:
        return Identity(
            visitor.partner,
            admin=visitor.admin,
            peer=request.remote or "",
            via=f"portal-{visitor.session.via}",
        )


@web.middleware
async def hardened(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every portal answer: no scripts, no framing, no caching, no sniffing, no referrer
    to other sites; a body the page did not read is not drained."""
    try:
        response: web.StreamResponse = await handler(request)
    except Answer as exc:
        response = exc.response
    except web.HTTPException as exc:
        response = exc
        _harden(request, response)
        raise
    _harden(request, response)
    return response


def _harden(request: web.Request, response: web.StreamResponse) -> None:
    if request.can_read_body and not request.content.at_eof():
        # answered without reading the body (refused, or not a form page): close rather
        # than read and discard it for the next request on the connection
        response.force_close()
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    # same-origin, not no-referrer: with no-referrer a browser sends "Origin: null" on
    # its own POSTs, and the Origin check (below) needs the real one
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"


def same_origin(request: web.Request) -> bool:
    """A browser's POST names its origin; one from another site is refused (a request
    without Origin, from a non-browser client, still needs the CSRF token)."""
    origin = request.headers.get("Origin")
    return origin is None or origin == f"{request.scheme}://{request.host}"


def day(text: str | None) -> float | None:
    """Midnight UTC of a YYYY-MM-DD date, as epoch seconds; None when it is not one."""
    if not text:
        return None
    try:
        return calendar.timegm(time.strptime(text, "%Y-%m-%d"))
    except ValueError:
        return None


BACK = re.compile(r"/portal/[A-Za-z0-9/_-]{0,200}(\?[A-Za-z0-9=&_%.-]{0,200})?")
"""Where the language switch may send the browser back to: a portal page's path with its plain
query (the Figures page's gemeente and months), nothing else: no other site, no line breaks."""


async def switch_language(request: web.Request) -> web.StreamResponse:
    """``GET /portal/taal/{lang}?terug=/portal/…``: remember the chosen language in its cookie
    (a preference, not a secret: the page reads nothing else from it) and go back to the page.
    A link, not a form, so it works before sign-in and without a CSRF token; it changes
    nothing but the language."""
    code = request.match_info["lang"]
    if code not in i18n.LANGUAGES:
        raise web.HTTPNotFound()
    back = request.query.get("terug", "")
    response = web.HTTPSeeOther(back if BACK.fullmatch(back) else "/portal/")
    response.set_cookie(
        i18n.LANG_COOKIE,
        code,
        max_age=i18n.LANG_COOKIE_SECONDS,
        path="/portal",
        secure=request.scheme == "https",
        httponly=True,
        samesite="Lax",
    )
    raise response


def form_refused(t: i18n.Language, status: int) -> str:
    """Why a form or upload was not read (admission's refusal by its status), in words."""
    reasons = {
        408: t.gettext("Het formulier kwam niet op tijd binnen. Probeer het opnieuw."),
        411: t.gettext("Het formulier had geen lengte. Verstuur het vanuit het portaal."),
        413: t.gettext("Het formulier of bestand is te groot."),
        415: t.gettext("Een formulier wordt niet gecomprimeerd verstuurd."),
        503: t.gettext("De gateway is bezig met grote berichten. Probeer het zo opnieuw."),
    }
    return reasons.get(status, t.gettext("Het formulier kon niet worden gelezen."))


def _visitor_or_none(pages: Pages, request: web.Request) -> Visitor | None:
    """Who sees an error page (their menu on it), if that can be told: an error page never
    fails because the session could not be checked (the store being down, say)."""
    try:
        return pages.visitor(request, spend=False)
    except Exception:
        return None


def error_pages(pages: Pages) -> Middleware:
    """Every error the portal answers (an unknown address, a method a page does not take, a
    body too large, a fault in the code) as a page in the portal's look and language, with its
    status; never aiohttp's bare ``404: Not Found`` or a traceback."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = pages.error_page(request, _visitor_or_none(pages, request), exc.status)
            for name in ("Allow", "Retry-After"):
                if name in exc.headers:
                    response.headers[name] = exc.headers[name]
            return response
        except Answer:
            raise
        except Exception:
            # the route's pattern, never the path itself (a path may hold what a visitor typed)
            resource = request.match_info.route.resource
            log.exception("portal.page_failed", route=resource.canonical if resource else "?")
            return pages.error_page(request, None, 500)

    return middleware
