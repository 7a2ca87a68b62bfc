"""Who is calling, and may they: the admin token, a client certificate (mutual TLS) or a
partner token; the 401/403 answers; each partner's request rate (429); and aggregate counting
of refusals, so a flood of them cannot grow the audit log.
"""

from __future__ import annotations

import hashlib
import hmac

import structlog
from aiohttp import web

from gateway.config import is_loopback
from gateway.ingest import Identity
from gateway.metrics import (
    RATE_LIMITED,
    UNAUTHENTICATED,
)
from gateway.problems import (
    problem,
)
from gateway.ratelimit import retry_after
from gateway.web.answers import fault, unread
from gateway.web.wiring import GATEWAY_KEY, SOAP_PATH, Gateway
from routing.partners import Partner

log = structlog.get_logger("ggk.server")


IDENTITY_KEY: web.RequestKey[Identity] = web.RequestKey("identity", Identity)


def _bearer(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    return auth[7:].strip() or None if auth.startswith("Bearer ") else None


def _token_is(token: str | None, sha256_hex: str | None) -> bool:
    """Does ``token`` hash to the configured digest (constant-time comparison)?"""
    if not token or not sha256_hex:
        return False
    return hmac.compare_digest(hashlib.sha256(token.encode()).hexdigest(), sha256_hex)


def identify(request: web.Request, gw: Gateway) -> Identity:
    """Who is calling: an explicit admin token first, then the client certificate (mutual
    TLS), then a partner token. A certificate outranks a partner token, so a connection
    authenticated as one partner cannot be used to speak as another. Worked out once per
    request (handlers and the access log ask alike)."""
    known: Identity | None = request.get(IDENTITY_KEY)
    if known is None:
        known = request[IDENTITY_KEY] = _identify(request, gw)
    return known


def _identify(request: web.Request, gw: Gateway) -> Identity:
    peer = request.remote or ""
    token = _bearer(request)
    if _token_is(token, gw.config.admin_token_sha256):
        return Identity(None, admin=True, peer=peer, via="token")
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport else None
    if ssl_object is not None:
        der = ssl_object.getpeercert(binary_form=True)
        if der:
            partner = gw.partners.by_certificate(der)
            if partner is not None:
                gw.certificates.saw(partner.id, der)
                return Identity(partner, peer=peer, via="mtls")
    return identify_token(gw, token, peer) if token else Identity(None, peer=peer)


def identify_token(gw: Gateway, token: str | None, peer: str) -> Identity:
    """Who a token proves: the operator (admin token), a partner, or no one. The portal's
    sign-in asks this too, so a token proves exactly the same there as on the API."""
    if _token_is(token, gw.config.admin_token_sha256):
        return Identity(None, admin=True, peer=peer, via="token")
    partner = gw.partners.by_token(token) if token else None
    return Identity(partner, peer=peer, via="token" if partner else "")


def may_scrape(request: web.Request, gw: Gateway) -> bool:
    if identify(request, gw).admin or _token_is(_bearer(request), gw.config.metrics_token_sha256):
        return True
    return gw.config.metrics_from_loopback and is_loopback(request.remote or "")


def as_partner(request: web.Request) -> tuple[Gateway, Identity, Partner] | web.Response:
    """The gateway and the calling partner, or the 401 (or 429: over its rate) to answer
    instead."""
    gw = request.app[GATEWAY_KEY]
    identity = identify(request, gw)
    if identity.partner is None:
        anonymous(gw, identity, "401", "rest")
        return unread(
            request,
            problem(401, "a partner credential (client certificate or bearer token) is required"),
        )
    limited = over_rate(request, gw, identity)
    if limited is not None:
        return limited
    return gw, identity, identity.partner


def as_admin(request: web.Request) -> tuple[Gateway, Identity] | web.Response:
    """The gateway and the operator's identity, or the 401/403 to answer instead."""
    gw = request.app[GATEWAY_KEY]
    identity = identify(request, gw)
    if not identity.admin:
        status = 403 if identity.partner else 401
        if identity.partner is None:
            anonymous(gw, identity, "401", "rest")
        return unread(request, problem(status, "an admin credential is required"))
    return gw, identity


def anonymous(gw: Gateway, identity: Identity, outcome: str, surface: str) -> None:
    """Count a refusal of a caller without a credential: a metric, and one audit record per
    interval for all of them (gateway/tally.py), never one per request, so a flood cannot
    grow the audit log."""
    UNAUTHENTICATED.labels(surface=surface).inc()
    gw.tally.note("anonymous", outcome, identity.peer)


def over_rate(request: web.Request, gw: Gateway, identity: Identity) -> web.Response | None:
    """None when the calling partner is within its rate (``[limits] partner_rate``), else the
    refusal to answer before anything of the request is read: 429 with Retry-After, as a
    Fo03 StUF046 (the receiver cannot take the message now; re-offer it unchanged) on SOAP
    and a problem document elsewhere. Counted and audited in aggregate, like anonymous
    callers: a partner's flood of refusals must not grow the audit log either."""
    partner = identity.partner
    wait = spend_rate(gw, identity)
    if partner is None or not wait:
        return None
    after = retry_after(wait)
    text = (
        f"more than {gw.buckets.rate:g} requests per second from {partner.id}; "
        f"try again (the same message, unchanged) after {after} s"
    )
    if request.path == SOAP_PATH:
        response = fault(gw, "StUF046", "server", text, None, 429)
    else:
        response = problem(429, text)
    response.headers["Retry-After"] = after
    return unread(request, response)


def spend_rate(gw: Gateway, identity: Identity) -> float:
    """Spend one request of the calling partner's bucket: 0.0 when it may go ahead, else the
    seconds until it may (the refusal counted and audited in aggregate). One bucket per
    partner for the API, SOAP and the portal's pages alike: the portal is no way around the
    rate. The operator and anonymous callers have none."""
    partner = identity.partner
    if partner is None:
        return 0.0
    wait = gw.buckets.take(partner.id)
    if wait:
        RATE_LIMITED.labels(partner=partner.id).inc()
        gw.tally.note(partner.id, "429", identity.peer)
    return wait
