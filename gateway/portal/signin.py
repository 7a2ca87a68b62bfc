"""Signing in and out of the portal: by client certificate or token, into a signed session
cookie (gateway/portal/session.py)."""

from __future__ import annotations

import secrets
import time

import jinja2
import structlog
from aiohttp import web

from gateway.ingest import Identity
from gateway.portal.pages import Pages, PortalDeps, same_origin
from gateway.portal.session import (
    PRESESSION_COOKIE,
    SESSION_COOKIE,
    SESSION_SECONDS,
    SignInLimiter,
)

log = structlog.get_logger("ggk.portal")

SIGNIN_FORM_BYTES = 4096
"""The only form read before anyone is known."""


class SignIn(Pages):
    def __init__(self, deps: PortalDeps, environment: jinja2.Environment) -> None:
        super().__init__(deps, environment)
        self.limiter = SignInLimiter()

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
        if not same_origin(request):
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
