"""The gateway's HTTP face: StUF-GGk SOAP ingress, the REST API, health and metrics.

One aiohttp application; TLS with optional client certificates (mutual TLS identifies a
partner by its certificate fingerprint), bearer tokens as the alternative. Handlers are thin:
they authenticate, translate HTTP to the :class:`~gateway.ingest.Ingress` and back.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import hashlib
import hmac
import json
import math
import re
import signal
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp.http_exceptions
import structlog
from aiohttp import web
from lxml import etree
from prometheus_client import generate_latest

from gateway import audit, soap, stats
from gateway import envelope as env
from gateway.admission import (
    ABANDONED,
    DISCONNECTED,
    SMALL_FORM_BYTES,
    Admission,
    BadEncoding,
    BodyBudget,
    BodyTooLarge,
    BudgetExhausted,
    abandoned,
    decode_body,
    paced,
)
from gateway.broker import open_broker
from gateway.broker.base import Broker, SharedAnswers, StorageError
from gateway.bundled import WSDL_GENERATIONS, ontvang_wsdl, stuf_ggk_dir
from gateway.config import GatewayConfig, TlsConfig, is_loopback
from gateway.connections import GuardedSite, LoggedHandshake
from gateway.delivery import DeliveryService
from gateway.ebms.cpastore import CpaStore
from gateway.ebms.inbound import EbmsInbound
from gateway.figures import FigureKeys
from gateway.ingest import Identity, Ingress, Rejected
from gateway.keyring import Keyring
from gateway.metrics import (
    ACCEPTED,
    BODY_BUDGET_WAITS,
    BV03_SECONDS,
    CHECKPOINT_AGE_SECONDS,
    DEAD_LETTERS,
    DELIVERY_STATES,
    HTTP_REFUSALS,
    OVERDUE_RETOURS,
    QUEUE_DEPTH,
    QUEUE_OLDEST_SECONDS,
    RATE_LIMITED,
    REGISTRY,
    REJECTED,
    STORE_BYTES,
    UNAUTHENTICATED,
)
from gateway.offload import LARGE_PAYLOAD_BYTES, PayloadValidator
from gateway.openapi import OPENAPI
from gateway.portal import PortalDeps, SessionKeys, portal_app
from gateway.problems import (
    REFUSAL_FORM,
    problem,
    problems_not_tracebacks,
    query_float,
    query_int,
)
from gateway.ratelimit import PartnerBuckets, retry_after
from gateway.schemas import SchemaRegistry
from gateway.sightings import CertificateSightings
from gateway.standards import Kind
from gateway.tally import RefusalTally
from gateway.validation import PayloadResult, Validator
from gateway.xmlsafe import ParseLimits, parse_untrusted
from routing.partners import Partner, PartnerKind, PartnerRegistry
from routing.table import RouteTable

log = structlog.get_logger("ggk.server")
T = TypeVar("T")

SOAP_PATH = "/ggk/OntvangAsynchroon"
GATEWAY_KEY: web.AppKey[Gateway] = web.AppKey("gateway")
_SAFE_FILE = re.compile(r"^[A-Za-z0-9_./-]+\.(xsd|wsdl)$")
MAX_SCHEMA_NAME = 200
"""The bundled schemas' paths are under 80 characters; longer names are refused unread."""
REPLAY_BODY_BYTES = 4096
"""POST /api/v1/admin/replay takes a JSON object of four short members."""
SOAP_ALLOWANCE = 64 * 1024
"""Bytes a request may carry beyond max_message_bytes (SOAP wrapper, HTTP framing)."""
ENVELOPE_ALLOWANCE = 8 * 1024
"""Bytes of a Di01/Du01 around its base64 payload (stuurgegevens, parameters)."""
MAX_CURSOR = 2**63 - 1
LARGE_PARSES = 2
SOAP_MAX_MARKUP = 2_000
"""A SOAP request carries a few dozen tags (the payload is base64 text)."""
PAYLOAD_MAX_MARKUP = 2_000_000
"""An iWmo/iJw message has a tag per ~25 bytes; 2 million covers a 25 MiB one."""


@dataclass
class Gateway:
    """Everything a running gateway holds; built by :func:`build`."""

    config: GatewayConfig
    partners: PartnerRegistry
    broker: Broker
    ingress: Ingress
    delivery: DeliveryService
    limits: ParseLimits
    soap_limits: ParseLimits
    """For SOAP requests: few tags allowed (the payload is base64 text inside)."""
    admission: Admission
    keyring: Keyring
    """The keys of this gateway's data (also the portal's session key is derived from it)."""
    buckets: PartnerBuckets
    """Each partner's request rate (``[limits] partner_rate``/``partner_burst``)."""
    tally: RefusalTally = dataclasses.field(default_factory=RefusalTally)
    """Refusals audited in aggregate (no credential, over the rate): see gateway/tally.py."""
    tally_since: float = dataclasses.field(default_factory=time.monotonic)
    """When the tally was last written (monotonic): the summaries say over how long."""
    large_parses: asyncio.Semaphore = dataclasses.field(
        default_factory=lambda: asyncio.Semaphore(LARGE_PARSES)
    )
    """Large requests parsed in threads at once: more would only fight over the GIL."""
    ebms: EbmsInbound | None = None
    """The Digikoppeling ebMS2 endpoint, when ``[ebms]`` is configured."""
    certificates: CertificateSightings = dataclasses.field(default_factory=CertificateSightings)
    """When the client certificate each partner last presented expires (partner health)."""

    @property
    def systeem(self) -> env.Systeem:
        return env.Systeem(self.config.organisatie, self.config.applicatie)


