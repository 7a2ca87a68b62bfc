"""Assembly and lifetime: the aiohttp application with its routes, middlewares and the
portal; TLS; the access log; the maintenance loop (audit checkpoints, retention); and
:func:`run`, which serves until stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import signal
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog
from aiohttp import web

from gateway import audit, memtune
from gateway.broker.base import StorageError
from gateway.broker.factory import partner_follower, partner_publisher
from gateway.config import GatewayConfig, TlsConfig
from gateway.connections import GuardedSite, LoggedHandshake
from gateway.ingest import Identity
from gateway.metrics import (
    HTTP_REFUSALS,
)
from gateway.portal import PortalDeps, SessionKeys, portal_app
from gateway.portal.contents import Reader
from gateway.problems import (
    REFUSAL_FORM,
    problems_not_tracebacks,
)
from gateway.validation import PayloadResult
from gateway.web.answers import soap_refusal
from gateway.web.identify import identify, identify_token, spend_rate
from gateway.web.ops import healthz, metrics, openapi, readyz
from gateway.web.reload import PartnerWatch
from gateway.web.rest import (
    Submitted,
    dead_letters,
    figures,
    inbox,
    inbox_ack,
    inbox_item,
    message_status,
    overdue,
    replay,
    submit_message,
    submit_payload,
)
from gateway.web.soap_endpoint import EBMS_LISTENER, ebms_endpoint, schema_file, soap_endpoint
from gateway.web.wiring import GATEWAY_KEY, SOAP_ALLOWANCE, SOAP_PATH, Gateway, build
from routing.partners import Partner

log = structlog.get_logger("ggk.server")


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


def ebms_app(gw: Gateway) -> web.Application:
    """The ``[ebms] listen`` listener's application: ``POST /ebms`` only, for callers whose
    client certificate the handshake required (gateway/ebms/tls.py); nothing else of the
    gateway is reachable there."""
    app = web.Application(
        client_max_size=gw.config.max_message_bytes + SOAP_ALLOWANCE,
        middlewares=[access_lines, problems_not_tracebacks],
    )
    app[GATEWAY_KEY] = gw
    app[EBMS_LISTENER] = True
    app.on_response_prepare.append(answer_headers(True))
    app.router.add_post("/ebms", ebms_endpoint)
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
        upload_slots=gw.config.limits.portal_upload_slots,
        # the message page decodes by the schemas the gateway validates with (schema_dirs too)
        contents=Reader(gw.ingress.validator.registry),
        partners_file=gw.config.partners_file,
        publish_partners=partner_publisher(gw.config, gw.keyring),
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
        if gw.ebms is not None:
            gw.ebms.warn_ending()  # once a day per CPA, however often this runs
        try:
            await audit_refusals(gw)
            await gw.broker.checkpoint()
            memtune.trim()  # freed pages back to the kernel (gateway/memtune.py)
            _refresh_ebms_crls(gw)
            if time.time() >= next_purge:
                purged = await gw.broker.purge(time.time() - gw.config.retention_days * 86400)
                if purged:
                    log.info("retention.purged", messages=purged)
                if gw.ebms is not None:
                    await asyncio.to_thread(gw.ebms.forget_old)
                next_purge = time.time() + 3600
        except StorageError as exc:
            log.error("maintenance.failed", error=str(exc))


def _refresh_ebms_crls(gw: Gateway) -> None:
    """CRL files of ``[ebms]`` fetched anew take effect without a restart (tls.py)."""
    tls = gw.ebms.outbound.tls if gw.ebms is not None else None
    if tls is not None:
        changed = tls.refresh_crls()
        if changed:
            log.info("ebms.crls_reloaded", files=len(changed))


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


def _ebms_context(gw: Gateway) -> ssl.SSLContext | None:
    """The ``[ebms] listen`` listener's TLS context, made before anything is served (a file
    that cannot be used stops the start with its reason, gateway/ebms/tls.py)."""
    ebms = gw.config.ebms
    if ebms is None or ebms.listen is None or gw.ebms is None:
        return None
    tls = gw.ebms.outbound.tls
    assert tls is not None
    return tls.server()


async def _ebms_listener(gw: Gateway, context: ssl.SSLContext | None) -> web.AppRunner | None:
    """Start the ``[ebms] listen`` listener (client certificate REQUIRED), if configured."""
    ebms = gw.config.ebms
    if context is None or ebms is None or ebms.listen is None:
        return None
    runner = web.AppRunner(
        ebms_app(gw),
        access_log=None,
        keepalive_timeout=gw.config.limits.keepalive_timeout,
        auto_decompress=False,
    )
    await runner.setup()
    host, port = ebms.listen
    site = GuardedSite(runner, host, port, ssl_context=context, limits=gw.config.limits)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    log.info("ebms.listening", url=f"https://{host}:{port}/ebms", client_certificate="required")
    return runner


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
    ebms_context = _ebms_context(gw)  # before anything starts: a bad file stops it cleanly
    readers = gw.ingress.readers
    if readers is not None:
        await readers.start()
    try:
        await gw.broker.start()
    except BaseException:
        if readers is not None:
            await readers.close()
        raise
    if gw.ebms is not None:
        try:
            await gw.ebms.start()
        except BaseException:
            await gw.broker.close()
            if readers is not None:
                await readers.close()
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
    ebms_runner = await _ebms_listener(gw, ebms_context)
    worker = asyncio.create_task(gw.delivery.run(), name="delivery")
    upkeep = asyncio.create_task(maintenance(gw), name="maintenance")
    tasks = [worker, upkeep, asyncio.create_task(PartnerWatch(gw).run(), name="partners")]
    follower = partner_follower(config, gw.keyring)  # the file as changed on any process
    if follower is not None:
        tasks.append(asyncio.create_task(follower, name="partners-topic"))
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
        # uvloop or asyncio (gateway/eventloop.py): which one a figure was measured on
        event_loop=type(asyncio.get_running_loop()).__module__.partition(".")[0],
        # the interpreter's switch interval while a large message is in hand (eventloop.py)
        large_message_gil_switch_ms=gw.large_turn_ms,
    )
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        log.info("gateway.stopping")
        if ebms_runner is not None:
            await ebms_runner.cleanup()
        await runner.cleanup()
        await gw.delivery.stop()
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await audit_refusals(gw)  # what was counted since the last checkpoint
        with contextlib.suppress(StorageError):
            await gw.broker.checkpoint()  # and at a clean stop: the tail is signed
        if gw.ebms is not None:
            await gw.ebms.close()
        await gw.broker.close()
        if readers is not None:
            await readers.close()
