"""Signing in and out of the portal: by client certificate or token, into a signed session
cookie (gateway/portal/session.py)."""

from __future__ import annotations

import secrets
import time

import structlog
from aiohttp import web

from gateway.admission import Form, Refusal, admitted_form
from gateway.broker.base import StorageError
from gateway.ingest import Identity
from gateway.portal.limits import (
    FAILURES_PER_PEER,
    SIGNINS_PER_PARTNER,
    WindowLimit,
)
from gateway.portal.pages import Pages, PortalDeps, Templates, form_refused, same_origin
from gateway.portal.session import (
    PRESESSION_COOKIE,
    SESSION_COOKIE,
    SESSION_SECONDS,
    TOKEN_MARK,
)
from gateway.ratelimit import retry_after
from routing.partners import token_digest

log = structlog.get_logger("ggk.portal")

SIGNIN_FORM_BYTES = 4096
"""The only form read before anyone is known."""


class SignIn(Pages):
    def __init__(self, deps: PortalDeps, environment: Templates) -> None:
        super().__init__(deps, environment)
        self.failures = WindowLimit(*FAILURES_PER_PEER)
        """Failed sign-ins per peer address."""
        self.by_partner = WindowLimit(*SIGNINS_PER_PARTNER)
        """Successful sign-ins per partner (the operator counts as one)."""

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
        t = self.language(request)
        if request.scheme != "https":  # its cookies are Secure: a browser would drop them
            return self.notice(
                request,
                None,
                503,
                t.gettext("Het portaal werkt alleen via HTTPS"),
                t.gettext(
                    "Deze gateway gebruikt gewoon HTTP (een instelling voor ontwikkeling); "
                    "aanmelden bij het portaal kan alleen via HTTPS."
                ),
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
        t = self.language(request)
        if wait := self.failures.wait(peer, now):
            log.warning("portal.signin_limited", peer=peer)
            return await self.refused(
                request,
                429,
                wait,
                t.gettext(
                    "Te veel mislukte aanmeldingen. Wacht %(seconds)s seconden en probeer het "
                    "dan opnieuw."
                )
                % {"seconds": retry_after(wait)},
            )
        if wait := self.deps.broker.signins_paused():
            # the signed-out sessions every process must remember are at capacity: none is
            # forgotten early (its copied cookie would live again), so none is minted
            return await self.refused(
                request,
                503,
                wait,
                t.gettext(
                    "Het portaal neemt even geen nieuwe aanmeldingen aan: er zijn kort geleden "
                    "te veel sessies afgemeld. Probeer het over %(seconds)s seconden opnieuw."
                )
                % {"seconds": retry_after(wait)},
            )
        if not same_origin(request):
            return await self.signin_page(
                request, 403, t.gettext("Het formulier kwam niet van dit portaal.")
            )
        # the only form read before anyone is known: a few hundred bytes, within the small
        # forms' own budget (never full: API bodies cannot block a sign-in), body_timeout and
        # the minimum rate like every other, or not at all
        async with admitted_form(
            request, self.deps.bodies, SIGNIN_FORM_BYTES, self.deps.body_timeout, f"peer {peer}"
        ) as form:
            if isinstance(form, Refusal):
                response = await self.signin_page(
                    request, form.status, form_refused(t, form.status)
                )
                response.force_close()
                return response
            return await self._signin(request, form, peer, now)

    async def _signin(
        self, request: web.Request, data: Form, peer: str, now: float
    ) -> web.StreamResponse:
        token = data.get("csrf")
        if not self.deps.keys.csrf_ok(
            request.cookies.get(PRESESSION_COOKIE), token if isinstance(token, str) else None
        ):
            t = self.language(request)
            return await self.signin_page(
                request, 403, t.gettext("Het formulier is verlopen. Probeer het opnieuw.")
            )
        method = data.get("method")
        presented = self.deps.identify(request)
        held = ""
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
                self.failures.note(peer, now)
                log.info("portal.signin_failed", peer=peer)
                return await self.signin_page(
                    request, 401, self.language(request).gettext("Aanmelden mislukt.")
                )
            partner = proven.partner.id if proven.partner else None
            admin, via = proven.admin, "token"
            if partner is not None and isinstance(secret, str):
                held = token_digest(secret)[:TOKEN_MARK]
        who = f"partner {partner}" if partner else "operator"  # never one the other
        if wait := self.by_partner.wait(who, now):
            log.warning("portal.signins_limited", who=partner or "operator")
            return await self.refused(
                request,
                429,
                wait,
                self.language(request).gettext(
                    "Te veel aanmeldingen als %(who)s. Wacht %(seconds)s seconden en meld u dan "
                    "opnieuw aan."
                )
                % {
                    "who": self.language(request).gettext("beheerder")
                    if partner is None
                    else partner,
                    "seconds": retry_after(wait),
                },
            )
        self.by_partner.note(who, now)
        _, cookie = self.deps.keys.mint(partner, admin, via, now, held)
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
        forget(response, PRESESSION_COOKIE)
        raise response

    async def refused(
        self, request: web.Request, status: int, wait: float, error: str
    ) -> web.Response:
        """The sign-in page again, saying why and (``Retry-After``) when to try again."""
        response = await self.signin_page(request, status, error)
        response.headers["Retry-After"] = retry_after(wait)
        return response

    async def signout(self, request: web.Request) -> web.StreamResponse:
        """Forget the session in the browser (deleted as it was set, Secure) and revoke it
        for every process, so a copy of the cookie dies with it."""
        # not counted against the rate: each session signs out once, and a refused sign-out
        # would leave a copy of the cookie alive
        visitor = self.visitor(request, spend=False)
        response = web.HTTPSeeOther("/portal/signin")
        forget(response, SESSION_COOKIE)
        if visitor is None:
            raise response
        if isinstance(refused := await self.form(request, visitor), web.Response):
            return refused
        try:
            await self.deps.broker.revoke_session(visitor.session.nonce, visitor.session.expires)
        except StorageError:
            log.error("portal.signout_not_revoked", peer=request.remote or "")
            failed = self.notice(
                request,
                None,
                503,
                self.language(request).gettext("Alleen in deze browser afgemeld"),
                self.language(request).gettext(
                    "De gateway kon de afmelding niet vastleggen; een kopie van het "
                    "sessiecookie blijft geldig tot het verloopt (hooguit 20 minuten). Meld "
                    "dit aan de beheerder."
                ),
            )
            forget(failed, SESSION_COOKIE)
            return failed
        log.info("portal.signed_out", who=visitor.partner.id if visitor.partner else "operator")
        raise response


def forget(response: web.StreamResponse, name: str) -> None:
    """Delete a cookie the way it was set: a browser ignores a deleting ``Set-Cookie`` for a
    ``__Host-`` cookie that lacks ``Secure`` (or ``Path=/``), and the session would live on
    in it until it expires."""
    response.del_cookie(name, path="/", secure=True, httponly=True, samesite="Strict")