def build(config: GatewayConfig) -> Gateway:
    partners = PartnerRegistry.load(config.partners_file)
    routes = (
        RouteTable.from_config(config.routes, str(config.path))
        if config.routes
        else (RouteTable.default())
    )
    for rule in routes.rules:
        for partner in rule.copy_to:
            if partners.get(partner) is None:
                raise ValueError(f"route {rule.name!r} copies to unknown partner {partner}")
    limits = ParseLimits(max_bytes=config.max_message_bytes, max_markup=PAYLOAD_MAX_MARKUP)
    registry = SchemaRegistry(list(config.schema_dirs))
    registry.compile_all()
    validator = Validator(registry, limits)
    keyring = Keyring.load(config.keyring)
    broker = open_broker(config, keyring)
    if not config.audit_enabled:
        log.warning("audit.disabled", reason="[audit] enabled = false; for measurements only")
    ingress = Ingress(
        validator=validator,
        partners=partners,
        routes=routes,
        broker=broker,
        reject_rule_violations=config.business_rules == "reject",
        payloads=PayloadValidator(validator, config.schema_dirs),
        text_functies=frozenset(config.text_functies),
        figure_keys=FigureKeys(keyring.figures_key),
        lenient_conversations=config.conversations == "lenient",
    )
    context: dict[str, Any] = {}
    inbound: EbmsInbound | None = None
    if config.ebms is not None:
        inbound = EbmsInbound(config, CpaStore(config.ebms, partners), ingress, limits)
        context["ebms"] = inbound.outbound
        if isinstance(broker, SharedAnswers):  # answers may reach another process
            inbound.outbound.share = broker.share_ebms_answer
            broker.ebms_answer_listener = inbound.outbound.answer_from_cluster
    delivery = DeliveryService(broker, partners, config.delivery, wake=broker.wake, context=context)
    soap_limits = ParseLimits(max_bytes=config.max_message_bytes, max_markup=SOAP_MAX_MARKUP)
    admission = admission_of(config)
    buckets = PartnerBuckets(config.limits.partner_rate, config.limits.partner_burst)
    gateway = Gateway(
        config,
        partners,
        broker,
        ingress,
        delivery,
        limits,
        soap_limits,
        admission,
        keyring,
        buckets,
    )
    gateway.ebms = inbound
    return gateway


SMALL_BODIES_SLACK = 1024 * 1024
"""What a partner's default share holds beyond one message: its small messages keep flowing
while it sends a large one."""


def admission_of(config: GatewayConfig) -> Admission:
    """The body budgets of ``config``: API bodies and uploads in ``inflight_body_mb``, one
    partner at most its share of it (``partner_inflight_body_mb``, by default one message
    plus SMALL_BODIES_SLACK); the portal's small forms in a budget of their own that the
    connection cap keeps from ever being full."""
    limits = config.limits
    capacity = limits.inflight_body_mb * 1024 * 1024
    share = (
        limits.partner_inflight_body_mb * 1024 * 1024
        or config.max_message_bytes + SOAP_ALLOWANCE + SMALL_BODIES_SLACK
    )
    return Admission(
        bodies=BodyBudget(capacity, share),
        forms=BodyBudget(limits.max_connections * SMALL_FORM_BYTES),
        grace=limits.body_grace,
        min_rate=limits.min_body_rate * 1024,
    )


# --- authentication ------------------------------------------------------------------------


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


async def off_loop(gw: Gateway, large: bool, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a thread when the input is large (at most LARGE_PARSES at once, more
    would only fight over the GIL), inline otherwise: parsing megabytes must not stall the
    loop that answers health checks and other partners."""
    if not large:
        return fn(*args)
    async with gw.large_parses:
        return await asyncio.to_thread(fn, *args)


access_log = structlog.get_logger("ggk.access")


@web.middleware
async def access_lines(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """One JSON line per request (method, path without its query, status, duration, who), so
    4xx and 5xx are visible to a log shipper. The query and headers are never logged: they
    can carry identifiers and credentials."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        if status >= 400:
            HTTP_REFUSALS.labels(status=str(status)).inc()
        access_log.info(
            "http.request",
            method=request.method[:10],
            path=request.path[:200],
            status=status,
            ms=round((time.perf_counter() - started) * 1000, 1),
            caller=identify(request, request.app[GATEWAY_KEY]).name,
            peer=request.remote,
        )


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
        response = _fault(gw, "StUF046", "server", text, None, 429)
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


def unread(request: web.Request, response: web.Response) -> web.Response:
    """A refusal before the body was read: close the connection after it, so the body is not
    drained (read and thrown away) for the next request on a kept-alive connection."""
    if request.can_read_body:
        response.force_close()
    return response


# --- SOAP ----------------------------------------------------------------------------------


async def soap_endpoint(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY_KEY]
    if request.method == "GET":
        if "wsdl" in request.query:
            return wsdl(request)
        return problem(
            405, "POST a SOAP request; GET ?wsdl (or ?wsdl=0310) for the service description"
        )
    started = time.perf_counter()
    identity = identify(request, gw)
    if identity.partner is None:
        # Nothing of an unknown caller is read or parsed: its body stays unread and the
        # connection is closed after the answer. Audited in aggregate (gateway/tally.py).
        REJECTED.labels(code="StUF052").inc()
        anonymous(gw, identity, "StUF052", "soap")
        return unread(
            request, _fault(gw, "StUF052", "client", "sender is not authenticated", None, 500)
        )
    limited = over_rate(request, gw, identity)
    if limited is not None:
        return limited
    async with admitted(request, gw) as data:
        if isinstance(data, web.Response):
            return data
        large = len(data) > LARGE_PAYLOAD_BYTES
        try:
            element = await off_loop(
                gw, large, soap.unwrap, data, request.headers.get("SOAPAction"), gw.soap_limits
            )
        except soap.SoapFault as exc:
            REJECTED.labels(code=exc.code).inc()
            await gw.ingress.refused_before_envelope(identity, exc.code, "soap")
            readable = Rejected(exc.code, exc.plek, exc.omschrijving, exc.cross_ref, exc.zender)
            return _fault(
                gw, exc.code, exc.plek, exc.omschrijving, readable, exc.http_status, exc.faultcode
            )
        del data
        result = await gw.ingress.accept_envelope(element, identity, offload=large)
    BV03_SECONDS.observe(time.perf_counter() - started)
    if isinstance(result, Rejected):
        REJECTED.labels(code=result.code).inc()
        return _fault(gw, result.code, result.plek, result.omschrijving, result, 500)
    ACCEPTED.labels(functie=_functie(element), duplicate=str(result.duplicate).lower()).inc()
    body = soap.bv03(
        zender=gw.systeem,
        ontvanger=result.zender,
        cross_ref=result.referentienummer,
        referentienummer=result.bv03_ref,
        tijdstip=result.bv03_tijdstip,
    )
    return web.Response(body=body, content_type="text/xml", charset="utf-8")


async def ebms_endpoint(request: web.Request) -> web.StreamResponse:
    """``POST /ebms``: a partner's ebMS2 MSH (gateway/ebms/inbound.py)."""
    gw = request.app[GATEWAY_KEY]
    if gw.ebms is None:
        return unread(request, problem(404, "ebMS2 is not configured on this gateway"))
    identity = identify(request, gw)
    local_peer = gw.config.plain_http and is_loopback(request.remote or "")
    certified = identity.partner is not None and identity.via == "mtls"
    if not certified and not (local_peer and gw.ebms.loopback_test_mode):
        # Digikoppeling's access control is the client certificate only (KVS ch05 "HTTP
        # Access Control"): a partner's bearer token does not make an MSH caller
        anonymous(gw, identity, "401", "ebms")
        return unread(request, problem(401, "a partner client certificate is required"))
    limited = over_rate(request, gw, identity)
    if limited is not None:
        return limited
    async with admitted(request, gw) as body:
        if isinstance(body, web.Response):
            return body
        return await gw.ebms.handle(request, body, identity)


def _functie(element: etree._Element) -> str:
    """A metric label from a closed set: a known message code, Fo01, or ``other``."""
    functie = element.findtext(f".//{{{env.STUF_NS}}}functie")
    return "Fo01" if functie is None else env.functie_label(functie)


def _fault(
    gw: Gateway,
    code: str,
    plek: str,
    omschrijving: str,
    rejected: Rejected | None,
    status: int,
    faultcode: str | None = None,
) -> web.Response:
    body = soap.fault(
        code=code,
        plek=plek,
        omschrijving=omschrijving,
        zender=gw.systeem,
        ontvanger=rejected.zender if rejected and rejected.zender else env.Systeem("", "onbekend"),
        cross_ref=rejected.cross_ref if rejected else "",
        details=rejected.details if rejected else None,
        faultcode=faultcode,
    )
    return web.Response(body=body, status=status, content_type="text/xml", charset="utf-8")


def _too_large(request: web.Request, gw: Gateway) -> web.Response:
    if request.path == SOAP_PATH:
        return _fault(gw, "IB007", "client", "message larger than the limit", None, 413)
    return problem(413, "message larger than the limit", code="IB007")


def soap_refusal(gw: Gateway, request: web.Request, status: int, title: str) -> web.Response | None:
    """The middleware's refusals (NUL in the target, an unknown Content-Encoding, an
    unforeseen error) on the SOAP endpoint: a Fo03 fault like every other answer there, not a
    JSON document a SOAP client cannot read. None elsewhere (a problem document)."""
    if request.path != SOAP_PATH or request.method != "POST":
        return None
    if status >= 500:
        return _fault(gw, "StUF046", "server", "the message could not be handled", None, 500)
    return _fault(gw, "StUF055", "client", title, None, 500)


async def _read_at_most(request: web.Request, limit: int) -> bytes:
    """The body, refused (413) as soon as it passes ``limit`` bytes: for a small limit, less
    than the application's client_max_size that ``request.read()`` would allow."""
    chunks, size = [], 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)
        chunks.append(chunk)
    return b"".join(chunks)


def _body_refusal(request: web.Request, gw: Gateway, status: int, title: str) -> web.Response:
    """A refusal of a body in the form its endpoint speaks: on SOAP a Fo03 (StUF046, plek
    server, for the gateway's own temporary refusal, the budget full: 503; StUF055, plek
    client, for a body that could not be read: framing or Content-Encoding 500, too slow
    408), elsewhere a problem document. The connection is closed after it: whatever is left
    of the body is not read."""
    if request.path == SOAP_PATH:
        if status == 503:
            response = _fault(gw, "StUF046", "server", title, None, 503)
        else:
            response = _fault(gw, "StUF055", "client", title, None, 408 if status == 408 else 500)
    else:
        response = problem(status, title)
    response.force_close()
    return response


def _holder(request: web.Request, gw: Gateway) -> str:
    """Whose share of the body budget a request draws on: its partner, the operator, or (an
    ebMS peer in loopback test mode) its address."""
    identity = identify(request, gw)
    if identity.partner is not None:
        return identity.partner.id
    return "operator" if identity.admin else f"peer {request.remote}"


@contextlib.asynccontextmanager
async def admitted(
    request: web.Request, gw: Gateway, limit: int | None = None
) -> AsyncIterator[bytes | web.Response]:
    """The body of an authenticated request, read within its partner's share of the memory
    budget (503 when it stays full), bounded in size (413, told by Content-Length before
    anything is read) and in time (408: a client that trickles its body, or sends it slower
    than ``min_body_rate`` after ``body_grace``, must not hold a handler or budget). A client
    that hangs up mid-body is one log line and a 499 nobody receives, not a 500.
    ``limit``: a smaller size than a message's (the admin API's small JSON bodies)."""
    small = limit is not None
    limit = gw.config.max_message_bytes + SOAP_ALLOWANCE if limit is None else limit
    length = request.content_length
    if length is not None and length > limit:
        response = _too_large(request, gw)
        response.force_close()
        yield response
        return
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    encoded = encoding not in ("", "identity")
    timeout = gw.config.body_timeout
    try:
        # a Content-Length of an encoded body says nothing about its decoded size
        reserve = limit if length is None or encoded else length
        async with gw.admission.bodies.reserve(_holder(request, gw), reserve, timeout):
            try:
                read = _read_at_most(request, limit) if small else request.read()
                data = await paced(read, request.content, gw.admission.pace(timeout))
            except web.HTTPRequestEntityTooLarge:
                yield _too_large(request, gw)
                return
            except TimeoutError:
                log.warning("request.body_timeout", peer=request.remote, path=request.path)
                yield _body_refusal(request, gw, 408, "request body not received in time")
                return
            except DISCONNECTED:
                abandoned(request)
                yield web.Response(status=ABANDONED, reason="Client Closed Request")
                return
            except (web.RequestPayloadError, aiohttp.http_exceptions.HttpProcessingError):
                yield _body_refusal(
                    request, gw, 400, "the request body could not be read (framing)"
                )
                return
            try:
                if encoded:
                    data = await asyncio.to_thread(decode_body, data, encoding, limit)
            except BodyTooLarge:
                yield _too_large(request, gw)
                return
            except BadEncoding:
                yield _body_refusal(request, gw, 400, f"the request body is not valid {encoding}")
                return
            yield data
    except BudgetExhausted:
        log.warning("request.body_budget_full", peer=request.remote, path=request.path)
        BODY_BUDGET_WAITS.inc()
        yield _body_refusal(
            request, gw, 503, "the gateway is busy with large messages; try again later"
        )


def wsdl(request: web.Request) -> web.Response:
    """Our WSDL of one envelope generation (``?wsdl`` or ``?wsdl=0210``: the current one;
    ``?wsdl=0310``: the 0310 bundle's), with absolute import locations and the configured public
    address (never the request's Host header, which the caller chooses). Both generations are
    accepted at the same address."""
    generation = request.query.get("wsdl") or "0210"
    if generation not in WSDL_GENERATIONS:
        return problem(
            404, "no such WSDL; ?wsdl (0210) or ?wsdl=" + " or ?wsdl=".join(WSDL_GENERATIONS)
        )
    base = request.app[GATEWAY_KEY].config.base_url
    folder = f"ggk{generation}"
    text = ontvang_wsdl(generation).read_text(encoding="utf-8")
    text = text.replace(
        'location="../stuf0301_types.wsdl"', f'location="{base}/ggk/wsdl/stuf0301_types.wsdl"'
    )
    text = text.replace(
        f'schemaLocation="{folder}_msg.xsd"',
        f'schemaLocation="{base}/ggk/wsdl/{folder}/{folder}_msg.xsd"',
    )
    text = text.replace(
        'location="http://127.0.0.1/ggk/OntvangAsynchroon"', f'location="{base}{SOAP_PATH}"'
    )
    return web.Response(text=text, content_type="text/xml", charset="utf-8")


async def schema_file(request: web.Request) -> web.StreamResponse:
    """A file of the bundled StUF-GGk schemas. The name is checked before it touches the file
    system (a NUL, a name longer than the file system allows, a traversal), and a name the
    file system refuses anyway is a 404 too, not an error."""
    name = request.match_info["name"]
    if len(name) > MAX_SCHEMA_NAME or not _SAFE_FILE.match(name):
        return problem(404, "no such schema file")
    root = stuf_ggk_dir().resolve()
    try:
        path = (root / name).resolve()
        found = root in path.parents and path.is_file()
    except (OSError, ValueError):
        found = False
    if not found:
        return problem(404, "no such schema file")
    return web.Response(body=path.read_bytes(), content_type="text/xml", charset="utf-8")


# --- REST ----------------------------------------------------------------------------------


async def submit_message(request: web.Request) -> web.Response:
    """POST a raw iWmo/iJw message; the gateway wraps it in a Di01/Du01 for the sender."""
    auth = as_partner(request)
    if isinstance(auth, web.Response):
        return auth
    gw, identity, partner = auth
    async with admitted(request, gw) as payload:
        if isinstance(payload, web.Response):
            return payload
        submitted = await submit_payload(
            gw,
            identity,
            partner,
            payload,
            referentienummer=request.headers.get("Idempotency-Key") or None,
            cross_ref=request.query.get("cross_ref") or None,
        )
        return submitted.response()


@dataclass(frozen=True, slots=True)
class Submitted:
    """What a raw submission came to: 202 and the accepted message, or a problem document."""

    status: int
    body: dict[str, Any]

    def response(self) -> web.Response:
        if self.status >= 400:
            return problem(self.status, **self.body)
        return web.json_response(self.body, status=self.status)


def _refused(status: int, title: str, **extra: Any) -> Submitted:
    return Submitted(status, {"title": title, **extra})


async def _retour_reference(
    gw: Gateway,
    partner: Partner,
    afzender: str,
    heen_code: str,
    heen: dict[str, Any] | None,
    cross_ref: str | None,
) -> str | Submitted:
    """The crossRefnummer of a REST retour, or its refusal (StUF043). The heenbericht named
    by the payload (its BerichtIdentificatie) decides; an explicit ``cross_ref`` must name
    that same message, so it can never link a retour into another conversation. Without such
    a heenbericht the retour is refused, unless ``[gateway] conversations = "lenient"``: then
    ``cross_ref`` (a heenbericht that did not pass this gateway) is required and the retour
    goes out unlinked; one naming another of this pair's messages is refused as well."""
    other = _refused(
        422,
        "cross_ref does not name the heenbericht that this retour's BerichtIdentificatie "
        "answers; leave it out",
        code="StUF043",
    )
    if heen is not None:
        if cross_ref is not None and cross_ref != heen["referentienummer"]:
            return other
        return str(heen["referentienummer"])
    unknown = f"no {heen_code} with this Identificatie was sent to you through this gateway"
    if gw.config.conversations != "lenient":
        return _refused(422, unknown, code="StUF043")
    if not cross_ref:
        return _refused(
            422,
            f"{unknown}; give ?cross_ref=<its Di01 referentienummer> to send it unlinked",
            code="StUF043",
        )
    named = await gw.broker.find_conversation(
        cross_ref, zender=afzender, ontvanger=partner.id, kinds=("Di01",)
    )
    return other if named is not None else cross_ref


async def submit_payload(
    gw: Gateway,
    identity: Identity,
    partner: Partner,
    payload: bytes,
    *,
    referentienummer: str | None = None,
    cross_ref: str | None = None,
    validated: PayloadResult | None = None,
) -> Submitted:
    """Validate a raw iWmo/iJw message, wrap it in a Di01/Du01 for ``partner`` and accept it
    (the REST API and the portal's upload alike). ``validated``: the payload's validation
    when the caller has it already (the portal showed its report)."""
    fits = (gw.config.max_message_bytes - ENVELOPE_ALLOWANCE) * 3 // 4
    if len(payload) > fits:
        return _refused(
            413,
            f"payload is {len(payload):,} bytes; base64 in a Di01 it must fit the "
            f"{gw.config.max_message_bytes:,}-byte message limit (at most {fits:,} bytes)",
            code="IB007",
        )
    result = (
        validated if validated is not None else await gw.ingress.payloads.validate_payload(payload)
    )
    if result.identified is None or result.root is None:
        errors = result.report.errors
        return _refused(
            422,
            errors[0].message if errors else "not an iWmo/iJw message",
            code="StUF055",
            problems=[p.to_dict() for p in errors],
        )
    message, root = result.identified.message, result.root
    header = root.find("{*}Header")
    afzender = header.findtext("{*}Afzender") if header is not None else None
    ontvanger = header.findtext("{*}Ontvanger") if header is not None else None
    if referentienummer is not None and not env.UUID4.match(referentienummer):
        return _refused(
            400,
            "Idempotency-Key must be a lower-case UUID v4 (it becomes the "
            "envelope referentienummer)",
        )
    zender, applicatie = partner.id, gw.config.applicatie
    if message.kind is Kind.RETOUR:
        assert message.pair is not None
        heen_code = f"{message.standard.message_prefix}{message.pair}"
        ident = (
            header.findtext("{*}BerichtIdentificatie/{*}Identificatie")
            if (header is not None)
            else None
        )
        # Only a heen message addressed to the caller can be answered by it; any other looks
        # exactly like one this gateway never saw. The payload's own reference decides.
        heen = await gw.broker.find_heen(
            afzender or "", heen_code, ident or "", ontvanger=partner.id
        )
        linked = await _retour_reference(gw, partner, afzender or "", heen_code, heen, cross_ref)
        if isinstance(linked, Submitted):
            return linked
        cross_ref = linked
        data = env.build_du01(
            payload,
            zender=zender,
            zender_applicatie=applicatie,
            ontvanger=afzender or "",
            functie=message.code,
            cross_ref=cross_ref,
            referentienummer=referentienummer,
        )
    else:
        data = env.build_di01(
            payload,
            zender=zender,
            zender_applicatie=applicatie,
            ontvanger=ontvanger or "",
            functie=message.code,
            referentienummer=referentienummer,
        )
    large = len(data) > LARGE_PAYLOAD_BYTES
    element = await off_loop(gw, large, parse_untrusted, data, _no_limit(gw))
    outcome = await gw.ingress.accept_envelope(element, identity, offload=large)
    if isinstance(outcome, Rejected):
        REJECTED.labels(code=outcome.code).inc()
        status = 503 if outcome.code == "StUF046" else 403 if outcome.code == "StUF052" else 422
        return _refused(status, outcome.omschrijving, code=outcome.code)
    ACCEPTED.labels(functie=message.code, duplicate=str(outcome.duplicate).lower()).inc()
    return Submitted(
        202,
        {
            "id": outcome.message_id,
            "referentienummer": outcome.referentienummer,
            "duplicate": outcome.duplicate,
            "destinations": list(outcome.destinations),
        },
    )


def _no_limit(gw: Gateway) -> ParseLimits:
    # The envelope we just built is 4/3 of a payload that already passed the size limit.
    return ParseLimits(max_bytes=gw.limits.max_bytes * 2, max_depth=gw.limits.max_depth)


async def message_status(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY_KEY]
    identity = identify(request, gw)
    if identity.partner is None and not identity.admin:
        anonymous(gw, identity, "401", "rest")
        return problem(401, "a credential is required")
    limited = over_rate(request, gw, identity)
    if limited is not None:
        return limited
    viewer = None if identity.admin else identity.partner.id if identity.partner else None
    view = await gw.broker.view(request.match_info["id"], viewer)
    if view is None:  # also for messages of others: no existence oracle
        return problem(404, "no such message")
    return web.json_response(with_times(view.to_dict()))


async def inbox(request: web.Request) -> web.Response:
    auth = as_partner(request)
    if isinstance(auth, web.Response):
        return auth
    gw, _, partner = auth
    limit = query_int(request, "limit", 100, 1, 1000)
    items = await gw.broker.inbox(partner.id, limit, query_int(request, "after", 0, 0, MAX_CURSOR))
    return web.json_response(
        {
            "partner": partner.id,
            "messages": [with_times(i) for i in items],
            "next": _next(items, limit),
        }
    )


async def inbox_item(request: web.Request) -> web.Response:
    auth = as_partner(request)
    if isinstance(auth, web.Response):
        return auth
    gw, _, partner = auth
    data = await gw.broker.inbox_envelope(partner.id, request.match_info["id"])
    if data is None:
        return problem(404, "no such message in your inbox")
    return web.Response(body=data, content_type="application/xml", charset="utf-8")


async def inbox_ack(request: web.Request) -> web.Response:
    auth = as_partner(request)
    if isinstance(auth, web.Response):
        return auth
    gw, _, partner = auth
    if not await gw.broker.ack(partner.id, request.match_info["id"]):
        return problem(404, "no such message waiting in your inbox")
    return web.json_response({"acknowledged": request.match_info["id"]})


async def dead_letters(request: web.Request) -> web.Response:
    auth = as_admin(request)
    if isinstance(auth, web.Response):
        return auth
    gw, _ = auth
    limit = query_int(request, "limit", 100, 1, 10000)
    after = query_int(request, "after", 0, 0, MAX_CURSOR)
    items = await gw.broker.dead_letters(request.query.get("partner"), limit, after)
    return web.json_response(
        {"dead_letters": [with_times(i) for i in items], "next": _next(items, limit)}
    )


def _next(items: list[dict[str, Any]], limit: int) -> int | None:
    """The ``after`` of the next page, or None when this page was the last."""
    return int(items[-1]["cursor"]) if len(items) == limit else None


async def replay(request: web.Request) -> web.Response:
    auth = as_admin(request)
    if isinstance(auth, web.Response):
        return auth
    gw, identity = auth
    async with admitted(request, gw, REPLAY_BODY_BYTES) as data:
        if isinstance(data, web.Response):
            return data
        try:
            body = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            # RecursionError: nesting deeper than the interpreter's stack (a few KB of '[')
            return problem(400, "body must be a JSON object")
    if not isinstance(body, dict):
        return problem(400, "body must be a JSON object")
    message_id, partner, since = body.get("message_id"), body.get("partner"), body.get("since")
    if not all(v is None or isinstance(v, str) for v in (message_id, partner)):
        return problem(400, "message_id and partner are strings")
    if since is not None and not (
        isinstance(since, int | float) and not isinstance(since, bool) and math.isfinite(since)
    ):
        return problem(400, "since is a number (seconds since the epoch)")
    if not isinstance(body.get("dead_only", True), bool):
        return problem(400, "dead_only is true or false")
    count = await gw.broker.replay(
        message_id=message_id,
        dead_only=body.get("dead_only", True),
        since=float(since) if since is not None else None,
        partner=partner,
        actor=f"admin@{identity.peer}",
    )
    log.info(
        "admin.replay",
        count=count,
        message_id=body.get("message_id"),
        partner=body.get("partner"),
        peer=identity.peer,
    )
    return web.json_response({"replayed": count})


async def overdue(request: web.Request) -> web.Response:
    auth = as_admin(request)
    if isinstance(auth, web.Response):
        return auth
    gw, _ = auth
    days = query_float(request, "days", gw.config.overdue_days, 0.0, 36500.0)
    items = await gw.broker.overdue(time.time() - days * 86400, 10000)
    return web.json_response({"days": days, "overdue": [with_times(i) for i in items]})


async def figures(request: web.Request) -> web.Response:
    """Beleidsinformatie: a gemeente reads its own figures, the operator everyone's."""
    gw = request.app[GATEWAY_KEY]
    identity = identify(request, gw)
    asked = request.query.get("gemeente") or None
    if identity.admin:
        gemeente = asked
    elif identity.partner is None:
        anonymous(gw, identity, "401", "rest")
        return problem(401, "a credential is required")
    elif (limited := over_rate(request, gw, identity)) is not None:
        return limited
    elif identity.partner.kind is not PartnerKind.GEMEENTE:
        return problem(403, "figures are for gemeenten and the operator")
    elif asked not in (None, identity.partner.id):
        return problem(403, "a gemeente reads its own figures only")
    else:
        gemeente = identity.partner.id
    first, last = request.query.get("from"), request.query.get("to")
    if any(m is not None and not stats.MONTH.fullmatch(m) for m in (first, last)):
        return problem(400, "from and to are months, YYYY-MM")
    wanted = request.query.get("format", "json")
    if wanted not in ("json", "csv"):
        return problem(400, "format is json or csv")
    raw = await gw.broker.figures(stats.Scope(gemeente, first, last))
    published = stats.publish(raw, gw.config.figures_min_cell)
    if wanted == "csv":
        return web.Response(text=stats.to_csv(published), content_type="text/csv")
    return web.json_response(published)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY_KEY]
    try:
        await gw.broker.counts()
    except Exception as exc:  # any failure to read the store means not ready
        return problem(503, f"store unavailable: {type(exc).__name__}")
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition, for the admin token, the scrape token, or (when configured)
    any loopback caller: its counters describe partners' traffic."""
    gw = request.app[GATEWAY_KEY]
    if not may_scrape(request, gw):
        return problem(401, "metrics need the admin or the scrape token")
    for state, count in (await gw.broker.counts()).items():
        DELIVERY_STATES.labels(state=state).set(count)
    await refresh_operations(gw)
    return web.Response(
        body=generate_latest(REGISTRY),
        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
    )


TIME_FIELDS = ("received_at", "updated_at", "next_attempt_at", "at")


def rfc3339(value: object) -> object:
    """Epoch seconds as an RFC 3339 UTC timestamp with milliseconds (None stays None)."""
    if not isinstance(value, int | float):
        return value
    moment = datetime.fromtimestamp(value, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def with_times(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row as the REST API shows it: times as RFC 3339, nested lists too."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key in TIME_FIELDS:
            out[key] = rfc3339(value)
        elif isinstance(value, list):
            out[key] = [with_times(v) if isinstance(v, dict) else v for v in value]
        else:
            out[key] = value
    return out


async def refresh_operations(gw: Gateway) -> None:
    """Set the store-derived gauges; every configured partner is present, at 0 when idle."""
    now = time.time()
    snapshot = await gw.broker.ops_snapshot(now - gw.config.overdue_days * 86400)
    queues = {q.destination: q for q in snapshot.queues}
    for partner in (p.id for p in gw.partners.all()):
        queue = queues.get(partner)
        QUEUE_DEPTH.labels(destination=partner).set(queue.waiting if queue else 0)
        oldest = queue.oldest_received_at if queue else None
        QUEUE_OLDEST_SECONDS.labels(destination=partner).set(now - oldest if oldest else 0)
        DEAD_LETTERS.labels(destination=partner).set(queue.dead if queue else 0)
    OVERDUE_RETOURS.set(snapshot.overdue)
    STORE_BYTES.set(snapshot.store_bytes)
    if snapshot.last_checkpoint_at is not None:
        CHECKPOINT_AGE_SECONDS.set(now - snapshot.last_checkpoint_at)


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(OPENAPI)


# --- assembly ------------------------------------------------------------------------------


HSTS = "max-age=31536000"
"""A year: a browser that once reached the gateway over HTTPS never tries plain HTTP (and
never lets a user click through a certificate warning) for it again."""


def answer_headers(https: bool) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """Headers every answer carries, set as it is prepared (also for raised HTTP errors and
    answers of the portal): ``Strict-Transport-Security`` when served over TLS, and
    ``Cache-Control: no-store`` unless the handler chose caching itself (static files):
    inbox listings, envelopes, message views and portal pages carry BSNs and messages,
    which no browser cache or proxy may keep. Two dictionary writes: the hot path stays
    cheap."""

    async def prepare(request: web.Request, response: web.StreamResponse) -> None:
        headers = response.headers
        if https:
            headers["Strict-Transport-Security"] = HSTS
        if "Cache-Control" not in headers:
            headers["Cache-Control"] = "no-store"

    return prepare


def make_app(gw: Gateway) -> web.Application:
    app = web.Application(
        client_max_size=gw.config.max_message_bytes + SOAP_ALLOWANCE,
        middlewares=[access_lines, problems_not_tracebacks],
    )
    app[GATEWAY_KEY] = gw
    app[REFUSAL_FORM] = lambda request, status, title: soap_refusal(gw, request, status, title)
    app.on_response_prepare.append(
        answer_headers(gw.config.tls is not None and not gw.config.plain_http)
    )
    app.router.add_post(SOAP_PATH, soap_endpoint)
    app.router.add_get(SOAP_PATH, soap_endpoint)
    app.router.add_get("/ggk/wsdl/{name:.+}", schema_file)
    app.router.add_post("/ebms", ebms_endpoint)
    app.router.add_post("/api/v1/messages", submit_message)
    app.router.add_get("/api/v1/messages/{id}", message_status)
    app.router.add_get("/api/v1/inbox", inbox)
    app.router.add_get("/api/v1/inbox/{id}", inbox_item)
    app.router.add_post("/api/v1/inbox/{id}/ack", inbox_ack)
    app.router.add_get("/api/v1/admin/dead-letters", dead_letters)
    app.router.add_post("/api/v1/admin/replay", replay)
    app.router.add_get("/api/v1/admin/overdue", overdue)
    app.router.add_get("/api/v1/stats", figures)
    app.router.add_get("/api/v1/openapi.json", openapi)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/portal", _to_portal)
    app.add_subapp("/portal", portal_app(_portal_deps(gw), app._client_max_size))
    return app


async def _to_portal(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/portal/")


def _portal_deps(gw: Gateway) -> PortalDeps:
    """What the portal may use of this gateway: the same broker, partners and checks as the
    API (a page shows nothing an API call by the same identity would not)."""

    async def submit(
        identity: Identity, partner: Partner, payload: bytes, validated: PayloadResult
    ) -> Submitted:
        return await submit_payload(gw, identity, partner, payload, validated=validated)

    return PortalDeps(
        broker=gw.broker,
        partners=gw.partners,
        keys=SessionKeys(gw.keyring.portal_key),
        identify=lambda request: identify(request, gw),
        by_token=lambda token, peer: identify_token(gw, token, peer),
        rate=lambda identity: spend_rate(gw, identity),
        validate=gw.ingress.payloads.validate_payload,
        submit=submit,
        certificate=gw.certificates.of,
        overdue_days=gw.config.overdue_days,
        min_cell=gw.config.figures_min_cell,
        max_upload=gw.config.max_message_bytes,
        bodies=gw.admission,
        body_timeout=gw.config.body_timeout,
    )


def _digest(path: Path) -> str:
    """Recorded at every start, so a changed configuration is visible in the audit log."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


async def audit_refusals(gw: Gateway) -> None:
    """Write the refusals counted since the last time as one audit record per (who, why)."""
    now = time.monotonic()
    events = gw.tally.summaries(now - gw.tally_since)
    gw.tally_since = now
    for event in events:
        log.warning("refusals.summary", actor=event.actor, outcome=event.outcome)
        try:
            await gw.broker.audit_event(event)
        except StorageError:
            log.error("audit.write_failed", action=event.action)


async def maintenance(gw: Gateway) -> None:
    """Sign the audit chain head every checkpoint_seconds, after the refusals counted since
    the last one (gateway/tally.py); apply retention hourly."""
    next_purge = 0.0
    while True:
        await asyncio.sleep(gw.config.checkpoint_seconds)
        try:
            await audit_refusals(gw)
            await gw.broker.checkpoint()
            if time.time() >= next_purge:
                purged = await gw.broker.purge(time.time() - gw.config.retention_days * 86400)
                if purged:
                    log.info("retention.purged", messages=purged)
                if gw.ebms is not None:
                    await asyncio.to_thread(gw.ebms.forget_old)
                next_purge = time.time() + 3600
        except StorageError as exc:
            log.error("maintenance.failed", error=str(exc))


def server_ssl(tls: TlsConfig) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.sslobject_class = LoggedHandshake  # failed handshakes reach the log
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(tls.cert), str(tls.key))
    if tls.client_ca is not None:
        context.load_verify_locations(cafile=str(tls.client_ca))
        context.verify_mode = ssl.CERT_OPTIONAL
        if tls.crl is not None:
            context.load_verify_locations(cafile=str(tls.crl))
            context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    return context


async def run(
    config: GatewayConfig,
    *,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
    built: Gateway | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM (or ``stop`` is set); deliveries run alongside.
    ``built``: the gateway :func:`build` made of ``config``, when the caller (a test) has
    adjusted it before it serves."""
    gw = built if built is not None else build(config)
    await gw.ingress.payloads.start()
    try:
        await gw.broker.start()
    except BaseException:
        gw.ingress.payloads.close()
        raise
    await gw.broker.audit_event(
        audit.AuditEvent(
            action="gateway_started",
            actor="gateway",
            origin=f"{config.host}:{config.port}",
            outcome=f"config sha256 {_digest(config.path)}, partners sha256 "
            f"{_digest(config.partners_file)}",
        )
    )
    await gw.broker.checkpoint()  # a signed head at start: nothing before it can be cut off
    runner = web.AppRunner(
        make_app(gw),
        access_log=None,
        keepalive_timeout=config.limits.keepalive_timeout,
        auto_decompress=False,  # bodies are decoded within their limit (decode_body)
    )
    await runner.setup()
    context = server_ssl(config.tls) if config.tls and not config.plain_http else None
    site = GuardedSite(runner, config.host, config.port, ssl_context=context, limits=config.limits)
    await site.start()
    worker = asyncio.create_task(gw.delivery.run(), name="delivery")
    upkeep = asyncio.create_task(maintenance(gw), name="maintenance")
    if stop is None:  # we own the process: stop on SIGINT/SIGTERM
        # Everything built so far (compiled schemas, rule tables, the app) lives as long as
        # the process: keep it out of the cyclic GC's full collections, which otherwise walk
        # it again and again under load (Bv03 latency spikes).
        gc.collect()
        gc.freeze()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
    log.info(
        "gateway.listening",
        url=config.base_url,
        soap=f"{config.base_url}{SOAP_PATH}",
        mtls=bool(config.tls and config.tls.client_ca),
        data=str(config.data_dir),
    )
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        log.info("gateway.stopping")
        await runner.cleanup()
        await gw.delivery.stop()
        for task in (worker, upkeep):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await audit_refusals(gw)  # what was counted since the last checkpoint
        with contextlib.suppress(StorageError):
            await gw.broker.checkpoint()  # and at a clean stop: the tail is signed
        if gw.ebms is not None:
            await gw.ebms.close()
        await gw.broker.close()
        gw.ingress.payloads.close()
